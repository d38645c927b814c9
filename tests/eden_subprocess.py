"""``python -m eden`` as a child process, the way a user runs it from a shell.

Tests that need the real process boundary (exit codes, signals, a clean stdout, children left behind)
start eden through these instead of calling ``cli.main``. ``env(tmp_path, mark=...)`` gives a run its own
TMPDIR and a marker variable its children inherit, so a test can find every process the run leaked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]


def argv(*args: str) -> list[str]:
    """The command line of ``eden *args`` with this interpreter (and so this checkout's packages)."""
    return [sys.executable, "-m", "eden", *args]


def env(tmp_path: Path | None = None, *, mark: str | None = None, drop: Iterable[str] = (), **extra: str) -> dict[str, str]:
    """This process's environment without ``drop``, plus ``extra``; with ``tmp_path`` the run's TMPDIR is
    ``tmp_path/tmp`` (created), with ``mark`` every descendant carries ``EDEN_TEST_MARK=mark``."""
    dropped = set(drop)
    out = {k: v for k, v in os.environ.items() if k not in dropped}
    if mark is not None:
        out["EDEN_TEST_MARK"] = mark
    if tmp_path is not None:
        run_tmp = tmp_path / "tmp"
        run_tmp.mkdir(exist_ok=True)
        out["TMPDIR"] = str(run_tmp)
    return {**out, **extra}


def run_eden(*args: str, cwd: Path | None = ROOT, env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``eden *args`` to its end; stdout and stderr captured as text."""
    return subprocess.run(argv(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def start_eden(*args: str, cwd: Path | None = ROOT, env: dict[str, str] | None = None,
               **popen: Any) -> subprocess.Popen[str]:
    """Start ``eden *args`` in the background; stderr goes into stdout's pipe unless ``popen`` says otherwise."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, **popen}
    return subprocess.Popen(argv(*args), cwd=cwd, env=env, text=True, **popen)
