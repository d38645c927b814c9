"""Backend ``emulated``: a real controller and real agent processes, in real time.

These tests start real processes and wait on real timers; each asserts the run's verdict and that
nothing (process, temp dir) is left behind on success, failure, a broken controller and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from eden.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

SMOKE = """
name: emulated-smoke
description: one device onboards, attests and reports its first boot
seed: 1
fleet:
  - profile: qemu-x86_64
    group: dut
images:
  base: {version: 13.4.0}
controller:
  config_items:
    timer.config.interval: 5
steps:
  - power_on: {}
  - expect: {onboarded: true, device_state: ONLINE, within: 1m}
  - expect: {attestation: COMPLETE, within: 1m}
expect:
  - name: first boot, factory image
    boot_reason: FIRST
    current_partition: {state: active, version: base}
"""

FAILING = """
name: emulated-fails
description: expects a version the device never runs
seed: 1
fleet:
  - profile: qemu-x86_64
images:
  base: {version: 13.4.0}
  other: {version: 99.0.0}
steps:
  - power_on: {}
  - expect: {onboarded: true, within: 1m}
expect:
  - name: never happens
    version: other
    within: 5s
"""

LONG = """
name: emulated-long
description: waits long enough to be interrupted
seed: 1
fleet:
  - profile: qemu-x86_64
images:
  base: {version: 13.4.0}
steps:
  - power_on: {}
  - expect: {onboarded: true, within: 1m}
  - wait: 10m
"""


def _ours() -> set[int]:
    """Processes started by eden runs (controllers and agents), by command line."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            stat = (entry / "stat").read_text().split()
        except OSError:
            continue
        if stat[2] == "Z":
            continue
        if b"eden-emulated-" in cmd:
            found.add(int(entry.name))
    return found


def _temp_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("eden-emulated-*")}


def _run(tmp_path: Path, text: str, name: str, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    scenario = tmp_path / f"{name}.yaml"
    scenario.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "eden", "run", str(scenario), "--backend", "emulated", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_smoke_passes_with_real_processes_and_leaves_nothing(tmp_path: Path) -> None:
    before_procs, before_dirs = _ours(), _temp_dirs()
    proc = _run(tmp_path, SMOKE, "smoke")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "emulated"
    assert summary["verdict"] == "passed"
    assert all(e["status"] == "passed" for e in summary["expectations"])
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    sources = {e["source"] for e in events}
    assert {"device", "controller", "harness"} <= sources  # one timeline, three origins
    whats = {(e["source"], e["what"]) for e in events}
    assert ("device", "booted") in whats and ("controller", "onboarded") in whats and ("device", "attested") in whats
    times = [e["t"] for e in events]
    assert times == sorted(times)
    # the controller really answered over TLS with signed protobuf: it counted the requests
    ctrl = summary["metrics"]["controller"]
    assert ctrl["config"]["requests"] >= 1 and ctrl["register"]["requests"] >= 1
    assert (out / "logs" / "controller.log").is_file() and (out / "logs" / "agent-dut-0.log").is_file()
    assert _ours() <= before_procs
    assert _temp_dirs() <= before_dirs


def test_failed_expectation_is_exit_1_and_leaves_nothing(tmp_path: Path) -> None:
    before_procs, before_dirs = _ours(), _temp_dirs()
    proc = _run(tmp_path, FAILING, "fails")
    assert proc.returncode == EXIT_FAILED, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["verdict"] == "failed"
    assert [e["status"] for e in summary["expectations"] if e["name"] == "never happens"] == ["failed"]
    assert _ours() <= before_procs
    assert _temp_dirs() <= before_dirs


def _start_long(tmp_path: Path) -> subprocess.Popen[str]:
    scenario = tmp_path / "long.yaml"
    scenario.write_text(LONG)
    return subprocess.Popen(
        [sys.executable, "-m", "eden", "run", str(scenario), "--backend", "emulated", "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def _wait_for_agent(run: subprocess.Popen[str], before: set[int], timeout: float = 60) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mine = _ours() - before
        if any(b"agent" in Path(f"/proc/{p}/cmdline").read_bytes() for p in mine if Path(f"/proc/{p}").exists()):
            return mine
        assert run.poll() is None, run.communicate()[0]
        time.sleep(0.2)
    raise AssertionError("no agent process appeared")


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    before_procs, before_dirs = _ours(), _temp_dirs()
    run = _start_long(tmp_path)
    try:
        started = _wait_for_agent(run, before_procs)
        assert len(started) >= 2  # the controller and the agent
        time.sleep(1.0)
        run.send_signal(signal.SIGINT)
        run.wait(60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != EXIT_OK
    assert _ours() <= before_procs
    assert _temp_dirs() <= before_dirs


def test_a_dead_controller_is_an_infrastructure_error(tmp_path: Path) -> None:
    before_procs, before_dirs = _ours(), _temp_dirs()
    run = _start_long(tmp_path)
    try:
        mine = _wait_for_agent(run, before_procs)
        serve = [p for p in mine if b"serve" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(serve) == 1
        os.kill(serve[0], signal.SIGKILL)
        out, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == EXIT_INVALID, out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["verdict"] == "error"
    assert "controller" in summary["error"]
    assert _ours() <= before_procs
    assert _temp_dirs() <= before_dirs
