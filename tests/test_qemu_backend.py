"""Backend ``qemu``: ``eden run`` boots the reference image in a real QEMU VM with swtpm
against a real ``eden controller serve``, and leaves nothing behind.

A successful run's timeline, logs and timings are checked on the QEMU suite's onboarding-smoke
entry (tests/test_qemu_scenarios.py), which runs anyway: here are the other outcomes.

The image comes from the cache (built once per set of inputs; ~15 s when only eden's sources
changed). Every process of the run carries a marker variable, so anything leaked is found in /proc.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from eden_subprocess import env, run_eden, start_eden
from conftest import background_run
from leakcheck import marked_processes, wait_reading
from scenario_texts import onboard_then_wait, preamble

from eden.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK

pytestmark = [pytest.mark.slow, pytest.mark.qemu]
MARK = f"eden-qemu-backend-test-{os.getpid()}"


def _ours() -> set[int]:
    """Live processes started under this module's marker (controller, QEMU, swtpm)."""
    return marked_processes("EDEN_TEST_MARK", MARK)


SOCK_DIR = Path(f"/tmp/eqb-{os.getpid()}")
"""Where this module's Machines make their short socket directories (EDEN_SOCK_DIR), so that VMs
of other runs on the host (a background suite) do not count as leaks."""


@pytest.fixture(autouse=True)
def _no_sock_dir_leaks() -> Iterator[None]:
    SOCK_DIR.mkdir(exist_ok=True)
    try:
        yield
        assert list(SOCK_DIR.iterdir()) == [], "VM socket directories left behind"
    finally:
        shutil.rmtree(SOCK_DIR, ignore_errors=True)


def _env(tmp_path: Path) -> dict[str, str]:
    """A run's environment: its own TMPDIR, this module's marker and socket directory."""
    return env(tmp_path, mark=MARK, EDEN_SOCK_DIR=str(SOCK_DIR))


def test_scenarios_needing_apps_are_refused_on_qemu(tmp_path: Path) -> None:
    """The reference image runs no workloads: app steps are refused before anything starts."""
    proc = run_eden("validate", "scenarios/app-deploy-resources.yaml", "--backend", "qemu", env=_env(tmp_path))
    assert proc.returncode == EXIT_INVALID
    assert "needs capability 'apps'" in proc.stdout + proc.stderr
    ok = run_eden("validate", *(f"scenarios/{s}.yaml" for s in ("baseos-update", "baseos-update-rollback",
                  "update-with-power-loss", "network-outage-recovery", "attestation-tamper")), "--backend", "qemu",
                  env=_env(tmp_path))
    assert ok.returncode == 0, ok.stdout + ok.stderr


LONG = onboard_then_wait("qemu-long", "a VM that the test kills from outside", within="5m")


def _qemu_of_ours() -> list[int]:
    out = []
    for pid in _ours():
        try:
            exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if exe.endswith(b"qemu-system-x86_64") and b"EDEN_QEMU_RUN=" in env:  # a VM, not the KVM probe
            out.append(pid)
    return out


def _start_and_hit(tmp_path: Path, text: str, hit: Callable[[subprocess.Popen[str], list[int]], None],
                   **extra_env: str) -> tuple[int, str, Path]:
    """``eden run`` a scenario on qemu; once its VM runs, ``hit(proc, qemu_pids)``; wait for the end."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text(text)
    out = tmp_path / "out"
    proc = start_eden("run", str(scenario), "--backend", "qemu", "--out", str(out), "--quiet",
                      env={**_env(tmp_path), **extra_env})
    try:
        deadline = time.monotonic() + 240
        while not (pids := _qemu_of_ours()):
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "QEMU never started"
            time.sleep(0.2)
        hit(proc, pids)
        output = wait_reading(proc, 120, grace=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not _ours(), "processes left behind"
    assert list((tmp_path / "tmp").iterdir()) == [], "temp dirs left behind"
    return proc.returncode, output, out


def test_ctrl_c_stops_every_vm_and_leaves_nothing(tmp_path: Path) -> None:
    def interrupt(proc: subprocess.Popen[str], _pids: list[int]) -> None:
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)

    rc, output, _out = _start_and_hit(tmp_path, LONG, interrupt)
    assert rc != EXIT_OK, output[-3000:]


NEVER = preamble("qemu-never", "an expectation the device cannot meet in time (a product failure, exit 1)") + """steps:
  - power_on: {}
  - expect: {device_state: MAINTENANCE_MODE, within: 40s}
