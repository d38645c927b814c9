"""A real EVE-OS live image on the QEMU backend: its disk layout, its CONFIG partition, its VM.

EVE finds its bootstrap configuration on the GPT partition *named* ``CONFIG`` (``findfs
PARTLABEL=CONFIG`` in pkg/storage-init/storage-init.sh), a small FAT file system (label ``EVE``,
1 MiB, made by pkg/mkconf/make-config) mounted at ``/config``. The files it reads from there are
listed in docs/CONFIG.md and pkg/pillar/types/locationconsts.go of lf-edge/eve; docs/real-eve.md
sums them up with sources. The live disk (pkg/mkimage-raw-efi/make-raw) is laid out as
``EFI System`` (1), ``IMGA`` (2), ``IMGB`` (3), ``CONFIG`` (4) and ``P3`` (9), with the type GUIDs
in :data:`EVE_PARTITION_TYPES`. The live image (``docker run lfedge/eve live``, pkg/eve/runme.sh:
``efi conf imga``) has only EFI System, CONFIG and IMGA, ~600 MB; storage-init adds IMGB and P3 in
the rest of a larger disk at first boot.

This module writes the CONFIG files into a per-VM raw copy of such a disk without mounting
anything (mtools at the partition's byte offset), reads them back, and makes the
:class:`~eden.qemu.machine.MachineConfig` that boots the disk with OVMF and swtpm. The GPT is read
here in Python (header and entry-array CRCs checked), so a wrong disk gives a clear error before
any tool runs.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from eden.errors import InfrastructureError, InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from eden.profiles import HwProfile
    from eden.qemu.machine import MachineConfig

#: GPT partition type GUIDs of EVE's live disk (pkg/mkimage-raw-efi/make-raw).
EFI_SYSTEM_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
ROOTFS_TYPE = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6"  # the type GRUB's gptprio looks at (IMGA, IMGB)
CONFIG_TYPE = "13307e62-cd9c-4920-8f9b-91b45828b798"  # live image (do_conf)
CONFIG_TYPE_INSTALLER = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"  # installer image (do_conf_win: "basic data")
PERSIST_TYPE = "5f24425a-2dfa-11e8-a270-7b663faccc2c"
EVE_PARTITION_TYPES: dict[str, tuple[str, ...]] = {
    "EFI System": (EFI_SYSTEM_TYPE,),
    "IMGA": (ROOTFS_TYPE,),
    "IMGB": (ROOTFS_TYPE,),
    "CONFIG": (CONFIG_TYPE, CONFIG_TYPE_INSTALLER),
    "P3": (PERSIST_TYPE,),
}
CONFIG_PARTITION = "CONFIG"

#: What EVE reads from /config (docs/CONFIG.md, pkg/pillar/types/locationconsts.go). Keys are paths
#: inside the CONFIG file system.
EVE_CONFIG_FILES: dict[str, str] = {
    "server": "controller address HOST:PORT (read with surrounding whitespace trimmed)",
    "root-certificate.pem": "root CA that signs the controller's signing certificate (object signing, API v2)",
    "v2tlsbaseroot-certificates.pem": "CA bundle trusted for TLS to the controller (API v2); "
                                      "EVE copies the system bundle there when the file is missing or empty",
    "onboard.cert.pem": "onboarding certificate for the first registration",
    "onboard.key.pem": "its private key",
    "soft_serial": "software serial sent at registration next to the SMBIOS serial",
    "authorized_keys": "SSH keys for EVE's debug console",
    "hosts": "lines appended to /etc/hosts at boot (pkg/pillar/scripts/device-steps.sh)",
    "DevicePortConfig/override.json": "initial network port configuration",
    "GlobalConfig/global.json": "initial runtime configuration properties",
    "grub.cfg": "local tweaks to EVE's GRUB configuration",
    "wpa_supplicant.conf": "legacy Wi-Fi configuration",
}
#: Written by ``eden controller device-config``; all five are EVE names already (no mapping needed).
DEVICE_CONFIG_FILES = ("server", "root-certificate.pem", "v2tlsbaseroot-certificates.pem",
                       "onboard.cert.pem", "onboard.key.pem")
REQUIRED_FILES = ("server", "root-certificate.pem", "onboard.cert.pem", "onboard.key.pem")
#: Files the reference image's CONFIG carries for eden's own agent; EVE does not read them.
REFERENCE_ONLY_FILES = frozenset({"spec.json", "hostname"})

_GPT_SIGNATURE = b"EFI PART"
_QCOW2_MAGIC = b"QFI\xfb"
_EXT_MAGIC = b"\x53\xef"
_SERVER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")


@dataclass(frozen=True)
class GptPartition:
    """One GPT entry; ``offset`` and ``size`` are in bytes from the start of the disk."""

    number: int  # 1-based index in the entry array, as sgdisk and Linux number them
    name: str
    type_guid: str
    unique_guid: str
    first_lba: int
    last_lba: int
    attributes: int
    sector_size: int

    @property
    def offset(self) -> int:
        return self.first_lba * self.sector_size

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * self.sector_size


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw))


def disk_format(disk: Path) -> Literal["raw", "qcow2"]:
    """``qcow2`` if the file starts with QEMU's qcow2 magic, else ``raw``."""
    try:
        with open(disk, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise InvalidInput.at(str(disk), 0, 0, f"cannot read the disk image: {exc.strerror or exc}") from None
    return "qcow2" if head == _QCOW2_MAGIC else "raw"


def read_gpt(disk: Path) -> list[GptPartition]:
    """The used entries of the primary GPT of a raw disk image (512- or 4096-byte sectors)."""
    if disk_format(disk) == "qcow2":
        raise InvalidInput.at(str(disk), 0, 0, "this is a qcow2 image; the CONFIG partition is written on raw disks",
                              "use prepare_eve_disk() (qemu-img convert -O raw) to make the per-VM raw copy")
    with open(disk, "rb") as f:
        for sector in (512, 4096):
            f.seek(sector)
            header = f.read(92)
            if len(header) == 92 and header[:8] == _GPT_SIGNATURE:
                break
        else:
            raise InvalidInput.at(str(disk), 0, 0, "no GPT partition table (no 'EFI PART' header at LBA 1)",
                                  "give a raw EVE live image (e.g. live.raw), not an installer ISO or a bare file system")
        (hsize,) = struct.unpack_from("<I", header, 12)
        if not 92 <= hsize <= sector:
            raise InvalidInput.at(str(disk), 0, 0, f"implausible GPT header size {hsize}")
        f.seek(sector)
        full = f.read(hsize)
        (crc,) = struct.unpack_from("<I", full, 16)
        if zlib.crc32(full[:16] + b"\0\0\0\0" + full[20:]) != crc:
            raise InvalidInput.at(str(disk), 0, 0, "the GPT header checksum does not match (damaged partition table)")
        entries_lba, count, entry_size, entries_crc = struct.unpack_from("<QIII", full, 72)
        if entry_size < 128 or count > 4096:
            raise InvalidInput.at(str(disk), 0, 0, f"implausible GPT entry array ({count} entries of {entry_size} bytes)")
        f.seek(entries_lba * sector)
        table = f.read(count * entry_size)
    if len(table) != count * entry_size or zlib.crc32(table) != entries_crc:
        raise InvalidInput.at(str(disk), 0, 0, "the GPT entry array checksum does not match (damaged or truncated disk)")
    parts: list[GptPartition] = []
    for i in range(count):
        e = table[i * entry_size:(i + 1) * entry_size]
        if e[:16] == b"\0" * 16:
            continue
        first, last, attrs = struct.unpack_from("<QQQ", e, 32)
        name = e[56:128].decode("utf-16-le", errors="replace").split("\0", 1)[0]
        parts.append(GptPartition(i + 1, name, _guid(e[:16]), _guid(e[16:32]), first, last, attrs, sector))
    return parts


def find_partition(disk: Path, name: str = CONFIG_PARTITION) -> GptPartition:
    """The partition called ``name`` (matched as EVE does: by GPT partition name, exactly one)."""
    parts = read_gpt(disk)
    hits = [p for p in parts if p.name == name]
    if not hits:
        found = ", ".join(f"{p.number}:{p.name or '(unnamed)'}" for p in parts) or "none"
        raise InvalidInput.at(str(disk), 0, 0, f"no GPT partition named {name!r} (partitions: {found})",
                              "give an EVE live image: it has EFI System, CONFIG and IMGA (IMGB and P3 after its first boot)")
    if len(hits) > 1:
        raise InvalidInput.at(str(disk), 0, 0, f"{len(hits)} GPT partitions are named {name!r}; "
                              "EVE's findfs PARTLABEL= would use just one of them")
    part = hits[0]
    size = disk.stat().st_size
    if part.last_lba < part.first_lba or part.offset + part.size > size:
        raise InvalidInput.at(str(disk), 0, 0, f"partition {name!r} lies outside the disk ({size} bytes)")
    return part


def _check_fat(disk: Path, part: GptPartition) -> None:
    """The partition holds a FAT file system that fits inside it (mtools trusts the boot sector)."""
    with open(disk, "rb") as f:
        f.seek(part.offset)
        boot = f.read(512)
        f.seek(part.offset + 1024 + 56)
        ext = f.read(2)
    where = f"partition {part.number} ({part.name})"
    if len(boot) < 512 or boot[510:512] != b"\x55\xaa" or b"FAT" not in (boot[54:62] + boot[82:90]):
        if ext == _EXT_MAGIC:
            raise InvalidInput.at(str(disk), 0, 0, f"{where} holds an ext2/3/4 file system, not EVE's FAT",
                                  "this looks like eden's reference image: use eden.image.layout.write_config for it")
        raise InvalidInput.at(str(disk), 0, 0, f"{where} holds no FAT file system",
                              "EVE's CONFIG is vfat (mkfs.vfat -n EVE); the image may be damaged")
    bytes_per_sector, total16, total32 = (struct.unpack_from("<H", boot, 11)[0], struct.unpack_from("<H", boot, 19)[0],
                                          struct.unpack_from("<I", boot, 32)[0])
    fs_bytes = bytes_per_sector * (total16 or total32)
    if bytes_per_sector not in (512, 1024, 2048, 4096) or not 0 < fs_bytes <= part.size:
        raise InvalidInput.at(str(disk), 0, 0, f"{where}: its FAT file system claims {fs_bytes} bytes, "
                                               f"the partition has {part.size}")


def _check_files(files: Mapping[str, bytes | str]) -> dict[str, bytes]:
    """Known EVE names only, sane contents; returns the files as bytes."""
    unknown = sorted(set(files) - set(EVE_CONFIG_FILES))
    if unknown:
        hint = ", ".join(EVE_CONFIG_FILES)
        extra = [n for n in unknown if n in REFERENCE_ONLY_FILES]
        if extra:
            hint = f"{', '.join(extra)} belong to eden's reference image, not EVE; EVE reads: {hint}"
        raise InvalidInput.at("CONFIG", 0, 0, f"files EVE does not read from /config: {unknown}", hint)
    out = {name: data.encode() if isinstance(data, str) else bytes(data) for name, data in files.items()}
    if "server" in out:
        text = out["server"].decode(errors="replace").strip()
        if not _SERVER.match(text):
            raise InvalidInput.at("CONFIG/server", 1, 1, f"the controller address must be HOST:PORT, got {text!r}")
    for name, data in out.items():
        if name.endswith(".pem") and b"-----BEGIN " not in data:
            raise InvalidInput.at(f"CONFIG/{name}", 1, 1, "not a PEM file (no -----BEGIN line)")
    return out


def _mtools(tool: str, disk: Path, part: GptPartition, *args: str, what: str) -> bytes:
    exe = shutil.which(tool)
    if exe is None:
        raise InfrastructureError(f"{tool} is missing: install the Debian package mtools (scripts/install-system-deps)")
    env = {k: v for k, v in os.environ.items() if k != "MTOOLS_NO_VFAT"}  # keep long file names
    env["MTOOLS_SKIP_CHECK"] = "1"  # EVE's 1 MiB FAT has no PC disk geometry
    argv = [exe, "-i", f"{disk}@@{part.offset}", *args]
    proc = subprocess.run(argv, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        if "Disk full" in err or "No free" in err:
            raise InvalidInput.at(str(disk), 0, 0, f"{what}: the CONFIG partition ({part.size} bytes) is full: {err}")
        raise InfrastructureError(f"{what}: {tool} failed (exit {proc.returncode}): {err}")
    return proc.stdout


def write_eve_config(disk: Path, files: Mapping[str, bytes | str]) -> GptPartition:
    """Write ``files`` (EVE names, see :data:`EVE_CONFIG_FILES`) into the CONFIG FAT of a raw disk.

    Files already there with other names stay (the image's own defaults); files with the same
    names are replaced; directories (``DevicePortConfig/``) are created as needed. No mount, no
    root: ``mcopy -s -o -i DISK@@OFFSET``. Returns the partition written.
    """
    data = _check_files(files)
    if not data:
        raise InvalidInput.at("CONFIG", 0, 0, "no files to write")
    part = find_partition(disk, CONFIG_PARTITION)
    if part.type_guid not in EVE_PARTITION_TYPES[CONFIG_PARTITION]:
        raise InvalidInput.at(str(disk), 0, 0, f"partition {part.number} is named CONFIG but its type is "
                                               f"{part.type_guid}, not one of EVE's {EVE_PARTITION_TYPES[CONFIG_PARTITION]}")
    _check_fat(disk, part)
    with tempfile.TemporaryDirectory(prefix="eden-eve-config-") as tmp:
        src = Path(tmp)
        for name, content in data.items():
            target = src / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        tops = sorted(str(p) for p in src.iterdir())
        _mtools("mcopy", disk, part, "-s", "-o", "-Q", *tops, "::/", what="writing EVE's CONFIG")
    with open(disk, "rb+") as f:
        os.fsync(f.fileno())
    return part


def read_eve_config(disk: Path, name: str) -> bytes:
    """One file from the CONFIG FAT of a raw disk (``mcopy`` to stdout)."""
    part = find_partition(disk, CONFIG_PARTITION)
    _check_fat(disk, part)
    return _mtools("mcopy", disk, part, f"::/{name}", "-", what=f"reading CONFIG/{name}")


def list_eve_config(disk: Path) -> list[str]:
    """All file paths in the CONFIG FAT (``mdir -/ -b``), relative, sorted."""
    part = find_partition(disk, CONFIG_PARTITION)
    _check_fat(disk, part)
    out = _mtools("mdir", disk, part, "-/", "-b", "::/", what="listing CONFIG").decode(errors="replace")
    names = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("::/") and not line.endswith("/"):
            names.append(line[3:])
    return sorted(names)


def eve_config_files(config_dir: Path, *, soft_serial: str | None = None,
                     extra: Mapping[str, bytes | str] | None = None) -> dict[str, bytes]:
    """The CONFIG files for EVE from an ``eden controller device-config`` directory.

    ``device_config`` already writes EVE's names (:data:`DEVICE_CONFIG_FILES`), so nothing is
    renamed; files only eden's reference image uses (:data:`REFERENCE_ONLY_FILES`) are left out.
    ``soft_serial`` adds EVE's software serial; ``extra`` adds or replaces files by EVE name
    (e.g. ``authorized_keys``, ``DevicePortConfig/override.json``).
    """
    if not config_dir.is_dir():
        raise InvalidInput.at(str(config_dir), 0, 0, "not a directory",
                              "run: eden controller device-config --serial SERIAL --out DIR")
    files: dict[str, bytes] = {}
    for path in sorted(config_dir.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(config_dir).as_posix()
        if name in REFERENCE_ONLY_FILES:
            continue
        files[name] = path.read_bytes()
    missing = [n for n in REQUIRED_FILES if n not in files]
    if missing:
        raise InvalidInput.at(str(config_dir), 0, 0, f"missing {', '.join(missing)}",
                              "run: eden controller device-config --serial SERIAL --out DIR")
    if soft_serial is not None:
        files["soft_serial"] = (soft_serial.strip() + "\n").encode()
    for name, data in (extra or {}).items():
        files[name] = data.encode() if isinstance(data, str) else bytes(data)
    return _check_files(files)


def prepare_eve_disk(image: Path, dest: Path, *, size: int | None = None) -> Path:
    """The per-VM raw copy of a user's EVE image (never written itself): sparse copy, or
    ``qemu-img convert -O raw`` for qcow2. Checks it has EVE's CONFIG partition. Returns ``dest``.

    ``size`` (bytes) grows the copy, sparsely: a live image is only ~600 MB (EFI System, CONFIG,
    IMGA) and EVE's storage-init, seeing no IMGB and no P3, moves the backup GPT to the new end
    (``sgdisk -e``) and adds IMGB and P3 in the space (pkg/storage-init/storage-init.sh).
    """
    if not image.is_file():
        raise InvalidInput.at(str(image), 0, 0, "EVE image not found", "set EDEN_EVE_IMAGE or image: to a live.raw/qcow2")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if disk_format(image) == "qcow2":
        exe = shutil.which("qemu-img")
        if exe is None:
            raise InfrastructureError("qemu-img is missing: install qemu-utils (scripts/install-system-deps)")
        argv = [exe, "convert", "-O", "raw", str(image), str(dest)]
    else:
        argv = ["cp", "--sparse=always", str(image), str(dest)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise InfrastructureError(f"copying the EVE image failed: {' '.join(argv)}: {proc.stderr.strip()}")
    find_partition(dest, CONFIG_PARTITION)
    if size is not None:
        have = dest.stat().st_size
        if size < have:
            raise InvalidInput.at(str(image), 0, 0, f"the disk cannot shrink ({have} bytes) to {size} bytes")
        with open(dest, "r+b") as f:
            f.truncate(size)
    return dest


def check_eve_layout(disk: Path) -> list[str]:
    """Warnings about how ``disk`` differs from EVE's live layout (empty: it matches).

    Missing IMGB/P3 is normal for a fresh live image; a missing EFI System partition means OVMF
    has nothing to boot.
    """
    parts = {p.name: p for p in read_gpt(disk)}
    notes = []
    for name, types in EVE_PARTITION_TYPES.items():
        p = parts.get(name)
        if p is None:
            notes.append(f"no {name} partition" + (" (EVE adds it at first boot)" if name in ("IMGB", "P3") else ""))
        elif p.type_guid not in types:
            notes.append(f"{name} has type {p.type_guid}, EVE uses {' or '.join(types)}")
    return notes


def eve_machine_config(
    profile: HwProfile,
    disk: Path,
    *,
    name: str,
    serial: str,
    tpm_state: Path,
    accel: Literal["auto", "kvm", "tcg"] = "auto",
    memory_mb: int | None = None,
) -> MachineConfig:
    """The VM for an EVE live disk: the profile's machine, UEFI (OVMF: code read-only, a per-VM
    copy of the variables), swtpm, the disk on virtio, booted by the firmware (no ``-kernel``).

    The SMBIOS system serial is what EVE sends as ``serial`` at registration (dmidecode), so it
    must be the serial the controller pre-registered. Under TCG the profile's CPU model is used
    (``Machine`` adds ``-cpu host`` itself under KVM); pass the accelerator the backend probed,
    since ``auto`` leaves QEMU's default CPU under TCG. The rest follows EVE's own ``make run``
    (Makefile QEMU_OPTS: pflash OVMF code + vars, ``-smbios type=1,serial=``, tpm-tis on swtpm,
    virtio-net on user networking).
    """
    from eden.qemu.machine import Disk, MachineConfig

    q = profile.qemu
    if q is None or q.firmware != "ovmf" or profile.firmware.kind != "uefi":
        raise InvalidInput.at(profile.name, 0, 0, "an EVE live image boots with UEFI",
                              "use a profile with firmware.kind: uefi and qemu.firmware: ovmf (eve-qemu-x86_64)")
    if profile.arch != "x86_64":
        raise InvalidInput.at(profile.name, 0, 0, "only x86_64 EVE images are supported on the QEMU backend")
    if profile.tpm != "2.0":
        raise InvalidInput.at(profile.name, 0, 0, "EVE's measured boot and attestation need tpm: 2.0")
    extra = ["-smbios", f"type=1,serial={serial}"]
    if q.machine.split(",")[0].startswith(("q35", "pc-q35")):
        # q35's built-in TCO watchdog may reset the machine, as EVE's own QEMU targets allow
        # (its watchdogd feeds /dev/watchdog); QEMU's default watchdog action is reset
        extra += ["-global", "ICH9-LPC.noreboot=false"]
    use = q.accel if accel == "auto" else accel
    if use == "tcg":
        extra = ["-cpu", q.cpu, *extra]
    return MachineConfig(
        name=name, kernel=None, initrd=None, disks=[Disk(disk, "raw", "virtio")],
        memory_mb=memory_mb or profile.memory // 2**20, cpus=profile.cores, machine=q.machine, accel=use,
        tpm=True, tpm_state=tpm_state, ovmf=True, extra_args=extra,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m eden.qemu.eve_image``: prepare a per-VM disk, write/list/read its CONFIG."""
    import argparse
    import sys

    from eden.units import parse_bytes

    ap = argparse.ArgumentParser(prog="python -m eden.qemu.eve_image", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="raw per-VM copy of an EVE image (qcow2 converted), optionally grown")
    p.add_argument("image", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--size", help="grow the copy to this size (e.g. 8G) for EVE's IMGB and P3")
    w = sub.add_parser("write", help="write an 'eden controller device-config' directory into CONFIG")
    w.add_argument("disk", type=Path)
    w.add_argument("config_dir", type=Path)
    w.add_argument("--soft-serial")
    w.add_argument("--file", action="append", default=[], metavar="NAME=PATH",
                   help="add a file by its EVE name, e.g. DevicePortConfig/override.json=./dpc.json")
    ls = sub.add_parser("ls", help="list the files in CONFIG")
    ls.add_argument("disk", type=Path)
    cat = sub.add_parser("cat", help="print one file from CONFIG")
    cat.add_argument("disk", type=Path)
    cat.add_argument("name")
    chk = sub.add_parser("check", help="compare the disk's partitions with EVE's live layout")
    chk.add_argument("disk", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "prepare":
            size = parse_bytes(args.size) if args.size else None
            print(prepare_eve_disk(args.image, args.dest, size=size))
        elif args.cmd == "write":
            extra: dict[str, bytes] = {}
            for item in args.file:
                name, sep, path = item.partition("=")
                if not sep:
                    raise InvalidInput.at("--file", 0, 0, f"expected NAME=PATH, got {item!r}")
                extra[name] = Path(path).read_bytes()
            files = eve_config_files(args.config_dir, soft_serial=args.soft_serial, extra=extra)
            part = write_eve_config(args.disk, files)
            print(f"wrote {', '.join(sorted(files))} to partition {part.number} (CONFIG) of {args.disk}")
        elif args.cmd == "ls":
            print("\n".join(list_eve_config(args.disk)))
        elif args.cmd == "cat":
            sys.stdout.buffer.write(read_eve_config(args.disk, args.name))
        else:
            notes = check_eve_layout(args.disk)
            for p in read_gpt(args.disk):
                print(f"{p.number:>2} {p.name:<12} {p.type_guid} offset={p.offset} size={p.size}")
            print("\n".join(notes) if notes else "EVE live layout: ok")
    except (InvalidInput, InfrastructureError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
