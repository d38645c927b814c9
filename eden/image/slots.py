"""Root-filesystem slot variants of the reference image: the base OS versions an update delivers.

EVE updates its base OS by writing a whole new root filesystem into the other partition (spec §3).
For the reference image such an image is a *slot file* in the format IMGA/IMGB hold
(:mod:`eden.image.verity`: ext4 + verity descriptor + hash tree), made from the image's own slot A
with one file changed: ``/etc/eden/release.json`` = ``{"behaviour", "name", "version"}`` (sorted
keys, one line). The root filesystem reads it at start-up (``scripts/image-rc``) and the agent reads
its running version from it. ``behaviour`` makes a release faulty *for real* inside the guest:

* ``good``: boots as the image does;
* ``crash-on-boot``: the kernel panics before the agent starts (``panic=-1`` reboots the VM, the
  boot stage runs again, the spent try makes it boot the other slot: spec §3 fallback);
* ``no-controller``: the network ports stay down, the agent runs but never reaches the controller;
* ``changes-pcrs``: runs as ``good``; its content, so its descriptor and PCR 13, differ (spec §5).

A variant is deterministic (``debugfs`` with a fixed clock, verity with the base salt): the same
base slot, name, version and behaviour give a byte-identical file, so the same sha256 and PCR 13.
Variants are cached by those inputs under ``<image dir>/slots/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from eden.errors import InfrastructureError, InvalidInput
from eden.image.layout import Image
from eden.image.verity import BLOCK, make_slot, read_descriptor
from eve.images import BEHAVIOURS

__all__ = ["BEHAVIOURS", "RELEASE_PATH", "FORMAT_VERSION", "Slot", "build_slot", "install_slot_offline",
           "release_json", "pcr13_after"]

RELEASE_PATH = "/etc/eden/release.json"
FORMAT_VERSION = 1  # bump when the variant's bytes would change for the same inputs
KEEP_SLOTS = 12  # variants kept per cache directory, most recently used first
FAKE_TIME = "1700000000"  # the build's clock for mke2fs (eden/image/build.py), here for debugfs
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}")  # safe in JSON, shell and console markers
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Slot:
    """A root filesystem slot file and the figures a controller and an attestation check need."""

    path: Path
    sha256: str  # of the whole file (what the controller advertises as the image's content hash)
    size: int  # bytes
    descriptor_sha256: str  # what the boot stage extends into PCR 13
    pcr13: str  # PCR 13 after one extend from zeros: sha256(32 zero bytes || descriptor digest)
    name: str
    version: str
    behaviour: str


def pcr13_after(descriptor_sha256: str) -> str:
    """The PCR 13 value of a freshly reset TPM after the boot stage's one extend (spec §5)."""
    return hashlib.sha256(bytes(32) + bytes.fromhex(descriptor_sha256)).hexdigest()


def release_json(name: str, version: str, behaviour: str) -> bytes:
    """The exact bytes of ``/etc/eden/release.json`` (one line: image-rc parses it with sed)."""
    return (json.dumps({"name": name, "version": version, "behaviour": behaviour}, sort_keys=True) + "\n").encode()


def _check(name: str, version: str, behaviour: str) -> None:
    for what, value in (("name", name), ("version", version)):
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            raise InvalidInput.at("slot", 0, 0, f"bad slot {what} {value!r}",
                                  "1-64 characters of letters, digits and . _ + ~ -, starting with a letter or digit")
    if behaviour not in BEHAVIOURS:
        raise InvalidInput.at("slot", 0, 0, f"unknown slot behaviour {behaviour!r}", f"one of {', '.join(BEHAVIOURS)}")


