"""scenarios/controller-and-agent-faults.yaml, one file on sim, emulated and qemu: the controller's
reboot command, an outage, a 503 period and a dead agent (through the agent's fault inbox,
eden/agent/faults.py), and what each backend's timeline shows of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import background_run
from eden.errors import EXIT_OK
from eden.run import execute, load_for_backend

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "controller-and-agent-faults.yaml"
TEXT = SCENARIO.read_text()
EXPECTED = ["onboarded", "rebooted by the controller", "silent during the outage", "back after the outage",
            "back after the 503 period", "rebooted by the watchdog when zedagent's process died"]


def _events(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def _check(out: Path) -> list[dict[str, Any]]:
    """What every backend must show: each expectation passed in order, the boots' reasons, the
    outage and 503 in the device's own failed polls."""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "passed", summary["expectations"]
    steps = [s for s in summary["steps"] if s["action"] == "expect"]
    assert [s["status"] for s in steps] == ["passed"] * len(EXPECTED), steps
    assert summary["metrics"]["requested"]["controller.rejected_503"] >= 1
    events = _events(out)
    t = {what: next(e["t"] for e in events if e["source"] == "harness" and e["what"] == what)
         for what in ("controller_outage", "controller_503", "crash")}
    reasons = [e.get("reason") for e in events if e["source"] == "device" and e["what"] == "booted"]
    assert reasons[-2:] == ["REBOOT_CMD", "WATCHDOG_PID"], reasons
    fails = [e for e in events if e["source"] == "device" and e["what"] == "config_fail"]
    assert any(t["controller_outage"] < e["t"] < t["controller_503"] for e in fails), "no failed poll in the outage"
    assert any(t["controller_503"] < e["t"] < t["crash"] and e.get("status") == 503 for e in fails), "no 503 seen"
    return events


def test_the_scenario_passes_on_sim_and_a_broken_expectation_fails(tmp_path: Path) -> None:
    result = execute(load_for_backend(SCENARIO, "sim"), backend_name="sim", out_dir=tmp_path / "ok")
    assert result.verdict == "passed", result.summary
    _check(tmp_path / "ok")
    wrong = tmp_path / "wrong.yaml"  # the watchdog's reason is PID, not HUNG: the run must say so
    wrong.write_text(TEXT.replace("boot_reason: WATCHDOG_PID", "boot_reason: WATCHDOG_HUNG"))
    bad = execute(load_for_backend(wrong, "sim"), backend_name="sim", out_dir=tmp_path / "bad")
    assert bad.verdict == "failed"


@pytest.mark.slow
@pytest.mark.background("emulated")
def test_the_same_file_passes_on_emulated() -> None:
    """An entry of the emulated suite (suites/emulated.yaml, tests/test_emulated_scenarios.py)."""
    run = background_run("emulated")
    run.wait(timeout=45 * 60)
    out = run.work / "suite"
    results = json.loads((out / "results.json").read_text())
    entry = next(e for e in results["entries"] if e["scenario"] == SCENARIO.stem)
    events = _check(out / entry["run_dir"])
    sent = [e for e in events if e["source"] == "harness" and e["what"] == "fault_sent"]
    assert [(e["kind"], e["powered"]) for e in sent] == [("agent_exit", True)], sent
    taken = [e for e in events if e["source"] == "device" and e["what"] == "fault_injected"]
    assert [(e["action"], e["kind"]) for e in taken] == [("crash", "agent_exit")]


@pytest.mark.slow
@pytest.mark.qemu
@pytest.mark.background("faults-qemu", lane="emulated-scenarios", scenario=TEXT, backend="qemu")
def test_the_same_file_passes_on_qemu() -> None:
    """The controller really stopped and started on the same port, the VM really rebooted twice (one
    QMP reset each, however many RESET events QEMU gives), the fault written over SSH."""
    run = background_run("faults-qemu")
    rc, output = run.wait(timeout=1200)
    assert rc == EXIT_OK, output[-3000:]
    events = _check(run.out)
    starts = [e.get("cause") for e in events if e["source"] == "device" and e["what"] == "boot_start"]
    assert starts == ["power_on", "reset", "reset"], starts
    markers = [e["marker"] for e in events if e["what"] == "boot_marker"]
    assert markers.count("agent-start") >= 3, markers
    sent = [e for e in events if e["source"] == "harness" and e["what"] == "fault_sent"]
    assert [(e["action"], e["powered"]) for e in sent] == [("crash", True)], sent
    assert ("harness", "controller_restored") in {(e["source"], e["what"]) for e in events}
    assert run.leftovers() == []
