"""Using a built image: its ``image.json``, partition offsets, the CONFIG partition, the QEMU command.

The harness (QEMU backend) copies or overlays ``disk.img`` per VM; what it may write from outside is
the CONFIG partition (EVE's /config: controller address, certificates, SSH keys), never the A/B
state. ``qemu_args`` is the reference command line the image is tested with (docs/reference-image.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from eden.errors import InfrastructureError, InvalidInput

CONFIG_FILES = ("server", "root-certificate.pem", "v2tlsbaseroot-certificates.pem", "onboard.cert.pem", "onboard.key.pem",
                "authorized_keys",
                "spec.json", "hostname", "port-urls")


@dataclass(frozen=True)
class Image:
    """A built image directory."""

    dir: Path
    info: dict[str, Any]

    @classmethod
    def load(cls, directory: Path) -> "Image":
        f = directory / "image.json"
        if not f.is_file():
            raise InvalidInput.at(str(directory), 0, 0, "not a built image (no image.json)", "run eden image build")
        return cls(directory, json.loads(f.read_text()))

    @property
    def kernel(self) -> Path:
        return self.dir / self.info["files"]["kernel"]

    @property
    def initrd(self) -> Path:
        return self.dir / self.info["files"]["initrd"]

    @property
    def disk(self) -> Path:
        return self.dir / self.info["files"]["disk"]

    def partition(self, name: str) -> tuple[int, int]:
        """(offset, size) in bytes of the GPT partition ``name`` in ``disk.img``."""
        for p in self.info["partitions"]:
            if p["name"] == name:
                return int(p["offset"]), int(p["size"])
        raise KeyError(name)


def write_config(image: Image, disk: Path, files: Mapping[str, bytes | str]) -> None:
    """Write a CONFIG partition holding ``files`` into ``disk`` (a raw copy of the image's disk).

    Made with ``mke2fs -d`` and written at the partition's offset: no mount, no root needed.
    """
    unknown = sorted(set(files) - set(CONFIG_FILES))
    if unknown:
        raise InvalidInput.at("CONFIG", 0, 0, f"unknown CONFIG files {unknown}", f"use {', '.join(CONFIG_FILES)}")
    offset, size = image.partition("CONFIG")
    with tempfile.TemporaryDirectory(prefix="eden-config-") as tmp:
        src = Path(tmp) / "config"
        src.mkdir()
        for name, data in files.items():
            (src / name).write_bytes(data.encode() if isinstance(data, str) else data)
        fs = Path(tmp) / "config.ext4"
        argv = ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "CONFIG", "-d", str(src), "-E", "root_owner=0:0",
                str(fs), f"{size // 1024}k"]
        try:
            subprocess.run(argv, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise InfrastructureError(f"mke2fs for the CONFIG partition failed: {exc}") from exc
        data = fs.read_bytes()
    fd = os.open(disk, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


TCG_CPU = "Westmere"
"""The guest CPU under TCG. numpy in the guest needs x86-64-v2 (``qemu64`` lacks SSE4.2/POPCNT);
Westmere adds AES-NI to Nehalem, which made a 318 MB TLS download into the VM 24 % faster
(31.7 s against 41.6 s, two VMs side by side); ``max`` makes TCG slower."""
DISK_INTERFACE: Literal["virtio"] = "virtio"
"""The disk's bus (``eden.qemu.machine.Disk.interface``). virtio-blk, not NVMe: under TCG, QEMU's
emulated NVMe controller sometimes stopped completing I/O after a guest reboot (kernel ``I/O error,
dev nvme0n1``; docs/qemu.md "Disk bus")."""


def qemu_args(image: Image, disk: Path, *, tpm_socket: Path | None, serial: str, ssh_port: int | None = None,
              memory_mb: int = 512, accel: str = "tcg", smbios_serial: str | None = None,
              disk_format: str = "raw") -> list[str]:
    """The reference QEMU command for this image (no monitor; add ``-qmp`` as needed).

    ``serial`` is a QEMU chardev spec for ttyS0 (e.g. ``file:PATH`` or ``socket,...``). The CPU
    under TCG is :data:`TCG_CPU`.
    """
    net = "user,id=n0" + (f",hostfwd=tcp:127.0.0.1:{ssh_port}-:22" if ssh_port is not None else "")
    argv = ["qemu-system-x86_64", "-accel", accel, "-cpu", TCG_CPU if accel == "tcg" else "host",
            "-m", str(memory_mb), "-smp", "1", "-nographic", "-nodefaults", "-no-user-config",
            "-serial", serial, "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            "-append", image.info["cmdline"],
            "-drive", f"if=none,id=d0,file={disk},format={disk_format}", "-device", "virtio-blk-pci,drive=d0",
            "-netdev", net, "-device", "virtio-net-pci,netdev=n0"]
    if tpm_socket is not None:
        argv += ["-chardev", f"socket,id=chrtpm,path={tpm_socket}", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
                 "-device", "tpm-tis,tpmdev=tpm0"]
    if smbios_serial:
        argv += ["-smbios", f"type=1,serial={smbios_serial}"]
    return argv
