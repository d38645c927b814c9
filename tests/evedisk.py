"""Synthetic disks with EVE-OS's live layout, for the tests of the real-EVE path (no EVE image can
be downloaded here): GPT partitions with EVE's names, numbers, type GUIDs and IMGA attributes
(``sgdisk``), FAT file systems on CONFIG (label ``EVE``) and the EFI System partition
(``mkfs.vfat``), and a standalone GRUB for the EFI System partition (``grub-mkimage``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from eden.qemu import eve_image as ev

MiB = 2**20
# (number, name, type, size in MiB; 0 = the rest): EVE's live layout, shrunk (make-raw: EFI 36 MiB,
# rootfs 300 MiB each, CONFIG 1 MiB, P3 the rest)
LAYOUT = [(1, "EFI System", ev.EFI_SYSTEM_TYPE, 4), (2, "IMGA", ev.ROOTFS_TYPE, 4), (3, "IMGB", ev.ROOTFS_TYPE, 4),
          (4, "CONFIG", ev.CONFIG_TYPE, 1), (9, "P3", ev.PERSIST_TYPE, 0)]
DISK_MB = 24
GRUB_MODULES = ("part_gpt", "fat", "search", "search_label", "cat", "echo", "halt", "tpm", "normal")


def run(*argv: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**(env or os.environ), "MTOOLS_SKIP_CHECK": "1"}
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, env=env, **kw)  # type: ignore[call-overload]


def sgdisk() -> str:
    exe = shutil.which("sgdisk") or shutil.which("sgdisk", path="/usr/sbin:/sbin")
    assert exe, "sgdisk missing: run scripts/install-system-deps (package gdisk)"
    return exe


def mkfs_vfat() -> str:
    exe = shutil.which("mkfs.vfat") or shutil.which("mkfs.vfat", path="/usr/sbin:/sbin")
    assert exe, "mkfs.vfat missing: run scripts/install-system-deps (package dosfstools)"
    return exe


def make_disk(path: Path, layout: list[tuple[int, str, str, int]] = LAYOUT, *, fat: bool = True) -> Path:
    """A sparse raw disk partitioned like EVE's live image; CONFIG (and EFI System) get a FAT."""
    with open(path, "wb") as f:
        f.truncate(DISK_MB * MiB)
    args = []
    for num, name, typ, size in layout:
        args += ["-n", f"{num}:0:{f'+{size}M' if size else '0'}", "-t", f"{num}:{typ}", "-c", f"{num}:{name}"]
    if any(name == "IMGA" for _, name, _, _ in layout):
        args += ["-A", "2:set:56", "-A", "2:set:49"]  # as make-raw marks IMGA (gptprio)
    run(sgdisk(), *args, str(path))
    if fat:
        for part in ev.read_gpt(path):
            if part.name in ("CONFIG", "EFI System"):
                format_fat(path, part, "EVE" if part.name == "CONFIG" else "EFI")
    return path


def format_fat(disk: Path, part: ev.GptPartition, label: str) -> None:
    img = disk.with_name(f"fat-{part.number}.img")
    run(mkfs_vfat(), "-n", label, "-C", str(img), str(part.size // 1024))
    data = img.read_bytes()
    img.unlink()
    fd = os.open(disk, os.O_WRONLY)
    try:
        os.pwrite(fd, data, part.offset)
    finally:
        os.close(fd)


def grub_efi(dest: Path, config: str, modules: tuple[str, ...] = GRUB_MODULES) -> Path:
    """A standalone GRUB EFI application with ``config`` built in (Debian grub-efi-amd64-bin)."""
    mkimage = shutil.which("grub-mkimage")
    assert mkimage and Path("/usr/lib/grub/x86_64-efi/fat.mod").is_file(), \
        "GRUB for EFI missing: run scripts/install-system-deps (grub-common, grub-efi-amd64-bin)"
    cfg = dest.with_name(dest.name + ".cfg")
    cfg.write_text(config)
    run(mkimage, "-O", "x86_64-efi", "-p", "/EFI/BOOT", "-c", str(cfg), "-o", str(dest), *modules)
    return dest


def install_boot_loader(disk: Path, efi_app: Path) -> None:
    """Put ``efi_app`` where OVMF looks on a removable disk: ``\\EFI\\BOOT\\BOOTX64.EFI`` on the ESP."""
    esp = ev.find_partition(disk, "EFI System")
    run("mmd", "-i", f"{disk}@@{esp.offset}", "::/EFI", "::/EFI/BOOT")
    run("mcopy", "-i", f"{disk}@@{esp.offset}", str(efi_app), "::/EFI/BOOT/BOOTX64.EFI")


#: The synthetic "EVE": OVMF boots this GRUB from the ESP; it prints the eve-qemu-x86_64 profile's
#: boot marker (``Linux version``), finds CONFIG by its FAT label and shows ``server``, then waits:
#: it never talks to the controller.
SYNTHETIC_GRUB_CFG = """\
echo "Linux version 0.0-eden-synthetic (a GRUB on an EVE-layout disk, not EVE)"
search --no-floppy --label EVE --set=cfg
echo EDEN-TEST config=($cfg)
cat ($cfg)/server
sleep 600
"""
SYNTHETIC_MODULES = ("part_gpt", "fat", "search", "search_label", "cat", "echo", "sleep", "normal")


def synthetic_eve(tmp: Path, *, then_halt: bool = False) -> Path:
    """``tmp/live.raw``: EVE's live layout with :data:`SYNTHETIC_GRUB_CFG` on its ESP; with
    ``then_halt`` it powers the machine off after showing CONFIG instead of waiting (GRUB's wait
    keeps a TCG core busy)."""
    disk = make_disk(tmp / "live.raw")
    cfg = SYNTHETIC_GRUB_CFG.replace("sleep 600", "sleep 1\nhalt") if then_halt else SYNTHETIC_GRUB_CFG
    modules = (*SYNTHETIC_MODULES, "halt") if then_halt else SYNTHETIC_MODULES
    install_boot_loader(disk, grub_efi(tmp / "BOOTX64.EFI", cfg, modules))
    return disk


def register_as(tmp: Path, serial: str, device: str, config: Path, api: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """What no EVE can do here: register with ``serial`` and a device's CONFIG files, by ``eden
    agent`` (eden's emulated device) on the host, once (its own session: kill its group)."""
    from eden_subprocess import start_eden

    cfg = tmp / "agent-config"
    shutil.copytree(config, cfg)
    spec = tmp / "agent-spec.json"
    spec.write_text(json.dumps({"serial": serial, "device_id": device, "profile": "eve-qemu-x86_64", "image": "eve-13",
                                "images": {"eve-13": {"version": "13.4.0"}}, "seed": 1, "boot_time": 0.5}))
    return start_eden(
        "agent", "--state-dir", str(tmp / "agent"), "--spec", str(spec), "--config-dir", str(cfg),
        "--controller", api, "--once", "--events", str(tmp / "agent-events.jsonl"),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
