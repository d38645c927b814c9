"""Finding processes a test started, even after they were re-parented: by a variable each run puts
in its environment, which every child inherits (other runs on the host carry other values)."""

from __future__ import annotations

import os
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
