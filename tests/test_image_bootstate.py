"""The boot-state format and A/B rules: Python (eden.image.bootstate) against the busybox boot
stage (scripts/image-bootstate.sh) on the same files, and both against the simulator's zboot (§3)."""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from eden.image import bootstate as bs
from eden.image.disk import MIB, Partition, write_cpio, write_gpt_disk
from eden.image.kmod import load_order
from eve.enums import PartitionState
from eve.zboot import Zboot

REPO = Path(__file__).resolve().parents[1]
SH_LIB = REPO / "scripts" / "image-bootstate.sh"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
NAMED = {"active": bs.ACTIVE, "updating": bs.UPDATING, "inprogress": bs.INPROGRESS, "unused": bs.UNUSED}
ZSTATE = {"active": PartitionState.ACTIVE, "updating": PartitionState.UPDATING,
          "inprogress": PartitionState.INPROGRESS, "unused": PartitionState.UNUSED}


def sh_next(path: Path) -> tuple[int, str]:
    """Run the boot stage's gptprio.next on ``path`` with busybox sh."""
    assert Path(BUSYBOX).exists(), "busybox-static is needed (scripts/install-system-deps)"
    p = subprocess.run([BUSYBOX, "sh", "-c", f'. "{SH_LIB}"; bootstate_next "$1"', "sh", str(path)],
                       capture_output=True, text=True, timeout=30,
                       # Applets only (as in the initramfs): busybox sh runs its own applets first.
                       env={"PATH": "/nonexistent", "TMPDIR": str(path.parent)})
    return p.returncode, p.stdout.strip()


def test_roundtrip_and_record_layout(tmp_path: Path) -> None:
    state = bs.BootState(bs.ACTIVE, bs.UPDATING)
    rec = bs.encode(state)
    assert len(rec) == bs.RECORD_SIZE
    assert rec.startswith(b"EDEN-BOOTSTATE 1\nA 2 0 1\nB 3 1 0\nsha256 ")
    assert bs.decode(rec) == state
    f = tmp_path / "p"
    bs.write(f, state)
    assert f.read_bytes()[:512] == f.read_bytes()[512:1024] == rec
    assert bs.read(f) == state
    assert state.a.attr == 0x102 and state.b.attr == 0x13 and bs.INPROGRESS.attr == 0x3


def test_torn_primary_falls_back_to_backup_and_garbage_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "p"
    bs.write(f, bs.FACTORY)
    data = bytearray(f.read_bytes())
    data[20] ^= 0x01  # the primary's A line no longer matches its checksum
    f.write_bytes(bytes(data))
    assert bs.read(f) == bs.FACTORY
    f.write_bytes(b"\0" * 1024)
    with pytest.raises(bs.BootStateError, match="no valid boot-state record"):
        bs.read(f)
    with pytest.raises(bs.BootStateError):
        bs.Slot(16, 0, 0)
    with pytest.raises(bs.BootStateError):
        bs.decode(bs.encode(bs.FACTORY).replace(b"A 2 0 1", b"A 2 0 x"))


@pytest.mark.parametrize("a,b", list(itertools.product(NAMED, repeat=2)))
def test_select_next_matches_simulator_zboot(a: str, b: str) -> None:
    zb = Zboot()
    zb.partitions["IMGA"].state, zb.partitions["IMGB"].state = ZSTATE[a], ZSTATE[b]
    zb.partitions["IMGA"].version = zb.partitions["IMGB"].version = "v"
    label = zb.select_boot()
    slot, new = bs.select_next(bs.BootState(NAMED[a], NAMED[b]))
    assert slot == (None if label is None else label[-1])
    assert (new.a.attr, new.b.attr) == (zb.attr("IMGA"), zb.attr("IMGB"))


def _states() -> list[bs.BootState]:
    named = [bs.BootState(NAMED[a], NAMED[b]) for a, b in itertools.product(NAMED, repeat=2)]
    rng = random.Random(5)
    rand = [bs.BootState(*(bs.Slot(rng.randint(0, 15), rng.randint(0, 15), rng.randint(0, 1)) for _ in "ab"))
            for _ in range(40)]
    return named + rand


def test_busybox_boot_stage_and_python_agree_on_the_same_files(tmp_path: Path) -> None:
    for i, state in enumerate(_states()):
        f = tmp_path / f"s{i}"
        bs.write(f, state)
        before = f.read_bytes()
        rc, out = sh_next(f)
        slot, expected = bs.select_next(state)
        if slot is None:
            assert rc == 1 and out == "" and f.read_bytes() == before, state
            continue
        assert rc == 0, (state, out)
        chosen = expected[slot]
        assert out == f"{slot} {chosen.priority} {chosen.tries} {chosen.successful}", state
        # Byte-identical to what Python writes: both records, same checksum.
        assert f.read_bytes() == bs.encode(expected) * 2, state
        assert bs.read(f) == expected