"""


def test_a_failed_expectation_is_exit_1_and_leaves_nothing(tmp_path: Path) -> None:
    # The deadline as written (no TCG stretch): the miss comes 40 s after power-on, not 80 s.
    rc, output, out = _start_and_hit(tmp_path, NEVER, lambda _proc, _pids: None, EDEN_QEMU_TCG_SCALE="1")
    assert rc == EXIT_FAILED, output[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "failed"
    assert [x["detail"]["why"] for x in summary["expectations"]] == ["not met within 40s"], summary["expectations"]


def test_a_qemu_killed_from_outside_is_an_infrastructure_error(tmp_path: Path) -> None:
    proc_rc, text, out = _start_and_hit(tmp_path, LONG, lambda _proc, pids: os.kill(pids[0], signal.SIGKILL))
    assert proc_rc == EXIT_INVALID, text[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    # Killed after start-up: "QEMU exited unexpectedly"; during power-on: the power-on failed (QMP/QEMU gone).
    assert summary["verdict"] == "error" and "qemu-x86_64-0" in summary["error"], summary.get("error")
    assert "QEMU exited unexpectedly" in summary["error"] or "power-on failed" in summary["error"], summary["error"]


FAULTS = preamble("qemu-faults", "the NIC's link goes down and up (QMP set_link), then a power cut and power-on",
                  group="dut") + """controller:
  config_items:
    timer.config.interval: 5
steps:
  - power_on: {}
  - expect: {onboarded: true, device_state: ONLINE, within: 3m}
  - network_down: {}
  - wait: 25s
  - network_up: {}
  - wait: 10s
  - power_cycle: {off_for: 1s}
  - expect: {boot_reason: UNKNOWN, device_state: ONLINE, within: 2m}   # virtio: no SMART power-cycle count (§7)
metrics: [reconnect.time, boot.time]
"""
# The cut comes within ~30 s of the first boot: before the agent wrote its identity durably, this
# lost the device certificate on a real VM (docs/qemu.md); the expectation after the cut checks it.


@pytest.mark.background("qemu-faults", lane="qemu", scenario=FAULTS, backend="qemu")
def test_link_down_up_and_a_power_cut_on_a_real_vm() -> None:
    bg = background_run("qemu-faults")
    rc, output = bg.wait(timeout=600)
    assert rc == EXIT_OK, output[-3000:]
    out = bg.out
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    t_down = next(e["t"] for e in events if e["source"] == "harness" and e["what"] == "network_down")
    t_up = next(e["t"] for e in events if e["source"] == "harness" and e["what"] == "network_up")
    # While the cable is out the agent's requests fail on the network (a dial timeout, or the
    # connection dropping, depending on where the request was when the link went), never with an
    # answer from the controller.
    fails = [e for e in events if e["what"] == "config_fail" and t_down < e["t"] < t_up]
    assert fails and all(e.get("error") in ("timeout", "network") and e.get("status") == 0 for e in fails), fails
    timings = json.loads((out / "summary.json").read_text())["metrics"]["timings"]
    assert timings["reconnect.time"]["count"] >= 1 and timings["reconnect.time"]["min"] < 30, timings
    starts = [e for e in events if e["source"] == "device" and e["what"] == "boot_start"]
    assert [e["cause"] for e in starts] == ["power_on", "power_on"], starts  # the first power-on and the one after the cut
    markers = [e["marker"] for e in events if e["what"] == "boot_marker"]
    assert markers.count("agent-start") >= 2, markers  # the VM really booted again
    qmp = [e["what"] for e in events if e["source"] == "qmp"]
    assert qmp.count("RESUME") == 2 and "QEMU_EXITED" in qmp, qmp
    run = json.loads((out / "run.json").read_text())
    assert len(run["device_timings"]["devices"]["dut-0"]["power_on_to_agent_start"]) == 2
    assert bg.leftovers() == []
