"""The device-facing scenarios pass on the emulated backend, as they do on the simulator.

One suite run (``suites/emulated.yaml``) with every entry in parallel: a real controller and real
agent processes per entry, in real time. The same files are run on the simulator by
``tests/test_sim_scenarios.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = [
    "onboarding-smoke",
    "baseos-update",
    "baseos-update-rollback",
    "update-with-power-loss",
    "network-outage-recovery",
    "attestation-tamper",
]


@pytest.mark.slow
def test_emulated_suite_passes(tmp_path: Path) -> None:
    out = tmp_path / "suite"
    proc = subprocess.run(
        [sys.executable, "-m", "eden", "qualify", str(ROOT / "suites" / "emulated.yaml"), "--jobs", str(len(SCENARIOS)), "--out", str(out), "--no-history"],
        capture_output=True,
        text=True,
        timeout=40 * 60,
        cwd=ROOT,
    )
    results = json.loads((out / "results.json").read_text())
    verdicts = {e["scenario"]: e["verdict"] for e in results["entries"]}
    detail = {e["scenario"]: [x["name"] for x in e["expectations"] if x["status"] != "passed"] for e in results["entries"]}
    assert verdicts == {s: "passed" for s in SCENARIOS}, (detail, proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0
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
