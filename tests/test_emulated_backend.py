"""Backend ``emulated``: a real controller and real agent processes, in real time.

These tests start real processes and wait on real timers; each asserts the run's verdict and that
nothing (process, temp dir) is left behind on success, failure, a broken controller and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from eden_subprocess import env, run_eden, start_eden
from leakcheck import marked_processes, wait_reading
from conftest import background_run
from scenario_texts import FALLBACK_DURING_OUTAGE, onboard_then_wait, preamble

from eden.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK

pytestmark = pytest.mark.slow

SMOKE = preamble("emulated-smoke", "one device onboards, attests and reports its first boot", group="dut") + """controller:
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

FAILING = preamble("emulated-fails", "expects a version the device never runs") + """  other: {version: 99.0.0}
steps:
  - power_on: {}
  - expect: {onboarded: true, within: 1m}
expect:
  - name: never happens
    version: other
    within: 5s
"""

LONG = onboard_then_wait("emulated-long", "waits long enough to be interrupted")


OUTAGE = preamble("emulated-outage", "the controller process is killed for 15 s and started again on the same directory",
                  group="dut") + """  next: {version: 13.5.0, size: 20M}
controller:
  config_items:
    timer.config.interval: 5
steps:
  - power_on: {}
  - expect: {onboarded: true, device_state: ONLINE, attestation: COMPLETE, within: 1m}
  - controller_outage: {duration: 15s}
  - baseos_update: {image: next}
expect:
  - name: the restarted controller still knows the device and serves it the new config
    baseos_status: UPDATING
    within: 3m
"""


FAST_PATH = """
name: emulated-fast-path
description: >-
  A boot while the controller refuses connections takes the onboarding fast path (cached UUID,
  no certs fetched in that boot); once the controller is back the device must still verify its
  signed answers (the certs checkpoint) and attest again
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
  - expect: {onboarded: true, device_state: ONLINE, attestation: COMPLETE, within: 1m}
  - controller_outage: {}
  - power_cycle: {off_for: 2s}
  - wait: 20s
  - controller_restore: {}
expect:
  - name: the fast-path boot attests again once the controller is back
    boot_reason: UNKNOWN            # qemu-x86_64: virtio, no SMART power-cycle count (spec §7)
    attestation: COMPLETE
    within: 90s
"""


MARK = f"eden-test-{os.getpid()}"
"""Put in the environment of every run this module starts; children inherit it, so leaked
processes are found by it even after they were re-parented (and other runs on the host are not)."""


def _ours() -> set[int]:
    """Live processes descended from this module's runs (controllers and agents)."""
    return marked_processes("EDEN_TEST_MARK", MARK)


def _env(tmp_path: Path) -> dict[str, str]:
    return env(tmp_path, mark=MARK)


def _run_tmp(tmp_path: Path) -> Path:
    """The TMPDIR of a run: the backend's working directory goes there and must be gone after."""
    path = tmp_path / "tmp"
    path.mkdir(exist_ok=True)
    return path


