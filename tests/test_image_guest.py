"""The agent's A/B side in the guest (eden.image.guest) on files laid out like the guest's devices."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from eden.image import bootstate as bs
from eden.image.guest import GuestBoot, partition_device
from eden.image.verity import BLOCK, make_slot, read_descriptor


def _guest(tmp_path: Path) -> tuple[GuestBoot, Path, Path]:
    sys_block, dev = tmp_path / "sys", tmp_path / "dev"
    dev.mkdir()
    for i, name in enumerate(["BOOTSTATE", "IMGA", "IMGB"], 1):
        (sys_block / f"vda{i}").mkdir(parents=True)
        (sys_block / f"vda{i}" / "uevent").write_text(f"MAJOR=254\nDEVNAME=vda{i}\nDEVTYPE=partition\nPARTNAME={name}\n")
        (dev / f"vda{i}").write_bytes(b"\0" * (8 << 20 if name != "BOOTSTATE" else 4096))
    bs.write(dev / "vda1", bs.FACTORY)
    env = tmp_path / "boot.env"
    env.write_text(f"EDEN_SLOT=A\nEDEN_BOOTSTATE_DEV={dev / 'vda1'}\nEDEN_PCR13=none\n")
    return GuestBoot.load(env), sys_block, dev


def _slot(tmp_path: Path, name: str, size_mib: int = 4) -> Path:
    src = tmp_path / f"{name}-root"
    src.mkdir()
    (src / "hello").write_text(name)
    fs = tmp_path / f"{name}.ext4"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", str(src), str(fs), f"{size_mib}M"],
                   check=True, capture_output=True)
    make_slot(fs, tmp_path / f"{name}.slot", "00" * 32)
    return tmp_path / f"{name}.slot"


def test_partition_lookup(tmp_path: Path) -> None:
    _, sys_block, dev = _guest(tmp_path)
    assert partition_device("IMGB", sys_block, dev) == dev / "vda3"
    with pytest.raises(FileNotFoundError, match="CONFIG"):
        partition_device("CONFIG", sys_block, dev)


def test_install_gives_the_other_slot_one_try_then_commit(tmp_path: Path) -> None:
    guest, sys_block, dev = _guest(tmp_path)
    slot = _slot(tmp_path, "next")
    assert guest.install_other(slot, sys_block, dev) == bs.BootState(bs.ACTIVE, bs.UPDATING)
    assert read_descriptor(dev / "vda3") == read_descriptor(slot)
    assert (dev / "vda3").read_bytes()[:slot.stat().st_size] == slot.read_bytes()
    # The boot stage spends the try and boots B; the agent there commits.
    chosen, state = bs.select_next(guest.state())
    bs.write(guest.bootstate_dev, state)
    assert chosen == "B"
    on_b = GuestBoot("B", guest.bootstate_dev)
    assert on_b.commit() == bs.BootState(bs.UNUSED, bs.ACTIVE)


def test_install_refuses_what_is_not_a_slot_or_too_big(tmp_path: Path) -> None:
    guest, sys_block, dev = _guest(tmp_path)
    junk = tmp_path / "junk"
    junk.write_bytes(b"x" * 3 * BLOCK)
    with pytest.raises(ValueError):
        guest.install_other(junk, sys_block, dev)
    big = _slot(tmp_path, "big", size_mib=12)
    with pytest.raises(ValueError, match="does not fit"):
        guest.install_other(big, sys_block, dev)
    assert guest.state() == bs.FACTORY
