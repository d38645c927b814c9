"""Real tamper of a powered-off reference-image VM: each stage changes what the device boots.

The simulator's tamper stages (``eve/node.py`` ``_TAMPER_PCR``, spec §5) map to real
changes here, each measured into a real swtpm PCR at the next power-on (findings and PCR table in
docs/qemu.md, "Measured boot and tamper"):

- ``firmware``: a modified copy of QEMU's ``linuxboot_dma.bin`` option ROM (the firmware code that
  loads the kernel on direct kernel boot) is put in ``<directory>/firmware`` and QEMU is pointed at
  it with ``-L``. SeaBIOS measures every option ROM it runs into **PCR 2**; the kernel's IMA
  ``boot_aggregate`` (PCR 0-9 at kernel start) then changes **PCR 10** too. SeaBIOS measures nothing
  but a separator into PCR 0 and does not measure its own code, so a changed BIOS ROM (``-bios``)
  would change no PCR at all.
- ``bootloader``: a parameter is added to the kernel command line; the boot stage
  (scripts/image-init) measures ``/proc/cmdline`` into **PCR 8**, as EVE's GRUB measures its commands.
- ``rootfs``: one block of the next booted slot's filesystem (its last block, free space) is changed
  and the slot's dm-verity hash tree and descriptor are rebuilt consistently (what an attacker with
  the disk does); the boot stage measures the descriptor into **PCR 13** and dm-verity mounts the
  changed filesystem normally.
- ``config``: an attacker's SSH key is added to ``authorized_keys`` in the CONFIG partition; the boot
  stage measures the CONFIG files into **PCR 14** before the rootfs reads them.

Everything is applied to files while the VM is off; the backend then boots with
:attr:`TamperResult.append` and :attr:`TamperResult.extra_args`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eden.errors import InfrastructureError, InvalidInput, did_you_mean
from eden.image import bootstate as bs
from eden.image.layout import Image, write_config
from eden.image.verity import BLOCK, make_slot, read_descriptor

#: stage -> PCRs the stage's change is expected to alter (all others stay as they were).
EXPECTED_PCRS: dict[str, tuple[int, ...]] = {
    "firmware": (2, 10),
    "bootloader": (8,),
    "rootfs": (13,),
    "config": (14,),
}
STAGES = tuple(EXPECTED_PCRS)

#: The option ROM changed by the firmware stage (loaded by QEMU through fw_cfg on direct kernel boot).
FIRMWARE_ROM = "linuxboot_dma.bin"
FIRMWARE_DIRS = (Path("/usr/share/qemu"), Path("/usr/share/seabios"), Path("/usr/lib/ipxe/qemu"))
#: A marker byte range in the ROM's zero padding (after the code, before the checksum byte).
_ROM_PAD = 800



@dataclass(frozen=True)
class TamperTarget:
    """One device, powered off: its disk (a raw copy of ``image``'s disk), how it boots, its directory."""

    image: Image
    disk: Path
    directory: Path  # the device's own directory; modified firmware copies go under it
    append: str  # the kernel command line the device boots with now
    extra_args: tuple[str, ...] = ()  # the QEMU arguments it boots with now (beyond the machine's own)
    firmware_dirs: tuple[Path, ...] = FIRMWARE_DIRS


@dataclass(frozen=True)
class TamperResult:
    """What changed; boot next with ``append`` and ``extra_args`` (the target's, plus the change)."""

    stage: str
    pcrs: tuple[int, ...]  # expected to change at the next boot
    files: tuple[Path, ...]  # files written or modified
    append: str
    extra_args: tuple[str, ...]
    detail: str
    data: dict[str, str] = field(default_factory=dict)


def apply_tamper(stage: str, device: TamperTarget) -> TamperResult:
    """Apply tamper ``stage`` to a powered-off device (see the module docstring for what each does).

    Stages can be applied repeatedly and combined; each application is a new change.
    Raises :class:`InvalidInput` for an unknown stage, :class:`InfrastructureError` when a host tool
    or file is missing.
    """
    if stage not in EXPECTED_PCRS:
        raise InvalidInput.at("tamper", 0, 0, f"unknown tamper stage {stage!r}", did_you_mean(stage, STAGES, "stages"))
    return {"firmware": _firmware, "bootloader": _bootloader, "rootfs": _rootfs, "config": _config}[stage](device)


def _result(stage: str, device: TamperTarget, files: list[Path], detail: str, *, append: str | None = None,
            extra: tuple[str, ...] = (), **data: str) -> TamperResult:
    return TamperResult(stage, EXPECTED_PCRS[stage], tuple(files), device.append if append is None else append,
                        device.extra_args + extra, detail, dict(data))


def _firmware(device: TamperTarget) -> TamperResult:
    fw = device.directory / "firmware"
    rom_path = fw / FIRMWARE_ROM
    if rom_path.exists():  # tampered before: change the copy again
        source = rom_path
    else:
        source = next((d / FIRMWARE_ROM for d in device.firmware_dirs if (d / FIRMWARE_ROM).is_file()), None)
        if source is None:
            raise InfrastructureError(f"QEMU's {FIRMWARE_ROM} not found in {', '.join(map(str, device.firmware_dirs))}")
    rom = bytearray(source.read_bytes())
    if len(rom) < _ROM_PAD + 2 or rom[:2] != b"\x55\xaa" or sum(rom) % 256:
        raise InfrastructureError(f"{source} is not an option ROM with a valid checksum")
    # +1 / -1 on two padding bytes: a different ROM whose byte sum (the checksum SeaBIOS checks) is unchanged.
    rom[_ROM_PAD] = (rom[_ROM_PAD] + 1) % 256
    rom[_ROM_PAD + 1] = (rom[_ROM_PAD + 1] - 1) % 256
    fw.mkdir(parents=True, exist_ok=True)
    rom_path.write_bytes(bytes(rom))
    extra: tuple[str, ...] = () if _has_datadir(device.extra_args, fw) else ("-L", str(fw))
    return _result("firmware", device, [rom_path], f"modified option ROM {rom_path} (QEMU -L {fw})", extra=extra,
                   rom_sha1=hashlib.sha1(rom).hexdigest())


def _has_datadir(args: tuple[str, ...], d: Path) -> bool:
    return any(a == "-L" and b == str(d) for a, b in zip(args, args[1:]))


def _bootloader(device: TamperTarget) -> TamperResult:
    n = device.append.count("eden.tampered=") + 1
    append = f"{device.append} eden.tampered={n}".strip()
    return _result("bootloader", device, [], f"kernel command line: {append!r}", append=append)


def _rootfs(device: TamperTarget) -> TamperResult:
    state = bs.read(device.disk, offset=device.image.partition("BOOTSTATE")[0])
    slot, _ = bs.select_next(state)
    if slot is None:
        raise InvalidInput.at(str(device.disk), 0, 0, "rootfs tamper: no bootable slot on the disk")
    offset, size = device.image.partition(f"IMG{slot}")
    old = read_descriptor(device.disk, offset)
    fs_bytes = old.data_blocks * BLOCK
    with tempfile.TemporaryDirectory(prefix="eden-tamper-", dir=device.directory) as tmp:
        fs, out = Path(tmp) / "rootfs.ext4", Path(tmp) / "slot.img"
        with open(device.disk, "rb") as src, open(fs, "wb") as dst:
            src.seek(offset)
            remaining = fs_bytes
            while remaining:
                chunk = src.read(min(remaining, 1 << 20))
                if not chunk:
                    raise InfrastructureError(f"{device.disk}: slot {slot} is truncated")
                dst.write(chunk)
                remaining -= len(chunk)
        with open(fs, "r+b") as f:  # the last block: free space in the image's filesystem
            f.seek(fs_bytes - BLOCK)
            f.write(f"tampered by eden: {old.root}".encode().ljust(BLOCK, b"!"))
        new = make_slot(fs, out, old.salt)
        if out.stat().st_size > size:
            raise InfrastructureError(f"rootfs tamper: the rebuilt slot does not fit IMG{slot}")
        with open(out, "rb") as src, open(device.disk, "r+b") as dst:
            dst.seek(offset)
            shutil.copyfileobj(src, dst, 1 << 20)
    return _result("rootfs", device, [device.disk], f"slot {slot}: last filesystem block changed, verity tree rebuilt"
                   f" (root {old.root[:12]}.. -> {new.root[:12]}..)", slot=slot, old_root=old.root, new_root=new.root,
                   old_descriptor_sha256=old.sha256, new_descriptor_sha256=new.sha256)


def read_config(image: Image, disk: Path) -> dict[str, bytes]:
    """The files of the CONFIG partition in ``disk`` (read with debugfs; no mount, no root)."""
    offset, _ = image.partition("CONFIG")
    with tempfile.TemporaryDirectory(prefix="eden-config-") as tmp:
        out = Path(tmp) / "config"
        out.mkdir()
        try:
            subprocess.run(["debugfs", "-R", f"rdump / {out}", f"{disk}?offset={offset}"], check=True,
                           capture_output=True, text=True, timeout=60)
        except FileNotFoundError as exc:
            raise InfrastructureError("debugfs is not installed (e2fsprogs)") from exc
        except subprocess.CalledProcessError as exc:
            raise InfrastructureError(f"debugfs could not read CONFIG: {exc.stderr.strip()}") from exc
        return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def _attacker_key(comment: str) -> bytes:
    pub = Ed25519PrivateKey.generate().public_key()
    return pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b" " + comment.encode()


def _config(device: TamperTarget) -> TamperResult:
    files = read_config(device.image, device.disk)
    keys = files.get("authorized_keys", b"")
    n = keys.count(b"attacker@eden-tamper-") + 1
    if keys and not keys.endswith(b"\n"):
        keys += b"\n"
    files["authorized_keys"] = keys + _attacker_key(f"attacker@eden-tamper-{n}") + b"\n"
    write_config(device.image, device.disk, files)
    return _result("config", device, [device.disk], "CONFIG/authorized_keys: an attacker's SSH key added")
