"""Observables of EVE's device info that expectations can assert (docs/scenario-language.md
"Conditions"): the vault, the last reboot reason's text and ZInfoDevice's counters. On the
simulator; the real backends decode the same fields from the wire (eden/wire/codec.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim_run import run_sim

from eden.errors import InvalidInput
from eden.scenario.load import load_scenario

SCENARIO = """\
name: observables
description: vault, reboot reason text and counters
seed: 2
fleet:
  - {profile: qemu-x86_64, count: 2, group: dut}
images:
  base: {version: 13.4.0}
  next: {version: 13.5.0}
steps:
  - power_on: {}
  - expect: {onboarded: true, vault: unlocked, within: 30m}
  - expect: {counters: {restart: 1, reboot: 0, baseos_update: {max: 0}}}
  - baseos_update: {image: next}
    target: dut-0
  - expect: {version: next, within: 1h, target: dut-0}
  - expect: {reboot_reason: baseos, counters: {restart: 2}, target: dut-0}
  - reboot: {}
    target: dut-1
  - expect: {counters: {restart: {min: 2}, reboot: 1}, within: 30m, target: dut-1}
"""


def _run(tmp_path: Path, text: str) -> dict[str, object]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    summary, _ = run_sim(path, tmp_path / "out")
    return summary


def test_vault_reboot_reason_and_counters_as_the_device_reports_them(tmp_path: Path) -> None:
    summary = _run(tmp_path, SCENARIO)
    assert summary["verdict"] == "passed", summary["expectations"]
    after_update = summary["expectations"][3]  # type: ignore[index]
    assert "baseos" in after_update["observed"]["reboot_reason"], after_update
    assert after_update["observed"]["counters"] == {"restart": 2}, after_update


@pytest.mark.parametrize("old,new", [
    ("vault: unlocked", "vault: locked"),
    ("reboot_reason: baseos", "reboot_reason: watchdog"),
    ("counters: {restart: 2}", "counters: {restart: 3}"),
    ("reboot: 1}", "reboot: 0}"),
])
def test_a_wrong_value_fails(tmp_path: Path, old: str, new: str) -> None:
    assert old in SCENARIO
    assert _run(tmp_path, SCENARIO.replace(old, new))["verdict"] == "failed"


@pytest.mark.parametrize("new,words", [
    ("counters: {}", "a counters condition needs one of restart, reboot, shutdown, baseos_update"),
    ("counters: {restart: {min: 3, max: 2}}", "min (3) is above max (2)"),
    ("counters: {restarts: 1}", "restarts"),
    ("vault: open", "'open' is not one of: locked, unlocked"),
])
def test_bad_observables_are_refused_at_their_line(tmp_path: Path, new: str, words: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace("counters: {restart: 1, reboot: 0, baseos_update: {max: 0}}", new)
                    .replace("vault: unlocked", new if new.startswith("vault") else "vault: unlocked"))
    with pytest.raises(InvalidInput) as exc:
        load_scenario(path)
    issue = exc.value.issues[0]
    assert words in f"{issue.message} {issue.hint}" and issue.line in (11, 12), issue