def _run(tmp_path: Path, text: str, name: str, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    scenario = tmp_path / f"{name}.yaml"
    scenario.write_text(text)
    return run_eden("run", str(scenario), "--backend", "emulated", "--out", str(tmp_path / "out"), env=_env(tmp_path),
                    timeout=timeout)


def test_smoke_passes_with_real_processes_and_leaves_nothing(tmp_path: Path) -> None:
    before_procs = _ours()
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
    assert not any(_run_tmp(tmp_path).iterdir())


def test_failed_expectation_is_exit_1_and_leaves_nothing(tmp_path: Path) -> None:
    before_procs = _ours()
    proc = _run(tmp_path, FAILING, "fails")
    assert proc.returncode == EXIT_FAILED, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["verdict"] == "failed"
    assert [e["status"] for e in summary["expectations"] if e["name"] == "never happens"] == ["failed"]
    assert _ours() <= before_procs
    assert not any(_run_tmp(tmp_path).iterdir())


SWITCHES = preamble("emulated-switches", "the real controller's fault switches (refused certs, 503, a hang)", group="dut") + """controller:
  config_items:
    timer.config.interval: 5
    timer.send.timeout: 10
steps:
  - refuse_device_certs: {}
  - power_on: {}
  - expect:
      name: refused certs once config works are EDGE_NODE_CERTS_REFUSED
      device_state: MAINTENANCE_MODE
      maintenance_mode: EDGE_NODE_CERTS_REFUSED
      within: 1m
  - refuse_device_certs: {enable: false}
  - expect: {name: the next re-post is accepted, maintenance_mode: NONE, device_state: ONLINE, within: 1m}
  - controller_503: {duration: 30s}
  - wait: 15s
  - controller_hang: {duration: 40s}
expect:
  - name: back after the hang, on its one DPC
    device_state: ONLINE
    dpc: {index: 0}
    within: 2m
"""


@pytest.mark.background("switches", lane="emulated-scenarios", scenario=SWITCHES, backend="emulated")
def test_the_controller_switches_do_on_emulated_what_they_do_on_sim() -> None:
    """refuse_device_certs, controller_503 and controller_hang on the real controller (its answer
    switch and cert refusal, tests/test_controller_answer_switch.py): the agent goes into
    EDGE_NODE_CERTS_REFUSED and out again, sees 503 answers and then timeouts after its 10 s send
    timeout, and never switches DPC."""
    run = background_run("switches")
    rc, output = run.wait(timeout=420)
    assert rc == EXIT_OK, output[-3000:] + (run.out / "logs" / "agent-dut-0.log").read_text()[-3000:]
    events = [json.loads(line) for line in (run.out / "events.jsonl").read_text().splitlines()]
    switch = [(e["t"], e.get("mode")) for e in events if e["source"] == "controller" and e["what"] == "admin_answer_mode"]
    assert [m for _t, m in switch] == ["503", "normal", "hang", "normal"], switch
    fails = [e for e in events if e["source"] == "device" and e["what"] == "config_fail"]
    in_503 = [e for e in fails if switch[0][0] <= e["t"] <= switch[1][0]]
    assert in_503 and all(e.get("status") == 503 for e in in_503), in_503
    back = [e for e in events if e["source"] == "device" and e["what"] == "controller_reachable"]
    assert any(switch[1][0] <= e["t"] <= switch[2][0] for e in back), "no successful poll between the 503 and the hang"
    in_hang = [e for e in fails if switch[2][0] <= e["t"] <= switch[3][0] + 12]  # a poll sent in the hang times out 10 s later
    assert in_hang and all(e.get("status") == 0 for e in in_hang), in_hang
    assert not [e for e in events if e["what"] == "dpc_switch"]
    assert run.leftovers() == []


@pytest.mark.background("controller-outage", lane="emulated-scenarios", scenario=OUTAGE, backend="emulated")
def test_controller_outage_restarts_the_controller_without_losing_the_device() -> None:
    run = background_run("controller-outage")
    rc, output = run.wait(timeout=300)
    out = run.out
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert rc == EXIT_OK, output[-3000:] + (out / "logs" / "agent-dut-0.log").read_text()[-3000:]
    # the device saw refused connections while the controller was down
    fails = [e for e in events if e["what"] == "config_fail" and e["source"] == "device"]
    assert fails, "no failed config poll during the outage"
    assert ("harness", "controller_restored") in {(e["source"], e["what"]) for e in events}
    # onboarded once: the restarted controller kept the registration (SQLite)
    assert sum(1 for e in events if e["source"] == "controller" and e["what"] == "onboarded") == 1
    assert any(e["source"] == "device" and e["what"] == "baseos_config" and e.get("version") == "13.5.0" for e in events)
    assert run.leftovers() == []


@pytest.mark.background("fallback-during-outage", lane="emulated-scenarios", scenario=FALLBACK_DURING_OUTAGE,
                        backend="emulated")
def test_force_fallback_during_an_outage_falls_back_as_on_sim() -> None:
    """The admin side takes force_fallback while devices cannot reach the controller (the same
    scenario passes on sim: tests/test_backend_ports.py). Four minutes of EVE's timers: the run
    starts at collection (tests/conftest.py)."""
    run = background_run("fallback-during-outage")
    rc, output = run.wait(timeout=480)
    assert rc == EXIT_OK, output[-3000:]
    summary = json.loads((run.out / "summary.json").read_text())
    assert [e["status"] for e in summary["steps"] if e["action"] == "expect"] == ["passed"] * 3
    events = [json.loads(line) for line in (run.out / "events.jsonl").read_text().splitlines()]
    admin = [e["t"] for e in events if e["source"] == "controller" and e["what"] == "admin_fallback"]
    restored = [e["t"] for e in events if e["source"] == "harness" and e["what"] == "controller_restore"]
    assert len(admin) == 1 and admin[0] >= restored[0]  # queued during the outage, applied on restore
    assert run.leftovers() == []


@pytest.mark.background("fast-path", lane="emulated-scenarios", scenario=FAST_PATH, backend="emulated")
def test_fast_path_boot_keeps_the_controller_certs() -> None:
    """Spec §1 fast path + §2.1 certs checkpoint: without the checkpoint the boot never learns the
    signing cert, every signed answer is rejected while the unsigned 403 passes, and the device
    loops in attestation (passes on sim, failed on emulated)."""
    run = background_run("fast-path")
    rc, output = run.wait(timeout=300)
    events = [json.loads(line) for line in (run.out / "events.jsonl").read_text().splitlines()]
    assert rc == EXIT_OK, output[-3000:]
    boots = [e for e in events if e["source"] == "device" and e["what"] == "booted"]
    assert [b.get("reason") for b in boots] == ["FIRST", "UNKNOWN"]  # virtio: no SMART power-cycle count (§7)
    assert sum(1 for e in events if e["source"] == "device" and e["what"] == "attested") >= 2
    assert run.leftovers() == []


def _start_long(tmp_path: Path) -> subprocess.Popen[str]:
    scenario = tmp_path / "long.yaml"
    scenario.write_text(LONG)
    return start_eden("run", str(scenario), "--backend", "emulated", "--out", str(tmp_path / "out"), env=_env(tmp_path))


def _wait_for_agent(run: subprocess.Popen[str], before: set[int], timeout: float = 60) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mine = _ours() - before
        if any(b"agent" in Path(f"/proc/{p}/cmdline").read_bytes() for p in mine if Path(f"/proc/{p}").exists()):
            return mine
        assert run.poll() is None, run.communicate()[0]
        time.sleep(0.2)
    raise AssertionError("no agent process appeared")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_everything(tmp_path: Path, sig: signal.Signals) -> None:
    """A Ctrl-C, or a SIGTERM as a CI system cancelling a job sends, stops the run gracefully."""
    before_procs = _ours()
    run = _start_long(tmp_path)
    try:
        started = _wait_for_agent(run, before_procs)
        assert len(started) >= 2  # the controller and the agent
        time.sleep(1.0)
        run.send_signal(sig)
        out = wait_reading(run, 90, grace=60)  # a few seconds on a quiet host
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 128 + sig, out
    assert f"interrupted ({sig.name})" in out, out
    assert _ours() <= before_procs
    assert not any(_run_tmp(tmp_path).iterdir())


def test_a_dead_controller_is_an_infrastructure_error(tmp_path: Path) -> None:
    before_procs = _ours()
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
    assert not any(_run_tmp(tmp_path).iterdir())


def test_a_killed_run_keeps_its_logs_and_the_next_run_removes_its_secrets(tmp_path: Path) -> None:
    """A ``kill -9`` of ``eden run --backend emulated`` cannot clean up: its logs are in the output
    folder already, its secrets (controller keys, admin token) in a 0700 working directory in /tmp
    that the next run removes when it starts."""
    before_procs = _ours()
    run = _start_long(tmp_path)
    try:
        _wait_for_agent(run, before_procs)
        (work,) = [p for p in _run_tmp(tmp_path).iterdir() if p.name.startswith("eden-emulated-")]
        assert work.stat().st_mode & 0o777 == 0o700
        keys = [p for p in work.rglob("*") if p.is_file() and ("key" in p.name or p.name == "admin.token")]
        assert any(p.name.endswith(".key.pem") for p in keys), sorted(map(str, work.rglob("*")))
        loose = {str(p): oct(p.stat().st_mode & 0o777) for p in keys if p.stat().st_mode & 0o077}
        assert not loose, loose
        run.kill()
        run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    deadline = time.monotonic() + 10
    while _ours() - before_procs and time.monotonic() < deadline:  # the kernel kills the children
        time.sleep(0.1)
    assert _ours() <= before_procs
    logs = tmp_path / "out" / "logs"
    assert logs.is_dir(), sorted(os.listdir(tmp_path / "out"))
    assert (logs / "controller.log").is_file() and list(logs.glob("agent-*.log")), sorted(os.listdir(logs))
    assert work.is_dir()  # nothing can clean up after a kill -9 ...
    proc = _run(tmp_path, SMOKE, "smoke")  # ... but the next run does, when it starts
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert not work.exists()
    assert not any(_run_tmp(tmp_path).iterdir())