def test_busybox_reads_the_backup_and_rejects_garbage(tmp_path: Path) -> None:
    f = tmp_path / "p"
    bs.write(f, bs.BootState(bs.ACTIVE, bs.UPDATING))
    data = bytearray(f.read_bytes())
    data[30] ^= 0x04  # corrupt the primary
    f.write_bytes(bytes(data))
    assert sh_next(f) == (0, "B 3 0 0")  # from the backup, tries 1 -> 0
    assert bs.read(f) == bs.BootState(bs.ACTIVE, bs.INPROGRESS)
    g = tmp_path / "g"
    g.write_bytes(b"EDEN-BOOTSTATE 1\nA 2 0 1\n".ljust(1024, b"\0"))
    assert sh_next(g)[0] == 2
    assert sh_next(tmp_path / "missing")[0] == 2


def test_update_commit_and_fallback_cycle_in_both_implementations(tmp_path: Path) -> None:
    """§3: an update gets exactly one boot; uncommitted it falls back, committed it becomes active."""
    f = tmp_path / "p"
    bs.write(f, bs.set_updating(bs.FACTORY, "B"))
    assert sh_next(f) == (0, "B 3 0 0")            # the one try
    assert sh_next(f) == (0, "A 2 0 1")            # reboot before the commit: back to A
    bs.write(f, bs.set_updating(bs.read(f), "B"))  # retry
    assert sh_next(f) == (0, "B 3 0 0")
    bs.write(f, bs.mark_current_active(bs.read(f), "B"))  # the agent commits
    assert bs.read(f) == bs.BootState(bs.UNUSED, bs.ACTIVE)
    assert sh_next(f) == (0, "B 2 0 1")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "p"
    assert bs.main([str(f), "init"]) == 0
    assert bs.main([str(f), "set-updating", "B"]) == 0
    assert bs.main([str(f), "next"]) == 0 and capsys.readouterr().out.strip() == "B"
    assert bs.main([str(f), "commit", "B"]) == 0
    assert bs.main([str(f), "show"]) == 0
    assert '"B": {"attr": "0x102"' in capsys.readouterr().out
    assert bs.main([str(tmp_path / "nope"), "show"]) == 2


def test_gpt_disk_partitions_and_contents(tmp_path: Path) -> None:
    import uuid
    import zlib

    src = tmp_path / "a.img"
    src.write_bytes(b"hello" + b"\0" * 3 * MIB)
    disk = tmp_path / "disk.img"
    placed = write_gpt_disk(disk, [Partition("BOOTSTATE", MIB), Partition("IMGA", 4 * MIB, src)], uuid.UUID(int=7))
    assert [(p.name, p.number, p.offset, p.size) for p in placed] == [("BOOTSTATE", 1, MIB, MIB), ("IMGA", 2, 2 * MIB, 4 * MIB)]
    data = disk.read_bytes()
    assert len(data) == 7 * MIB and data[510:512] == b"\x55\xaa" and data[512:520] == b"EFI PART"
    assert data[2 * MIB:2 * MIB + 5] == b"hello"
    entries = data[1024:1024 + 128 * 128]
    assert int.from_bytes(data[512 + 88:512 + 92], "little") == zlib.crc32(entries)
    assert entries[128 + 56:128 + 56 + 8].decode("utf-16-le") == "IMGA"
    backup = data[-512:]
    assert backup[:8] == b"EFI PART" and backup[88:92] == data[512 + 88:512 + 92]
    with pytest.raises(ValueError, match="multiple of 1 MiB"):
        write_gpt_disk(disk, [Partition("X", 1000)], uuid.UUID(int=1))
    with pytest.raises(ValueError, match="larger"):
        write_gpt_disk(disk, [Partition("X", MIB, src)], uuid.UUID(int=1))


def test_cpio_lists_with_busybox(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "init").write_text("#!/bin/sh\n")
    (root / "bin" / "sh").symlink_to("busybox")
    out = tmp_path / "x.cpio"
    write_cpio(root, out)
    listing = subprocess.run([BUSYBOX, "cpio", "-t", "-F", str(out)], capture_output=True, text=True, check=True).stdout
    assert sorted(listing.split()) == ["bin", "bin/sh", "init"]


def test_module_load_order_from_modinfo(tmp_path: Path) -> None:
    mods = tmp_path / "kernel"
    mods.mkdir()
    for name, deps in {"virtio_net": "net_failover,virtio", "net_failover": "failover", "failover": "",
                       "virtio": "virtio_ring", "virtio_ring": ""}.items():
        (mods / f"{name}.ko").write_bytes(b"\x7fELF junk\0license=GPL\0depends=" + deps.encode() + b"\0name=" + name.encode() + b"\0")
    order = [p.stem for p in load_order(mods, ["virtio_net"])]
    assert order.index("failover") < order.index("net_failover") < order.index("virtio_net")
    assert order.index("virtio_ring") < order.index("virtio") < order.index("virtio_net")
    with pytest.raises(ValueError, match="'nope' not found"):
        load_order(mods, ["nope"])
