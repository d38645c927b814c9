"""Root-filesystem slot variants (eden.image.slots): fast tests on a small synthetic image, and two
QEMU boots of the real reference image (slot A = a 13.4.0 variant; a crash-on-boot B falls back to A).
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import shutil
import subprocess
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from eden.errors import InvalidInput
from eden.image import bootstate as bs
from eden.image.disk import MIB, Partition, write_gpt_disk
from eden.image.guest import GuestBoot, parse_before
from eden.image.layout import Image
from eden.image.slots import BEHAVIOURS, RELEASE_PATH, Slot, build_slot, install_slot_offline, release_json
from eden.image.verity import BLOCK, make_slot, read_descriptor

SALT = "5a" * 32


def _make_image(d: Path, fs_mib: int = 8, part_mib: int = 16) -> Image:
    """A small image laid out as eden/image/build.py lays out the real one (same slot format)."""
    d.mkdir(parents=True)
    root = d / "root"
    (root / "etc/eden").mkdir(parents=True)
    (root / "etc/eden/image-version").write_text("ref-test\n")
    (root / "etc/hostname").write_text("eden-ref\n")
    fs = d / "rootfs.ext4"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-O", "^has_journal", "-E", "root_owner=0:0",
                    "-d", str(root), "-U", "11111111-2222-3333-4444-555555555555", str(fs), f"{fs_mib}M"],
                   check=True, capture_output=True, env={"E2FSPROGS_FAKE_TIME": "1700000000", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    slot = d / "rootfs.slot"
    desc = make_slot(fs, slot, SALT)
    bst = d / "bootstate.img"
    bs.write(bst, bs.FACTORY)
    placed = write_gpt_disk(d / "disk.img", [
        Partition("BOOTSTATE", MIB, bst), Partition("IMGA", part_mib * MIB, slot), Partition("IMGB", part_mib * MIB, slot),
        Partition("CONFIG", MIB), Partition("P3", MIB)], uuid.uuid5(uuid.NAMESPACE_URL, "eden-test-slots"))
    info = {"key": "test", "files": {"kernel": "vmlinuz", "initrd": "initrd.img", "disk": "disk.img"},
            "partitions": [{"name": p.name, "number": p.number, "offset": p.offset, "size": p.size} for p in placed],
            "slot_bytes": slot.stat().st_size, "rootfs_bytes": fs.stat().st_size, "rootfs_sha256": desc.sha256,
            "verity": {"root": desc.root, "salt": desc.salt}}
    (d / "image.json").write_text(json.dumps(info))
    return Image.load(d)


@pytest.fixture()
def small(tmp_path: Path) -> Image:
    return _make_image(tmp_path / "image")


def _cat(slot: Path, path: str) -> str:
    return subprocess.run(["debugfs", "-R", f"cat {path}", str(slot)], check=True, capture_output=True, text=True).stdout


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_deterministic_and_consistent_with_verity(small: Image, tmp_path: Path) -> None:
    one = build_slot(small, name="eve", version="13.4.0", cache=tmp_path / "c1")
    two = build_slot(small, name="eve", version="13.4.0", cache=tmp_path / "c2")
    assert one.path != two.path and filecmp.cmp(one.path, two.path, shallow=False)
    assert (one.sha256, one.size, one.descriptor_sha256, one.pcr13) == (two.sha256, two.size, two.descriptor_sha256, two.pcr13)
    assert one.sha256 == _sha256(one.path) and one.size == one.path.stat().st_size
    assert one.size == small.info["slot_bytes"]  # same filesystem size, same tree size
    desc = read_descriptor(one.path)
    assert desc.sha256 == one.descriptor_sha256 and desc.salt == SALT
    assert desc.root != small.info["verity"]["root"]  # the release file changed the content
    assert one.pcr13 == hashlib.sha256(bytes(32) + bytes.fromhex(desc.sha256)).hexdigest()
    # The tree really is the tree of the data blocks with that root hash.
    subprocess.run(["veritysetup", "verify", "--no-superblock", f"--hash-offset={desc.hash_start * BLOCK}",
                    "--data-block-size=4096", "--hash-block-size=4096", f"--data-blocks={desc.data_blocks}",
                    f"--salt={desc.salt}", str(one.path), str(one.path), desc.root], check=True, capture_output=True)
    # Other inputs, other bytes: a changes-pcrs release differs from the good one of the same version.
    bad = build_slot(small, name="eve", version="13.4.0", behaviour="changes-pcrs", cache=tmp_path / "c1")
    newer = build_slot(small, name="eve", version="13.5.0", cache=tmp_path / "c1")
    assert len({one.pcr13, bad.pcr13, newer.pcr13}) == 3
    assert len({one.sha256, bad.sha256, newer.sha256}) == 3


def test_release_json_in_the_filesystem(small: Image, tmp_path: Path) -> None:
    for behaviour in BEHAVIOURS:
        slot = build_slot(small, name="eve-ref", version="13.4.0", behaviour=behaviour, cache=tmp_path)
        text = _cat(slot.path, RELEASE_PATH)
        assert text.encode() == release_json("eve-ref", "13.4.0", behaviour)
        assert json.loads(text) == {"name": "eve-ref", "version": "13.4.0", "behaviour": behaviour}
        assert "\n" not in text.rstrip("\n")  # one line: scripts/image-rc reads it with sed
        assert _cat(slot.path, "/etc/eden/image-version") == "ref-test\n"  # the rest is the base's
        stat = subprocess.run(["debugfs", "-R", f"stat {RELEASE_PATH}", str(slot.path)], check=True,
                              capture_output=True, text=True).stdout
        assert "Mode:  0644" in stat and "User:     0   Group:     0" in stat, stat
    subprocess.run(["e2fsck", "-fn", str(slot.path)], check=True, capture_output=True)  # a clean filesystem


def test_cache_hit(small: Image, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = build_slot(small, name="eve", version="1.0", cache=cache)
    inode = first.path.stat().st_ino
    t0 = time.monotonic()
    again = build_slot(small, name="eve", version="1.0", cache=cache)
    assert time.monotonic() - t0 < 0.5
    assert again == first and again.path.stat().st_ino == inode  # not rebuilt
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".slot"]  # no work dirs left
    default = build_slot(small, name="eve", version="1.0")
    assert default.path.parent == small.dir / "slots" and default.sha256 == first.sha256
    # A truncated slot file is not a hit: it is rebuilt.
    with open(first.path, "r+b") as f:
        f.truncate(BLOCK)
    rebuilt = build_slot(small, name="eve", version="1.0", cache=cache)
    assert rebuilt.sha256 == first.sha256 and rebuilt.path.stat().st_size == first.size


def test_install_offline_writes_exactly_the_partition(small: Image, tmp_path: Path) -> None:
    slot = build_slot(small, name="eve", version="13.5.0", behaviour="crash-on-boot", cache=tmp_path / "c")
    disk = tmp_path / "disk.img"
    shutil.copyfile(small.disk, disk)
    before = disk.read_bytes()
    off, size = small.partition("IMGB")
    install_slot_offline(small, disk, "B", slot)
    after = disk.read_bytes()
    assert len(after) == len(before)
    assert after[:off] == before[:off] and after[off + size:] == before[off + size:]
    assert after[off:off + slot.size] == slot.path.read_bytes()
    assert after[off + slot.size:off + size] == before[off + slot.size:off + size]
    assert read_descriptor(disk, off).sha256 == slot.descriptor_sha256
    assert bs.read(disk, small.partition("BOOTSTATE")[0]) == bs.FACTORY  # boot state untouched
    a_off, _ = small.partition("IMGA")
    assert read_descriptor(disk, a_off).root == small.info["verity"]["root"]
    install_slot_offline(small, disk, "A", slot)
    assert read_descriptor(disk, a_off).sha256 == slot.descriptor_sha256


def test_bad_input_is_a_clear_error(small: Image, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown slot behaviour 'explode'"):
        build_slot(small, name="eve", version="1", behaviour="explode", cache=tmp_path)
    for bad in ("", "13 4", 'x"y', "../up", "a" * 65):
        with pytest.raises(InvalidInput, match="bad slot version"):
            build_slot(small, name="eve", version=bad, cache=tmp_path)
    with pytest.raises(InvalidInput, match="bad slot name"):
        build_slot(small, name="$(reboot)", version="1", cache=tmp_path)
    slot = build_slot(small, name="eve", version="1", cache=tmp_path)
    disk = tmp_path / "disk.img"
    shutil.copyfile(small.disk, disk)
    with pytest.raises(InvalidInput, match="unknown slot label 'C'"):
        install_slot_offline(small, disk, "C", slot)  # type: ignore[arg-type]
    # Too big: the image says its slot is larger than the partitions; and a big slot into a small disk.
    huge = Image(small.dir, {**small.info, "slot_bytes": small.partition("IMGA")[1] + BLOCK})
    with pytest.raises(InvalidInput, match="does not fit IMGA/IMGB"):
        build_slot(huge, name="eve", version="2", cache=tmp_path)
    big_image = _make_image(tmp_path / "big", fs_mib=24, part_mib=32)
    big = build_slot(big_image, name="eve", version="1", cache=tmp_path / "big-cache")
    assert big.size > small.partition("IMGB")[1]
    with pytest.raises(InvalidInput, match="does not fit IMGB"):
        install_slot_offline(small, disk, "B", big)
    assert disk.read_bytes() == small.disk.read_bytes()  # nothing written
    # A slot file changed after it was built, or not a slot at all.
    with pytest.raises(InvalidInput, match="changed since it was built"):
        install_slot_offline(small, disk, "A", replace(slot, descriptor_sha256="00" * 32))
    junk = tmp_path / "junk.slot"
    junk.write_bytes(b"\0" * 8192)
    with pytest.raises(InvalidInput, match="not a root filesystem slot"):
        install_slot_offline(small, disk, "A", Slot(junk, "0", 8192, "0", "0", "eve", "1", "good"))


def test_guestboot_before(tmp_path: Path) -> None:
    env = tmp_path / "boot.env"
    env.write_text('EDEN_SLOT=B\nEDEN_BOOTSTATE_DEV=/dev/vda1\nEDEN_BOOTSTATE_BEFORE="A 2 0 1 B 3 1 0"\n')
    boot = GuestBoot.load(env)
    assert boot.before == bs.BootState(bs.ACTIVE, bs.UPDATING)
    assert bs.select_next(boot.before)[0] == boot.slot
    env.write_text("EDEN_SLOT=A\nEDEN_BOOTSTATE_DEV=/dev/vda1\n")
    assert GuestBoot.load(env).before is None  # an image whose boot stage does not write it
    env.write_text('EDEN_SLOT=A\nEDEN_BOOTSTATE_DEV=/dev/x\nEDEN_BOOTSTATE_BEFORE=""\n')
    assert GuestBoot.load(env).before is None  # the boot stage could not read the record
    for bad in ("A 2 0 1", "B 2 0 1 A 0 0 0", "A 2 0 x B 0 0 0", "A 16 0 1 B 0 0 0"):
        with pytest.raises(ValueError):
            parse_before(bad)


# ------------------------------------------------------------------------------------ on QEMU --
@pytest.fixture(scope="module")
def image() -> Image:
    from eden.image.build import build, default_cache

    missing = [t for t in ("qemu-system-x86_64", "swtpm", "swtpm_setup", "debootstrap", "mke2fs", "debugfs")
               if not shutil.which(t)]
    assert not missing, f"missing host tools {missing}: run scripts/install-system-deps as root"
    return Image.load(build(default_cache()))


def _disk(image: Image, tmp_path: Path, key: Path) -> Path:
    from eden.image.layout import write_config

    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image.disk), str(disk)], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    write_config(image, disk, {"authorized_keys": key.with_suffix(".pub").read_text()})
    return disk


def _boot_env(text: str, tmp_path: Path) -> GuestBoot:
    env = tmp_path / "boot.env.copy"
    env.write_text(text)
    return GuestBoot.load(env)


@pytest.mark.slow
@pytest.mark.qemu
def test_device_boots_its_factory_slot_variant(image: Image, tmp_path: Path) -> None:
    from test_image_boot import Boot, _free_port, _ssh

    t0 = time.monotonic()
    slot = build_slot(image, name="eve-ref", version="13.4.0")
    built = time.monotonic() - t0
    key = tmp_path / "id_ed25519"
    disk = _disk(image, tmp_path, key)
    install_slot_offline(image, disk, "A", slot)
    port = _free_port()
    with Boot(image, disk, tmp_path, ssh_port=port) as boot:
        chosen = boot.wait_for("slot=", timeout=60)
        measured = boot.wait_for("measured pcr=13", timeout=30)
        release = boot.wait_for("release", timeout=30)
        started = boot.wait_for("agent-start", timeout=60)
        guest = _ssh(port, key, f"cat /run/eden/boot.env; echo ===; cat {RELEASE_PATH}")
    print(f"\nvariant built in {built:.1f} s; power-on to agent-start {started['at']} s")
    assert chosen["slot"] == "A"
    assert measured["rootfs"] == slot.descriptor_sha256 and measured["sha256"] == slot.pcr13
    assert (release["name"], release["version"], release["behaviour"]) == ("eve-ref", "13.4.0", "good")
    env, rel = guest.split("===\n")
    assert json.loads(rel) == {"name": "eve-ref", "version": "13.4.0", "behaviour": "good"}
    gb = _boot_env(env, tmp_path)
    assert gb.slot == "A" and gb.before == bs.FACTORY and bs.select_next(gb.before)[0] == "A"
    assert f"EDEN_PCR13={slot.pcr13}" in env


@pytest.mark.slow
@pytest.mark.qemu
def test_crash_on_boot_release_in_b_falls_back_to_a(image: Image, tmp_path: Path) -> None:
    from test_image_boot import Boot, _free_port, _ssh

    good = build_slot(image, name="eve-ref", version="13.4.0")
    crash = build_slot(image, name="eve-ref", version="13.5.0", behaviour="crash-on-boot")
    key = tmp_path / "id_ed25519"
    disk = _disk(image, tmp_path, key)
    install_slot_offline(image, disk, "A", good)
    install_slot_offline(image, disk, "B", crash)
    bst = image.partition("BOOTSTATE")[0]
    bs.write(disk, bs.set_updating(bs.read(disk, bst), "B"), offset=bst)  # what the agent does after writing B
    port = _free_port()
    with Boot(image, disk, tmp_path, ssh_port=port) as boot:
        deadline = time.monotonic() + 80
        while True:  # both boots' markers, in order, in one QEMU process (the panic reset the VM)
            marks = [(n + " " + r).strip() for n, r in boot.markers()]
            if sum(m.startswith("agent-start") for m in marks) >= 1:
                break
            assert boot.procs[-1].poll() is None, "QEMU exited"
            assert time.monotonic() < deadline, marks
            time.sleep(0.2)
        back = time.monotonic() - boot.t0
        guest = _ssh(port, key, "cat /run/eden/boot.env")
        log = boot.log.read_bytes().decode("latin-1")
    print(f"\ncrash-on-boot in B, back on A: agent-start {back:.1f} s after power-on")
    slots = [m.split()[0] for m in marks if m.startswith("slot=")]
    assert slots == ["slot=B", "slot=A"], marks
    crash_at = next(i for i, m in enumerate(marks) if m.startswith("crash behaviour=crash-on-boot version=13.5.0"))
    b_at = next(i for i, m in enumerate(marks) if m.startswith("slot=B"))
    a_at = next(i for i, m in enumerate(marks) if m.startswith("slot=A"))
    assert b_at < crash_at < a_at, marks
    second = [i for i, m in enumerate(marks) if m.startswith("stage=initramfs")]
    assert len(second) == 2 and second[1] > crash_at, marks  # the boot stage ran again after the crash
    assert "sysrq triggered crash" in log or "Kernel panic" in log
    release = [m for m in marks if m.startswith("release ")]
    assert release == ["release name=eve-ref version=13.5.0 behaviour=crash-on-boot",
                       "release name=eve-ref version=13.4.0 behaviour=good"], release
    assert not any(m.startswith("agent-start") for m in marks[:second[1]])  # B never started its agent
    gb = _boot_env(guest, tmp_path)
    assert gb.slot == "A" and gb.before == bs.BootState(bs.ACTIVE, bs.INPROGRESS)  # B's one try was spent
    assert bs.select_next(gb.before)[0] == "A"
    assert bs.read(disk, bst) == bs.BootState(bs.ACTIVE, bs.INPROGRESS)


@pytest.mark.slow
@pytest.mark.qemu
def test_no_controller_release_keeps_its_ports_down(image: Image, tmp_path: Path) -> None:
    from test_image_boot import Boot

    slot = build_slot(image, name="eve-ref", version="13.6.0", behaviour="no-controller")
    disk = _disk(image, tmp_path, tmp_path / "id_ed25519")
    install_slot_offline(image, disk, "A", slot)
    with Boot(image, disk, tmp_path) as boot:
        down = boot.wait_for("no-network", timeout=60)
        started = boot.wait_for("agent-start", timeout=60)
        marks = [(n + " " + r).strip() for n, r in boot.markers()]
    print(f"\nno-controller release: agent-start at {started['at']} s")
    assert down["if"] == "eth0" and down["behaviour"] == "no-controller"
    assert "release name=eve-ref version=13.6.0 behaviour=no-controller" in marks
    assert not any(m.startswith("network ") for m in marks), marks  # no DHCP lease on any port
