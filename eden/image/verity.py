"""A root filesystem slot protected by dm-verity, measured by its verity descriptor (spec §1/§5).

Slot layout (4 KiB blocks, everything at fixed places the boot stage can find):

    blocks 0 .. N-1   the ext4 filesystem (N from its superblock: s_blocks_count_lo)
    block  N          the descriptor, ASCII padded with NUL bytes:
                          EDEN-VERITY 1
                          data_blocks <N>
                          hash_start <N+1>
                          salt <hex>
                          root <hex root hash>
    blocks N+1 ..     the dm-verity hash tree (``veritysetup format --no-superblock``, sha256)

The boot stage extends PCR 13 with sha256 of the descriptor block, then reads the filesystem only
through a dm-verity mapping with that root hash. An image rebuilt with other content has another
root hash, so PCR 13 changes; content changed behind the tree's back fails to read (EIO). EVE
measures its rootfs the same way in spirit (a verified image identified by one hash).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from eden.errors import InfrastructureError

BLOCK = 4096
MAGIC = "EDEN-VERITY 1"


@dataclass(frozen=True)
class Descriptor:
    data_blocks: int
    hash_start: int
    salt: str
    root: str

    def encode(self) -> bytes:
        text = (f"{MAGIC}\ndata_blocks {self.data_blocks}\nhash_start {self.hash_start}\n"
                f"salt {self.salt}\nroot {self.root}\n")
        return text.encode().ljust(BLOCK, b"\0")

    @property
    def sha256(self) -> str:
        """What the boot stage extends PCR 13 with."""
        return hashlib.sha256(self.encode()).hexdigest()


def ext4_blocks(fs: Path) -> int:
    """Filesystem size in 4 KiB blocks from its superblock; ValueError for other block sizes."""
    with open(fs, "rb") as f:
        f.seek(1024)
        sb = f.read(1024)
    count = int.from_bytes(sb[4:8], "little")
    if sb[56:58] != b"\x53\xef" or 1024 << int.from_bytes(sb[24:28], "little") != BLOCK:
        raise ValueError(f"{fs}: not an ext4 filesystem with 4 KiB blocks")
    return count


def make_slot(fs: Path, out: Path, salt: str) -> Descriptor:
    """Write ``out`` = filesystem + descriptor + hash tree; return the descriptor."""
    n = ext4_blocks(fs)
    if fs.stat().st_size != n * BLOCK:
        raise ValueError(f"{fs}: file size differs from the filesystem size")
    tree = out.with_name(out.name + ".tree")
    try:
        p = subprocess.run(["veritysetup", "format", "--no-superblock", "--hash", "sha256",
                            f"--data-block-size={BLOCK}", f"--hash-block-size={BLOCK}", f"--salt={salt}",
                            str(fs), str(tree)], check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise InfrastructureError("veritysetup is not installed (cryptsetup-bin; run scripts/install-system-deps)") from exc
    except subprocess.CalledProcessError as exc:
        raise InfrastructureError(f"veritysetup format failed: {exc.stderr.strip()}") from exc
    m = re.search(r"Root hash:\s*([0-9a-f]{64})", p.stdout)
    if m is None:
        raise InfrastructureError(f"veritysetup printed no root hash:\n{p.stdout}")
    desc = Descriptor(n, n + 1, salt, m.group(1))
    with open(out, "wb") as dst:
        with open(fs, "rb") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
        dst.write(desc.encode())
        with open(tree, "rb") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
    tree.unlink()
    return desc


def read_descriptor(slot: Path, offset: int = 0) -> Descriptor:
    """Parse the descriptor of a slot (a file, or a disk image at byte ``offset``)."""
    with open(slot, "rb") as f:
        f.seek(offset + 1024)
        sb = f.read(1024)
        n = int.from_bytes(sb[4:8], "little")
        f.seek(offset + n * BLOCK)
        text = f.read(BLOCK).rstrip(b"\0").decode("ascii", errors="replace")
    fields = dict(line.split(" ", 1) for line in text.splitlines()[1:] if " " in line)
    if not text.startswith(MAGIC + "\n") or int(fields.get("data_blocks", -1)) != n:
        raise ValueError("no EDEN-VERITY descriptor after the filesystem")
    return Descriptor(n, int(fields["hash_start"]), fields["salt"], fields["root"])
