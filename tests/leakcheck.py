"""Finding processes a test started, even after they were re-parented: by a variable each run puts
in its environment, which every child inherits (other runs on the host carry other values)."""

from __future__ import annotations

import os
import signal
import subprocess
import warnings
from pathlib import Path


def marked_processes(name: str, value: str) -> set[int]:
    """Live (not zombie) processes whose environment has ``name=value``, this process excluded."""
    needle = f"{name}={value}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and needle in env:
            found.add(int(entry.name))
    return found


def wait_reading(proc: subprocess.Popen[str], timeout: float, *, grace: float) -> str:
    """Wait for ``proc`` while reading its output (a full pipe must not block it) and return it.

    Not ended after ``timeout``: one more Ctrl-C, as a user would press, and ``grace`` seconds more,
    with a warning in the test report: on a loaded CI host a first Ctrl-C was seen not to finish the
    graceful stop while nobody read the run's output."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        warnings.warn(f"pid {proc.pid} still running {timeout:.0f} s on: a second Ctrl-C was needed", stacklevel=2)
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=grace)[0]
