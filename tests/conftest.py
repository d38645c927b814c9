"""Suite-wide test plumbing.

Real-time suites (the emulated backend's scenarios) spend most of their wall time waiting on EVE's
own timers. Their run is started as soon as collection finishes, in the background, and the test
that checks it is moved to the end of the session, so those waits overlap with the rest of the
suite instead of adding to it. The test still asserts the run's results; nothing is skipped.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


class BackgroundRun:
    """A command started at collection time; ``wait`` returns (rc, output, work dir)."""

    def __init__(self, argv: list[str], work: Path) -> None:
        self.work = work
        self.log = open(work / "output.log", "w+", encoding="utf-8")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait(self, timeout: float) -> tuple[int, str]:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self.log.seek(0)
        return rc, self.log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


_BACKGROUND: dict[str, BackgroundRun] = {}
EMULATED_SUITE = "emulated-suite"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    late = [i for i in items if i.get_closest_marker("background")]
    if not late or config.option.collectonly:
        return
    items[:] = [i for i in items if not i.get_closest_marker("background")] + late
    work = Path(tempfile.mkdtemp(prefix="eden-bg-"))
    _BACKGROUND[EMULATED_SUITE] = BackgroundRun(
        [sys.executable, "-m", "eden", "qualify", str(ROOT / "suites" / "emulated.yaml"), "--jobs", "6", "--out", str(work / "suite"), "--no-history"],
        work,
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    import shutil

    for run in _BACKGROUND.values():
        run.stop()
        shutil.rmtree(run.work, ignore_errors=True)
    _BACKGROUND.clear()


@pytest.fixture
def emulated_suite_run() -> BackgroundRun:
    """The emulated suite's background run (started when this test was collected)."""
    run = _BACKGROUND.get(EMULATED_SUITE)
    assert run is not None, "the background run was not started"
    return run
