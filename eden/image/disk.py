"""Disk and initramfs containers written without root or mounts: a GPT disk image, a newc cpio.

The GPT is the UEFI layout (protective MBR, primary header and entries at LBA 1-33, backup at the
end) with named partitions; the kernel exposes each name as ``PARTNAME`` in
``/sys/class/block/*/uevent``, which is how the boot stage finds BOOTSTATE, IMGA, IMGB, CONFIG, P3.
"""

from __future__ import annotations

import os
import stat
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

SECTOR = 512
MIB = 1 << 20
_ENTRIES = 128
_ENTRY_SIZE = 128
_LINUX_FS = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")


@dataclass(frozen=True)
class Partition:
    """One partition: its GPT name, the image file to copy in (or None: zeros) and its size."""

    name: str
    size: int  # bytes, a multiple of 1 MiB
    source: Path | None = None


@dataclass(frozen=True)
class Placed:
    name: str
    number: int  # 1-based, as in /dev/vdaN
    offset: int  # bytes from the start of the disk
    size: int


def _copy_sparse(src: Path, dst_fd: int, offset: int) -> None:
    with open(src, "rb") as f:
        pos = offset
        while chunk := f.read(MIB):
            if chunk.count(0) != len(chunk):
                os.pwrite(dst_fd, chunk, pos)
            pos += len(chunk)


def write_gpt_disk(path: Path, parts: list[Partition], disk_guid: uuid.UUID) -> list[Placed]:
    """Write a sparse GPT disk holding ``parts`` in order, 1 MiB aligned; return where each went."""
    placed: list[Placed] = []
    offset = MIB
    for i, p in enumerate(parts, 1):
        if p.size % MIB or p.size <= 0:
            raise ValueError(f"partition {p.name}: size {p.size} is not a positive multiple of 1 MiB")
        if p.source is not None and p.source.stat().st_size > p.size:
            raise ValueError(f"partition {p.name}: {p.source} is larger than {p.size} bytes")
        placed.append(Placed(p.name, i, offset, p.size))
        offset += p.size
    total = offset + MIB  # room for the backup GPT
    lbas = total // SECTOR
    entries = bytearray(_ENTRIES * _ENTRY_SIZE)
    for pl in placed:
        name = pl.name.encode("utf-16-le")
        if len(name) > 72:
            raise ValueError(f"partition name {pl.name!r} is too long")
        part_guid = uuid.uuid5(disk_guid, pl.name)
        struct.pack_into("<16s16sQQQ72s", entries, (pl.number - 1) * _ENTRY_SIZE, _LINUX_FS.bytes_le,
                         part_guid.bytes_le, pl.offset // SECTOR, (pl.offset + pl.size) // SECTOR - 1, 0, name)
    entries_crc = zlib.crc32(entries)

    def header(current: int, backup: int, entries_lba: int) -> bytes:
        fields = [b"EFI PART", 0x00010000, 92, 0, 0, current, backup, 34, lbas - 34,
                  disk_guid.bytes_le, entries_lba, _ENTRIES, _ENTRY_SIZE, entries_crc]
        fmt = "<8sIIIIQQQQ16sQIII"
        raw = struct.pack(fmt, *fields)
        fields[3] = zlib.crc32(raw)
        return struct.pack(fmt, *fields).ljust(SECTOR, b"\0")

    mbr = bytearray(SECTOR)
    struct.pack_into("<B3sB3sII", mbr, 446, 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, min(lbas - 1, 0xFFFFFFFF))
    mbr[510:512] = b"\x55\xaa"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, total)
        os.pwrite(fd, bytes(mbr), 0)
        os.pwrite(fd, header(1, lbas - 1, 2), SECTOR)
        os.pwrite(fd, bytes(entries), 2 * SECTOR)
        os.pwrite(fd, bytes(entries), (lbas - 33) * SECTOR)
        os.pwrite(fd, header(lbas - 1, 1, lbas - 33), (lbas - 1) * SECTOR)
        for p, pl in zip(parts, placed):
            if p.source is not None:
                _copy_sparse(p.source, fd, pl.offset)
    finally:
        os.close(fd)
    return placed


def write_cpio(root: Path, out: Path) -> None:
    """A newc cpio archive of the tree at ``root`` (uid/gid 0, mtimes 0: reproducible)."""
    ino = 1

    def record(name: str, mode: int, data: bytes, nlink: int = 1) -> bytes:
        nonlocal ino
        hdr = b"070701" + b"".join(b"%08X" % v for v in (
            ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
        ino += 1
        blob = hdr + name.encode() + b"\0"
        blob += b"\0" * (-len(blob) % 4)
        return blob + data + b"\0" * (-len(data) % 4)

    with open(out, "wb") as f:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = Path(dirpath) / name
                rel = str(full.relative_to(root))
                st = full.lstat()
                if stat.S_ISLNK(st.st_mode):
                    f.write(record(rel, st.st_mode, os.readlink(full).encode()))
                elif stat.S_ISDIR(st.st_mode):
                    f.write(record(rel, st.st_mode, b"", 2))
                elif stat.S_ISREG(st.st_mode):
                    f.write(record(rel, st.st_mode, full.read_bytes()))
        f.write(record("TRAILER!!!", 0, b""))
