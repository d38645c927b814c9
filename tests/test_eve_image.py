"""The real-EVE path without an EVE image: a synthetic disk with EVE's live layout (sgdisk,
mkfs.vfat), CONFIG written from a real ``eden controller device-config`` and read back with
mtools, clear errors for wrong disks, and OVMF + swtpm booting that disk under TCG into a GRUB on
its EFI System partition that reads the CONFIG files back.

What needs a real EVE image (its boot, registration with our controller) is not tested here:
docs/real-eve.md lists it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from evedisk import DISK_MB, LAYOUT, MiB, grub_efi, install_boot_loader, make_disk
from evedisk import mkfs_vfat as _mkfs_vfat
from evedisk import run as _run
from evedisk import sgdisk as _sgdisk
from leakcheck import marked_processes

from eden.runtime.deadline import Deadline
from eden.controller.layout import Layout
from eden.controller.setup import device_config, init
from eden.errors import InvalidInput
from eden.profiles import load_profiles
from eden.qemu import eve_image as ev
from eden.qemu.hostcheck import check_host
from eden.qemu.machine import RUN_ENV, Machine

OVMF_BOOT_DEADLINE = 40.0


def _region_hash(disk: Path, part: ev.GptPartition) -> str:
    with open(disk, "rb") as f:
        f.seek(part.offset)
        return hashlib.sha256(f.read(part.size)).hexdigest()


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return init(tmp_path_factory.mktemp("ctrl") / "c", server="10.0.2.2:8443")


@pytest.fixture(scope="module")
def template_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_disk(tmp_path_factory.mktemp("template") / "live.raw")  # sgdisk sleeps 1 s per run


@pytest.fixture
def disk(template_disk: Path, tmp_path: Path) -> Path:
    _run("cp", "--sparse=always", str(template_disk), str(tmp_path / "live.raw"))
    return tmp_path / "live.raw"


# --- the GPT -----------------------------------------------------------------------------------


def test_read_gpt_agrees_with_sgdisk(disk: Path) -> None:
    parts = ev.read_gpt(disk)
    assert [(p.number, p.name) for p in parts] == [(n, name) for n, name, _, _ in LAYOUT]
    for p in parts:
        info = _run(_sgdisk(), "-i", str(p.number), str(disk)).stdout
        assert f"Partition GUID code: {p.type_guid.upper()}" in info
        assert f"Partition unique GUID: {p.unique_guid.upper()}" in info
        assert re.search(rf"First sector: {p.first_lba}\b", info) and re.search(rf"Last sector: {p.last_lba}\b", info)
        assert f"Partition name: '{p.name}'" in info
    imga = next(p for p in parts if p.name == "IMGA")
    assert imga.attributes == (1 << 56) | (1 << 49)
    config = ev.find_partition(disk)
    assert (config.number, config.type_guid, config.size) == (4, ev.CONFIG_TYPE, MiB)
    assert ev.check_eve_layout(disk) == []


def test_a_fresh_live_image_grown_for_its_first_boot(tmp_path: Path) -> None:
    # `docker run lfedge/eve live` lays out "efi conf imga": EFI System, CONFIG, IMGA in that order
    fresh = make_disk(tmp_path / "fresh.raw", [LAYOUT[0], LAYOUT[3], LAYOUT[1]])
    assert [p.name for p in sorted(ev.read_gpt(fresh), key=lambda p: p.first_lba)] == ["EFI System", "CONFIG", "IMGA"]
    notes = ev.check_eve_layout(fresh)
    assert notes == ["no IMGB partition (EVE adds it at first boot)", "no P3 partition (EVE adds it at first boot)"]
    vm_disk = ev.prepare_eve_disk(fresh, tmp_path / "vm" / "disk.raw", size=64 * MiB)
    assert vm_disk.stat().st_size == 64 * MiB and fresh.stat().st_size == DISK_MB * MiB
    assert os.stat(vm_disk).st_blocks * 512 < 8 * MiB  # sparse
    ev.write_eve_config(vm_disk, {"server": "10.0.2.2:8443\n"})  # CONFIG is all that is needed
    assert ev.read_eve_config(vm_disk, "server") == b"10.0.2.2:8443\n"
    with pytest.raises(InvalidInput, match="cannot shrink"):
        ev.prepare_eve_disk(fresh, tmp_path / "vm2" / "disk.raw", size=MiB)


# --- CONFIG: write and read back -----------------------------------------------------------------


def test_device_config_output_is_what_eve_reads(controller: Layout, tmp_path: Path) -> None:
    out = tmp_path / "cfg"
    names = device_config(controller, "eve-qemu-x86_64-dev1", out)
    assert set(names) == set(ev.DEVICE_CONFIG_FILES)
    assert set(names) <= set(ev.EVE_CONFIG_FILES)  # no renaming needed
    (out / "spec.json").write_text("{}")  # what the reference image adds for eden's agent
    (out / "hostname").write_text("dev1\n")
    files = ev.eve_config_files(out, soft_serial="eve-qemu-x86_64-dev1")
    assert sorted(files) == sorted([*names, "soft_serial"])
    assert files["server"] == b"10.0.2.2:8443\n"
    assert files["root-certificate.pem"] == controller.root_cert.read_bytes()
    assert files["onboard.key.pem"] == controller.key("onboard").read_bytes()
    assert files["soft_serial"] == b"eve-qemu-x86_64-dev1\n"
    (out / "onboard.key.pem").unlink()
    with pytest.raises(InvalidInput, match="missing onboard.key.pem"):
        ev.eve_config_files(out)


def test_write_config_reads_back_and_touches_nothing_else(controller: Layout, disk: Path, tmp_path: Path) -> None:
    device_config(controller, "dev1", tmp_path / "cfg")
    port_config = '{"Version": 1, "Ports": [{"IfName": "eth0", "Name": "Management", "IsMgmt": true, "Dhcp": 4}]}\n'
    files = ev.eve_config_files(tmp_path / "cfg", soft_serial="dev1",
                                extra={"DevicePortConfig/override.json": port_config, "authorized_keys": "ssh-ed25519 AAAA x\n"})
    others = [p for p in ev.read_gpt(disk) if p.name != "CONFIG"]
    before = {p.name: _region_hash(disk, p) for p in others}
    gpt_before = disk.read_bytes()[: 34 * 512]

    part = ev.write_eve_config(disk, files)

    assert part.name == "CONFIG"
    assert ev.list_eve_config(disk) == sorted(files)
    for name, data in files.items():
        assert ev.read_eve_config(disk, name) == data, name
    # an independent reader: mtools' mtype on the partition, and fsck.vfat finds the FAT clean
    mtype = _run("mtype", "-i", f"{disk}@@{part.offset}", "::/DevicePortConfig/override.json").stdout
    assert mtype == port_config
    img = tmp_path / "config.fat"
    with open(disk, "rb") as f:
        f.seek(part.offset)
        img.write_bytes(f.read(part.size))
    fsck = shutil.which("fsck.vfat") or shutil.which("fsck.vfat", path="/usr/sbin:/sbin")
    assert fsck
    assert subprocess.run([fsck, "-n", str(img)], capture_output=True).returncode == 0
    assert b"EVE        " in img.read_bytes()[:512]  # the volume label stays
    # the other partitions and the partition table are byte for byte what they were
    assert {p.name: _region_hash(disk, p) for p in others} == before
    assert disk.read_bytes()[: 34 * 512] == gpt_before


def test_rewrite_replaces_same_names_and_keeps_the_images_defaults(disk: Path, tmp_path: Path) -> None:
    part = ev.find_partition(disk)
    defaults = tmp_path / "defaults"
    defaults.mkdir()
    (defaults / "server").write_text("zedcloud.example.net\n")
    (defaults / "authorized_keys").write_text("")
    _run("mcopy", "-i", f"{disk}@@{part.offset}", str(defaults / "server"), str(defaults / "authorized_keys"), "::/")
    ev.write_eve_config(disk, {"server": "10.0.2.2:40001\n"})
    ev.write_eve_config(disk, {"server": "10.0.2.2:40002\n"})  # again: overwritten, no prompt
    assert ev.read_eve_config(disk, "server") == b"10.0.2.2:40002\n"
    assert ev.list_eve_config(disk) == ["authorized_keys", "server"]


# --- errors --------------------------------------------------------------------------------------


def test_disk_without_config_partition(tmp_path: Path) -> None:
    no_config = make_disk(tmp_path / "x.raw", [LAYOUT[0], LAYOUT[1]])
    with pytest.raises(InvalidInput, match=r"no GPT partition named 'CONFIG' \(partitions: 1:EFI System, 2:IMGA\)"):
        ev.write_eve_config(no_config, {"server": "h:1"})


def test_not_a_gpt_disk_and_damaged_gpt(tmp_path: Path, disk: Path) -> None:
    blank = tmp_path / "blank.raw"
    blank.write_bytes(b"\0" * MiB)
    with pytest.raises(InvalidInput, match="no GPT partition table"):
        ev.find_partition(blank)
    with pytest.raises(InvalidInput, match="cannot read the disk image"):
        ev.find_partition(tmp_path / "nope.raw")
    damaged = tmp_path / "damaged.raw"
    shutil.copyfile(disk, damaged)
    with open(damaged, "r+b") as f:  # one byte of the first entry's name
        f.seek(2 * 512 + 56)
        f.write(b"X")
    with pytest.raises(InvalidInput, match="entry array checksum"):
        ev.find_partition(damaged)
    with open(damaged, "r+b") as f:  # the header's own field (first usable LBA)
        f.seek(512 + 40)
        f.write(b"\x07")
    with pytest.raises(InvalidInput, match="header checksum"):
        ev.find_partition(damaged)


@pytest.mark.slow  # four disks, and sgdisk sleeps 1 s for each
def test_config_partition_of_the_wrong_kind(tmp_path: Path) -> None:
    # unformatted CONFIG
    raw = make_disk(tmp_path / "nofat.raw", fat=False)
    with pytest.raises(InvalidInput, match="holds no FAT file system"):
        ev.write_eve_config(raw, {"server": "h:1"})
    # ext4 CONFIG, as in eden's reference image: told to use the reference image's writer
    mke2fs = shutil.which("mke2fs") or shutil.which("mke2fs", path="/usr/sbin:/sbin")
    assert mke2fs
    part = ev.find_partition(raw)
    ext = tmp_path / "ext.img"
    _run(mke2fs, "-q", "-F", "-t", "ext4", str(ext), "1024k")
    fd = os.open(raw, os.O_WRONLY)
    os.pwrite(fd, ext.read_bytes(), part.offset)
    os.close(fd)
    with pytest.raises(InvalidInput, match=r"(?s)ext2/3/4.*eden.image.layout.write_config"):
        ev.write_eve_config(raw, {"server": "h:1"})
    # a FAT bigger than its partition (mtools would write past CONFIG into IMGA)
    big = tmp_path / "big.fat"
    _run(_mkfs_vfat(), "-n", "EVE", "-C", str(big), "2048")
    fd = os.open(raw, os.O_WRONLY)
    os.pwrite(fd, big.read_bytes()[:part.size], part.offset)
    os.close(fd)
    with pytest.raises(InvalidInput, match=r"its FAT file system claims 2097152 bytes, the partition has 1048576"):
        ev.write_eve_config(raw, {"server": "h:1"})
    # two partitions named CONFIG; a CONFIG past the end of a truncated disk
    two = make_disk(tmp_path / "two.raw", [(4, "CONFIG", ev.CONFIG_TYPE, 1), (5, "CONFIG", ev.CONFIG_TYPE, 1)])
    with pytest.raises(InvalidInput, match="2 GPT partitions are named 'CONFIG'"):
        ev.write_eve_config(two, {"server": "h:1"})
    cut = make_disk(tmp_path / "cut.raw", [(1, "IMGA", ev.ROOTFS_TYPE, 8), (4, "CONFIG", ev.CONFIG_TYPE, 1)], fat=False)
    with open(cut, "r+b") as f:
        f.truncate(8 * MiB)
    with pytest.raises(InvalidInput, match="lies outside the disk"):
        ev.find_partition(cut)
    # CONFIG named right but typed wrong
    typed = make_disk(tmp_path / "typed.raw", [(4, "CONFIG", ev.ROOTFS_TYPE, 1)])
    with pytest.raises(InvalidInput, match="named CONFIG but its type"):
        ev.write_eve_config(typed, {"server": "h:1"})


def test_bad_files_are_refused_before_the_disk_is_touched(disk: Path) -> None:
    before = disk.read_bytes()
    with pytest.raises(InvalidInput, match=r"(?s)files EVE does not read.*\['spec.json'\]") as info:
        ev.write_eve_config(disk, {"server": "h:1", "spec.json": "{}"})
    assert "reference image" in str(info.value)
    with pytest.raises(InvalidInput, match="HOST:PORT"):
        ev.write_eve_config(disk, {"server": "https://h:1/"})
    with pytest.raises(InvalidInput, match="not a PEM file"):
        ev.write_eve_config(disk, {"root-certificate.pem": b"\x30\x82"})
    with pytest.raises(InvalidInput, match="no files"):
        ev.write_eve_config(disk, {})
    assert disk.read_bytes() == before


def test_config_that_does_not_fit(disk: Path) -> None:
    big = b"-----BEGIN CERTIFICATE-----\n" + os.urandom(2 * MiB)
    with pytest.raises(InvalidInput, match="is full"):
        ev.write_eve_config(disk, {"v2tlsbaseroot-certificates.pem": big})


def test_qcow2_is_refused_and_prepare_converts_it(disk: Path, tmp_path: Path) -> None:
    qcow = tmp_path / "live.qcow2"
    _run("qemu-img", "convert", "-O", "qcow2", str(disk), str(qcow))
    assert ev.disk_format(qcow) == "qcow2"
    with pytest.raises(InvalidInput, match=r"(?s)qcow2 image.*prepare_eve_disk"):
        ev.write_eve_config(qcow, {"server": "h:1"})
    before = hashlib.sha256(qcow.read_bytes()).hexdigest()
    vm_disk = ev.prepare_eve_disk(qcow, tmp_path / "vm" / "disk.raw")
    assert ev.disk_format(vm_disk) == "raw" and vm_disk.stat().st_size == disk.stat().st_size
    ev.write_eve_config(vm_disk, {"server": "10.0.2.2:8443"})
    assert ev.read_eve_config(vm_disk, "server") == b"10.0.2.2:8443"
    assert hashlib.sha256(qcow.read_bytes()).hexdigest() == before  # the user's image is never written
    raw_copy = ev.prepare_eve_disk(disk, tmp_path / "vm2" / "disk.raw")
    assert raw_copy.read_bytes() == disk.read_bytes()
    with pytest.raises(InvalidInput, match="EVE image not found"):
        ev.prepare_eve_disk(tmp_path / "missing.raw", tmp_path / "vm3" / "disk.raw")
    blank = tmp_path / "blank.raw"
    blank.write_bytes(b"\0" * MiB)
    with pytest.raises(InvalidInput, match="no GPT"):
        ev.prepare_eve_disk(blank, tmp_path / "vm4" / "disk.raw")


@pytest.mark.slow
def test_command_line(controller: Layout, disk: Path, tmp_path: Path) -> None:
    """``python -m eden.qemu.eve_image``: the steps of docs/real-eve.md, as a user runs them."""
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "eden.qemu.eve_image", *args], capture_output=True, text=True,
                              timeout=60, check=False)

    qcow = tmp_path / "live.qcow2"
    _run("qemu-img", "convert", "-O", "qcow2", str(disk), str(qcow))
    vm_disk = tmp_path / "vm" / "disk.raw"
    r = cli("prepare", str(qcow), str(vm_disk), "--size", "32M")
    assert r.returncode == 0, r.stderr
    assert vm_disk.stat().st_size == 32 * MiB
    device_config(controller, "dev7", tmp_path / "cfg")
    dpc = tmp_path / "dpc.json"
    dpc.write_text('{"Version": 1}\n')
    r = cli("write", str(vm_disk), str(tmp_path / "cfg"), "--soft-serial", "dev7",
            "--file", f"DevicePortConfig/override.json={dpc}")
    assert r.returncode == 0, r.stderr
    assert "partition 4 (CONFIG)" in r.stdout
    r = cli("ls", str(vm_disk))
    assert r.stdout.split() == sorted([*ev.DEVICE_CONFIG_FILES, "soft_serial", "DevicePortConfig/override.json"])
    assert cli("cat", str(vm_disk), "soft_serial").stdout == "dev7\n"
    r = cli("check", str(vm_disk))
    assert r.returncode == 0 and "EVE live layout: ok" in r.stdout and " 4 CONFIG " in r.stdout
    bad = cli("write", str(vm_disk), str(tmp_path / "cfg"), "--file", "nonsense")
    assert bad.returncode == 2 and "NAME=PATH" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("cat", str(tmp_path / "nope.raw"), "server")
    assert bad.returncode == 2 and "cannot read the disk image" in bad.stderr


# --- the VM ----------------------------------------------------------------------------------------


def test_machine_config_from_the_eve_profile(disk: Path, tmp_path: Path) -> None:
    profiles = load_profiles()
    p = profiles["eve-qemu-x86_64"]
    cfg = ev.eve_machine_config(p, disk, name="dev1", serial="eve-qemu-x86_64-dev1", tpm_state=tmp_path / "tpm",
                                accel="tcg")
    assert cfg.kernel is None and cfg.ovmf is True and cfg.tpm and cfg.tpm_state == tmp_path / "tpm"
    assert (cfg.memory_mb, cfg.cpus, cfg.machine) == (4096, 2, "q35")
    vm = Machine(cfg, tmp_path / "run")
    vm.tools = check_host(qemu=cfg.qemu, tpm=True, ovmf=True)
    argv = " ".join(vm.command("tcg"))
    assert "-kernel" not in argv
    assert f"if=pflash,format=raw,unit=0,readonly=on,file={vm.tools.ovmf}" in argv
    assert f"if=pflash,format=raw,unit=1,file={tmp_path / 'run' / 'OVMF_VARS.fd'}" in argv
    assert f"file={disk},format=raw,if=none,id=disk0" in argv and "virtio-blk-pci,drive=disk0,bootindex=0" in argv
    assert "-smbios type=1,serial=eve-qemu-x86_64-dev1" in argv and "-cpu max" in argv
    assert "-global ICH9-LPC.noreboot=false" in argv
    kvm = ev.eve_machine_config(p, disk, name="d", serial="s", tpm_state=tmp_path / "t", accel="kvm")
    assert "-cpu" not in kvm.extra_args  # Machine adds -cpu host under KVM
    # the generic QEMU profile is UEFI + OVMF too; boards without OVMF are refused
    ev.eve_machine_config(profiles["qemu-x86_64"], disk, name="d", serial="s", tpm_state=tmp_path / "t")
    for name, msg in (("rpi4-class", "boots with UEFI"), ("qemu-aarch64", "only x86_64")):
        with pytest.raises(InvalidInput, match=msg):
            ev.eve_machine_config(profiles[name], disk, name="d", serial="s", tpm_state=tmp_path / "t")


def _pcr_extends(swtpm_log: str) -> list[int]:
    """PCR indices of the TPM2_PCR_Extend commands (code 0x182) in a swtpm level-20 log."""
    pcrs: list[int] = []
    lines = swtpm_log.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*SWTPM_IO_Read: length (\d+)", line)
        if not m:
            continue
        data = bytearray()
        for more in lines[i + 1:]:
            if not re.fullmatch(r"\s*([0-9A-F]{2}\s*)+", more):
                break
            data += bytes.fromhex(more)
        if len(data) >= 14 and int.from_bytes(data[6:10], "big") == 0x182:
            pcrs.append(int.from_bytes(data[10:14], "big"))
    return pcrs


#: What the test's GRUB does (embedded config): EVE's boot path is OVMF -> GRUB on the EFI System
#: partition -> CONFIG; here GRUB finds CONFIG by its FAT label, prints two of the files eden wrote
#: and powers the machine off. Its tpm module measures the files it reads into PCR 9.
GRUB_CFG = """\
echo EDEN-GRUB start
search --no-floppy --label EVE --set=cfg
echo EDEN-GRUB config=($cfg)
cat ($cfg)/server
cat ($cfg)/DevicePortConfig/override.json
echo EDEN-GRUB done
halt
"""
@pytest.mark.slow
@pytest.mark.qemu
def test_ovmf_swtpm_and_grub_read_the_written_config(controller: Layout, disk: Path, tmp_path: Path) -> None:
    """EVE's boot path up to its boot loader, on the EVE-layout disk, under TCG: OVMF (read-only
    code, per-VM variables) with a TPM attached measures into PCRs 0-7, loads ``\\EFI\\BOOT\\BOOTX64.EFI``
    from the EFI System partition (a GRUB, measured into PCR 4), and GRUB reads the CONFIG files
    ``write_eve_config`` wrote (found by the FAT label ``EVE``, measured into PCR 9), then powers off.
    The TPM logs its commands here, so the test starts it instead of ``Machine``."""
    install_boot_loader(disk, grub_efi(tmp_path / "BOOTX64.EFI", GRUB_CFG))
    device_config(controller, "eve-test-1", tmp_path / "cfg")
    dpc = '{"Version": 1, "Ports": [{"IfName": "eth0", "IsMgmt": true, "Dhcp": 4}]}'
    ev.write_eve_config(disk, ev.eve_config_files(tmp_path / "cfg", extra={"DevicePortConfig/override.json": dpc}))

    profile = load_profiles()["eve-qemu-x86_64"]
    cfg = ev.eve_machine_config(profile, disk, name="eve-layout", serial="eve-test-1", tpm_state=tmp_path / "tpm",
                                accel="tcg", memory_mb=256)
    cfg.cpus = 1
    cfg.tpm = False
    cfg.nic = False
    cfg.pvpanic = False
    tools = check_host(tpm=True, ovmf=True)
    state = tmp_path / "tpm"
    state.mkdir()
    _run(tools.swtpm_setup or "swtpm_setup", "--tpm2", "--tpmstate", str(state), "--create-ek-cert",
         cwd=tmp_path, env={**os.environ, "TMPDIR": str(tmp_path)})
    sock = Path(f"/tmp/eden-evetest-{uuid.uuid4().hex[:8]}.sock")
    log = tmp_path / "swtpm.log"
    run_dir = tmp_path / "run"
    swtpm = subprocess.Popen([tools.swtpm or "swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
                              "--ctrl", f"type=unixio,path={sock}", "--log", f"file={log},level=20", "--terminate"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, RUN_ENV: str(run_dir)})
    cfg.extra_args += ["-chardev", f"socket,id=chrtpm,path={sock}", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
                       "-device", "tpm-tis,tpmdev=tpm0"]

    async def main() -> tuple[float, str, int | None]:
        deadline = Deadline(5)
        while not sock.exists():
            assert swtpm.poll() is None and not deadline.expired(), "swtpm did not start"
            await asyncio.sleep(0.02)
        async with Machine(cfg, run_dir) as vm:
            t0 = time.monotonic()
            await vm.power_on(Deadline(20))
            assert vm.console is not None
            tpm = await vm.qmp("query-tpm", deadline=Deadline(5))
            assert [t["model"] for t in tpm] == ["tpm-tis"] and tpm[0]["options"]["type"] == "emulator"
            await vm.console.expect("EDEN-GRUB start", Deadline(OVMF_BOOT_DEADLINE))
            done = await vm.console.expect(re.compile(rb"EDEN-GRUB config=\((\S+)\)(.*?)EDEN-GRUB done", re.S),
                                           Deadline(10))
            seconds = time.monotonic() - t0
            rc = await vm.wait_exit(Deadline(10))  # GRUB's halt powers the machine off
            return seconds, f"{done.group(1)}\n{done.group(2)}", rc

    try:
        seconds, shown, rc = asyncio.run(main())
    finally:
        swtpm.kill()
        swtpm.wait()
        sock.unlink(missing_ok=True)
    print(f"OVMF power-on to GRUB having read CONFIG on the EVE-layout disk: {seconds:.1f} s (TCG)")
    part, _, text = shown.partition("\n")
    assert part == "hd0,gpt4"  # EVE's CONFIG partition number, found by the FAT label
    assert "10.0.2.2:8443" in text and dpc in text
    assert rc == 0
    assert marked_processes(RUN_ENV, str(run_dir)) == set(), "leaked qemu/swtpm"
    pcrs = _pcr_extends(log.read_text(errors="replace"))
    assert set(range(8)) <= set(pcrs), f"OVMF should measure into PCRs 0-7, saw extends of {sorted(set(pcrs))}"
    assert 9 in pcrs, "GRUB's tpm module should measure the files it read into PCR 9"
    vars_copy = run_dir / "OVMF_VARS.fd"
    assert vars_copy.is_file() and vars_copy.stat().st_size > 0  # the per-VM copy, the template untouched
    assert "readonly=on" in (run_dir / "qemu.cmdline").read_text()
