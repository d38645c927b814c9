"""The device-facing scenarios pass on the emulated backend, as they do on the simulator.

One suite run (``suites/emulated.yaml``) with every entry in parallel: a real controller and real
agent processes per entry, in real time (about 14 minutes, mostly EVE's own timers: the network
outage needs two failed port tests at the 300 s minimum interval). ``tests/conftest.py`` starts
that run when the session is collected and schedules this test last, so the waiting overlaps with
the rest of the suite. The same files run on the simulator in ``tests/test_sim_scenarios.py``.
"""

from __future__ import annotations

import json

import pytest

SCENARIOS = [
    "onboarding-smoke",
    "baseos-update",
    "baseos-update-rollback",
    "update-with-power-loss",
    "network-outage-recovery",
    "attestation-tamper",
]


@pytest.mark.slow
@pytest.mark.background("emulated")
def test_emulated_suite_passes(emulated_suite_run) -> None:  # type: ignore[no-untyped-def]
    rc, output = emulated_suite_run.wait(timeout=45 * 60)
    out = emulated_suite_run.work / "suite"
    results = json.loads((out / "results.json").read_text())
    verdicts = {e["scenario"]: e["verdict"] for e in results["entries"]}
    detail = {e["scenario"]: [x["name"] for x in e["expectations"] if x["status"] != "passed"] for e in results["entries"]}
    assert verdicts == {s: "passed" for s in SCENARIOS}, (detail, output[-3000:])
    assert rc == 0, output[-3000:]
    assert results["backend"] == "emulated"
    for entry in results["entries"]:
        run_dir = out / entry["run_dir"]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["backend"] == "emulated"
        # the controller served this run over the wire: it counted signed config requests
        assert summary["metrics"]["controller"]["config"]["requests"] > 0
        assert any(a.startswith("logs/agent-") for a in entry["attachments"])
    junit = (out / "junit.xml").read_text()
    assert junit.count("<testcase") == len(SCENARIOS) and "<failure" not in junit and "<error" not in junit
