"""The private working directory of a real-time run, and the clean-up of those a killed run left.

A run of the ``emulated`` or ``qemu`` backend keeps its controller (CA and server keys, the admin
token, the SQLite database) and its devices' keys and disks in a directory of ``$TMPDIR``, mode
0700, private keys 0600. The run removes it at its end, on every path Python sees. A ``kill -9``
is the one path it cannot see: the directory stays, secrets included. So each run holds an
exclusive ``flock`` on a file inside its directory for as long as it lives (the kernel drops it
when the process dies, however it dies), and every run, when it starts, removes the directories
of the same user whose lock it can take: their owner is gone.

A directory is locked before it gets its ``eden-*`` name (it is created under a staging name and
renamed), so a starting run never sees a live run's directory unlocked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

PREFIXES = ("eden-emulated-", "eden-qemu-", "eden-board-", "eden-live-")
"""Names of the working directories of every real-time backend (``LiveBackend.work_prefix``)."""
LOCK = ".owner.lock"
_STAGING = ".eden-new-"


class WorkDir:
    """A run's working directory, locked while this object is open."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def create(cls, prefix: str, root: Path | None = None) -> "WorkDir":
        """Remove what killed runs left in ``root`` (default: the temp dir), then make a new
        locked directory named ``<prefix>XXXXXXXX`` there."""
        root = Path(tempfile.gettempdir()) if root is None else root
        reap_stale(root)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=root))  # mode 0700
        try:
            fd = os.open(staging / LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            final = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
            os.rename(staging, final)  # replaces the empty placeholder atomically
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls(final, fd)

    def remove(self) -> None:
        """Delete the directory, then let go of the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def reap_stale(root: Path) -> list[Path]:
    """Remove the working directories in ``root`` of this user whose owning run is dead (their
    lock can be taken); a directory without a lock file, another user's or a live run's stays.
    Returns what was removed."""
    removed: list[Path] = []
    uid = os.getuid()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(PREFIXES):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != uid:
                continue
            fd = os.open(Path(entry.path) / LOCK, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # held: that run is alive
            continue
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
    return removed
