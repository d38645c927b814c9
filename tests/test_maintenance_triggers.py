"""The local maintenance triggers as scenario steps (spec §7): ``low_disk_space`` and
``tpm_failure`` on the simulator, ``scenarios/maintenance-triggers.yaml``, refused on real backends.
The node rules themselves are in tests/test_ops_rules.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim_run import run_sim

from eden.errors import InvalidInput
from eden.run import load_for_backend

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "maintenance-triggers.yaml"



def test_the_shipped_scenario_defers_the_update_until_the_conditions_end(tmp_path: Path) -> None:
    summary, events = run_sim(SCENARIO, tmp_path / "out")
    assert summary["verdict"] == "passed", summary["expectations"]
    cleared = max(e["t"] for e in events if e["what"] in ("low_disk_space", "tpm_failure"))
    configs = [e for e in events if e["what"] == "baseos_config"]
    # the base-OS config is taken only once maintenance mode ends (§7: updates deferred)
    assert {e["device"] for e in configs} == {"disk-0", "tpm-0"} and all(e["t"] >= cleared for e in configs)
    reboot = next(e["t"] for e in events if e["what"] == "booted" and e["device"] == "disk-0" and e["reason"] != "FIRST")
    again = [e for e in events if e["what"] == "maintenance_reason" and e["device"] == "disk-0" and e["on"]]
    assert any(e["t"] >= reboot for e in again)  # volumemgr reports the full disk again at start


def test_a_condition_that_never_ends_keeps_the_update_away(tmp_path: Path) -> None:
    text = SCENARIO.read_text()
    variant = tmp_path / "stuck.yaml"
    variant.write_text(text.replace("  - tpm_failure: {enable: false}\n    target: tpm\n", ""))
    summary, _events = run_sim(variant, tmp_path / "out")
    assert summary["verdict"] == "failed"
    assert [e["status"] for e in summary["expectations"]][-1] == "failed"


@pytest.mark.parametrize("backend", ["emulated", "qemu"])
def test_the_local_fault_steps_are_refused_by_real_backends(backend: str) -> None:
    with pytest.raises(InvalidInput) as info:
        load_for_backend(SCENARIO, backend)
    text = str(info.value)
    assert "'low_disk_space' needs capability 'hardware_faults'" in text, text
    assert "'tpm_failure' needs capability 'hardware_faults'" in text, text
