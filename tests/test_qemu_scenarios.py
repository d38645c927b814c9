"""The device-facing scenarios pass on real QEMU VMs, as they do on the simulator and emulated.

One suite run (``suites/qemu.yaml``), every entry in parallel: per entry a real controller and one
VM per device booting the reference image (built once before the suite starts), with swtpm, serial
console and user networking, in real time under TCG. ``tests/conftest.py`` starts it when the
session is collected and schedules this test last, so its waiting overlaps the rest of the suite.
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
@pytest.mark.qemu
@pytest.mark.background("qemu")
def test_qemu_suite_passes(qemu_suite_run) -> None:  # type: ignore[no-untyped-def]
    rc, output = qemu_suite_run.wait(timeout=50 * 60)
    out = qemu_suite_run.work / "suite"
    results = json.loads((out / "results.json").read_text())
    verdicts = {e["scenario"]: e["verdict"] for e in results["entries"]}
    detail = {e["scenario"]: [x["name"] for x in e["expectations"] if x["status"] != "passed"] for e in results["entries"]}
    assert verdicts == {s: "passed" for s in SCENARIOS}, (detail, output[-3000:])
    assert rc == 0, output[-3000:]
    assert results["backend"] == "qemu"
    for entry in results["entries"]:
        run_dir = out / entry["run_dir"]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["backend"] == "qemu"
        assert summary["metrics"]["controller"]["config"]["requests"] > 0
        # the console capture of every VM is attached to the report
        assert any(a.startswith("logs/console-") for a in entry["attachments"]), entry["attachments"]
    junit = (out / "junit.xml").read_text()
    assert junit.count("<testcase") == len(SCENARIOS) and "<failure" not in junit and "<error" not in junit
    # the updates really went through the datastore and the other slot: the agents said so
    timeline = (out / results["entries"][SCENARIOS.index("baseos-update")]["run_dir"] / "events.jsonl").read_text()
    assert '"platform_written"' in timeline and '"platform_boot"' in timeline