def _partition(image: Image, label: str) -> tuple[int, int]:
    if label not in ("A", "B"):
        raise InvalidInput.at("slot", 0, 0, f"unknown slot label {label!r}", "A or B")
    try:
        return image.partition(f"IMG{label}")
    except KeyError:
        raise InvalidInput.at(str(image.dir), 0, 0, f"the image has no IMG{label} partition") from None


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True, env=env)
    except FileNotFoundError as exc:
        raise InfrastructureError(f"{argv[0]} is not installed (e2fsprogs; run scripts/install-system-deps)") from exc
    except subprocess.CalledProcessError as exc:
        raise InfrastructureError(f"{' '.join(argv[:3])} failed ({exc.returncode}): {exc.stderr.strip()}") from exc


def _copy_range(src: Path, offset: int, length: int, dst: Path) -> None:
    """``length`` bytes of ``src`` from ``offset`` into a new sparse file ``dst``."""
    with open(src, "rb") as f, open(dst, "wb") as out:
        f.seek(offset)
        done = 0
        while done < length:
            chunk = f.read(min(_CHUNK, length - done))
            if not chunk:
                raise InfrastructureError(f"{src} ends inside the slot at byte {offset + done}")
            if chunk.count(0) == len(chunk):
                out.seek(len(chunk), os.SEEK_CUR)
            else:
                out.write(chunk)
            done += len(chunk)
        out.truncate(length)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * _CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _write_release(fs: Path, data: bytes, work: Path) -> None:
    """Put ``data`` at RELEASE_PATH in the ext4 image ``fs`` with debugfs (no mount), root-owned, 0644."""
    local = work / "release.json"
    local.write_bytes(data)
    local.chmod(0o644)
    cmds = work / "debugfs.cmds"
    directory, _, base = RELEASE_PATH.rpartition("/")
    cmds.write_text("\n".join([
        f"cd {directory}",
        f"rm {base}",  # a base that has one already: replaced (an error message otherwise, harmless)
        f"write {local} {base}",
        f"sif {base} uid 0",
        f"sif {base} gid 0",
        f"sif {base} mode 0100644",
    ]) + "\n")
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": FAKE_TIME}
    _run(["debugfs", "-w", "-f", str(cmds), str(fs)], env=env)
    got = _run(["debugfs", "-R", f"cat {RELEASE_PATH}", str(fs)]).stdout
    if got.encode() != data:
        raise InfrastructureError(f"debugfs did not write {RELEASE_PATH} into {fs} (read back {got!r})")


def _load_cached(meta: Path) -> Slot | None:
    try:
        fields = json.loads(meta.read_text())
        slot = Slot(**{**fields, "path": meta.with_suffix(".slot")})
    except (OSError, ValueError, TypeError):
        return None
    try:
        if slot.path.stat().st_size != slot.size:
            return None
        os.utime(meta)  # most recently used, for pruning
    except OSError:
        return None
    return slot


