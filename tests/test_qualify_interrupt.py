"""Stopping ``eden qualify`` on the emulated backend (real controllers and agents, spawned workers):
a Ctrl-C to the process group, as a terminal sends it, and a SIGTERM to ``eden`` alone, as a CI
system cancelling a job may send it. Each must stop the running entries and clean up after them
(no process, no temp dir left), start no further entry, still write the reports of what ran, and
exit 128 + the signal number without recording history."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from eden_subprocess import argv
from leakcheck import marked_processes
from scenario_texts import onboard_then_wait

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scenarios" / "onboarding-smoke.yaml"
MARK = f"eden-qualify-interrupt-{os.getpid()}"
LONG = onboard_then_wait("waits-long", "onboards, then waits long enough to be interrupted")


def _ours() -> set[int]:
    return marked_processes("EDEN_TEST_MARK", MARK)


pytestmark = pytest.mark.slow


def _with_default_sigint(cmd: list[str]) -> list[str]:
    """``cmd`` with SIGINT at its default disposition, whatever this process inherited: a suite started
    with SIGINT ignored (nohup, some CI runners) passes the ignore on through fork and exec, and a
    Python started so never raises KeyboardInterrupt. Done by an exec wrapper, not ``preexec_fn``."""
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", reset, *cmd]


def _start(tmp_path: Path, scenarios: list[Path]) -> tuple[subprocess.Popen[str], Path]:
    (tmp_path / "long.yaml").write_text(LONG)
    (tmp_path / "long2.yaml").write_text(LONG.replace("name: waits-long", "name: waits-long-too"))
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: stop-me\nbackend: emulated\nscenarios: [{', '.join(map(str, scenarios))}]\n")
    (tmp_path / "tmp").mkdir()
    log = tmp_path / "qualify.log"
    cmd = argv("qualify", str(suite), "--jobs", "2", "--out", str(tmp_path / "out"), "--history", str(tmp_path / "history.db"))
    env = {**os.environ, "EDEN_TEST_MARK": MARK, "TMPDIR": str(tmp_path / "tmp")}
    with open(log, "w") as out:  # a file, not a pipe: nothing can block on a full pipe
        proc = subprocess.Popen(_with_default_sigint(cmd), stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env,
                                start_new_session=True)  # its own process group, as in a terminal
    return proc, log


def _wait_until(proc: subprocess.Popen[str], log: Path, ready: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def _none_left(grace: float = 5.0) -> None:
    """No process of the run is left. multiprocessing's resource tracker ends on its own when it
    reads EOF from the exited ``eden``, a moment later: that is not a leak, so allow ``grace`` s."""
    deadline = time.monotonic() + grace
    while (left := _ours()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, {pid: _cmdline(pid) for pid in left}


def _agents() -> int:
    return sum(1 for p in _ours() if b"agent" in _cmdline(p))


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _sigint_ignored(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    raise AssertionError(f"no SigIgn in /proc/{pid}/status")


def test_eden_hears_sigint_even_if_the_suite_was_started_with_it_ignored(tmp_path: Path) -> None:
    """Started under ``nohup`` (SIGINT ignored, and inherited so), ``eden qualify`` still hears a Ctrl-C."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc, log = _start(tmp_path, [SMOKE])
    finally:
        signal.signal(signal.SIGINT, before)
    try:
        _wait_until(proc, log, lambda: b"qualify" in _cmdline(proc.pid) and b"-c" not in _cmdline(proc.pid).split(b"\0")[:2], 30)
        assert not _sigint_ignored(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _finish(proc: subprocess.Popen[str], log: Path, timeout: float = 120) -> str:
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return log.read_text()


def test_ctrl_c_to_the_group_stops_running_entries_and_spares_the_idle_worker(tmp_path: Path) -> None:
    """Before the fix, the worker that had finished its entry died of the Ctrl-C while idle; the
    pool, now broken, killed the other worker in the middle of its clean-up and its temp dir stayed."""
    proc, log = _start(tmp_path, [SMOKE, tmp_path / "long.yaml"])
    try:
        _wait_until(proc, log, lambda: "[1/2]" in log.read_text() and _agents() >= 1)
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        text = _finish(proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, text
    assert "Traceback" not in text, text
    assert "interrupted (SIGINT)" in text, text
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["interrupted"] == "SIGINT"
    verdicts = {e["scenario"]: (e["verdict"], e["error"]) for e in results["entries"]}
    assert verdicts["onboarding-smoke"] == ("passed", None), verdicts
    assert verdicts["waits-long"][0] == "broken" and "interrupted (SIGINT)" in verdicts["waits-long"][1], verdicts
    assert "INTERRUPTED (SIGINT): 1 of 2 entries passed" in (tmp_path / "out" / "report.html").read_text()
    assert 'name="interrupted" value="SIGINT"' in (tmp_path / "out" / "junit.xml").read_text()
    assert not (tmp_path / "history.db").exists()  # an interrupted run is not history
    _none_left()
    assert not any((tmp_path / "tmp").iterdir())


def test_sigterm_to_eden_alone_is_forwarded_and_no_further_entry_starts(tmp_path: Path) -> None:
    proc, log = _start(tmp_path, [tmp_path / "long.yaml", tmp_path / "long2.yaml", SMOKE])
    try:
        _wait_until(proc, log, lambda: _agents() >= 2)
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGTERM)  # the parent only: the workers hear it from the parent
        text = _finish(proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGTERM, text
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["interrupted"] == "SIGTERM"
    errors = sorted(e["error"] for e in results["entries"])
    assert [e["verdict"] for e in results["entries"]] == ["broken"] * 3
    assert errors[0] == "interrupted (SIGTERM): the run was stopped and cleaned up", errors
    assert errors[1] == errors[0] and errors[2] == "not run: the suite was interrupted", errors
    assert "1 of 3 entries not run" in text, text
    _none_left()
    assert not any((tmp_path / "tmp").iterdir())