def _prune(cache: Path, keep: int = KEEP_SLOTS) -> None:
    metas = sorted(cache.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for meta in metas[keep:]:
        meta.unlink(missing_ok=True)
        meta.with_suffix(".slot").unlink(missing_ok=True)


def build_slot(image: Image, *, name: str, version: str, behaviour: str = "good", cache: Path | None = None) -> Slot:
    """The slot variant of ``image`` whose ``/etc/eden/release.json`` says name/version/behaviour.

    Made from the image's slot A as built (IMGA of ``disk.img``): its ext4 with the release file
    written by ``debugfs``, then the verity tree recomputed with the base's salt. Cached under
    ``cache`` (default ``<image dir>/slots``) by base descriptor + inputs + :data:`FORMAT_VERSION`.
    InvalidInput for a bad name/version/behaviour or a slot larger than the IMGA/IMGB partitions.
    """
    _check(name, version, behaviour)
    a_off, a_size = _partition(image, "A")
    b_size = _partition(image, "B")[1]
    try:
        base = read_descriptor(image.disk, a_off)
    except (OSError, ValueError) as exc:
        raise InvalidInput.at(str(image.disk), 0, 0, f"no root filesystem slot in IMGA: {exc}") from None
    room = min(a_size, b_size)
    built = int(image.info.get("slot_bytes") or 0)  # a variant has the base's size: same blocks, same tree
    if built > room:
        raise InvalidInput.at("slot", 0, 0, f"a slot of {built} bytes does not fit IMGA/IMGB ({room} bytes)")
    cache = cache if cache is not None else image.dir / "slots"
    key = hashlib.sha256(json.dumps({"format": FORMAT_VERSION, "base": hashlib.sha256(base.encode()).hexdigest(),
                                     "name": name, "version": version, "behaviour": behaviour},
                                    sort_keys=True).encode()).hexdigest()[:20]
    stem = f"{name}-{version}-{behaviour}-{key}"
    meta = cache / f"{stem}.json"
    if (hit := _load_cached(meta)) is not None:
        return hit
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=cache))
    try:
        fs = work / "rootfs.ext4"
        _copy_range(image.disk, a_off, base.data_blocks * BLOCK, fs)
        _write_release(fs, release_json(name, version, behaviour), work)
        out = work / "slot"
        try:
            desc = make_slot(fs, out, base.salt)
        except ValueError as exc:
            raise InfrastructureError(f"the variant's filesystem is not a slot: {exc}") from exc
        size = out.stat().st_size
        if size > room:
            raise InvalidInput.at("slot", 0, 0, f"a slot of {size} bytes does not fit IMGA/IMGB ({room} bytes)")
        slot = Slot(meta.with_suffix(".slot"), _file_sha256(out), size, desc.sha256, pcr13_after(desc.sha256),
                    name, version, behaviour)
        os.replace(out, slot.path)
        record = {k: v for k, v in asdict(slot).items() if k != "path"}
        (work / "meta").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        os.replace(work / "meta", meta)  # last: a complete .json means a complete .slot
        _prune(cache)
        return slot
    finally:
        shutil.rmtree(work, ignore_errors=True)


def install_slot_offline(image: Image, disk: Path, label: Literal["A", "B"], slot: Slot) -> None:
    """Factory install: write ``slot`` into IMG<label> of ``disk`` (a raw copy of the image's disk).

    Only bytes inside that partition change (only the 1 MiB chunks that differ are written, so a
    sparse copy stays sparse); the rest of the partition after the slot is left as it was. The
    boot-state record is not touched: slot A is ``active`` from the factory; a slot put into B stays
    ``unused`` until someone marks it (``bootstate.set_updating``). Must run before the disk's VM
    starts. InvalidInput when the slot file is not a slot, differs from ``slot`` or does not fit.
    """
    offset, size = _partition(image, label)
    try:
        actual = slot.path.stat().st_size
        desc = read_descriptor(slot.path)
    except OSError as exc:
        raise InvalidInput.at(str(slot.path), 0, 0, f"cannot read the slot file: {exc}") from None
    except ValueError as exc:
        raise InvalidInput.at(str(slot.path), 0, 0, f"not a root filesystem slot: {exc}") from None
    if actual != slot.size or desc.sha256 != slot.descriptor_sha256:
        raise InvalidInput.at(str(slot.path), 0, 0, "the slot file changed since it was built")
    if actual > size:
        raise InvalidInput.at(str(slot.path), 0, 0, f"a slot of {actual} bytes does not fit IMG{label} ({size} bytes)")
    if disk.stat().st_size < offset + size:
        raise InvalidInput.at(str(disk), 0, 0, f"the disk ends before IMG{label} does: not a copy of {image.disk}")
    fd = os.open(disk, os.O_RDWR)
    try:
        with open(slot.path, "rb") as src:
            pos = 0
            while chunk := src.read(_CHUNK):
                if os.pread(fd, len(chunk), offset + pos) != chunk:
                    os.pwrite(fd, chunk, offset + pos)
                pos += len(chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    if read_descriptor(disk, offset) != desc:
        raise InfrastructureError(f"read-back of IMG{label} in {disk} does not show the slot's descriptor")
