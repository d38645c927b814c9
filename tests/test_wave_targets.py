"""Targets for the devices of a rollout wave (``target: {wave: N, rollout: STEP}``): the same devices
the rollout puts in that wave for the run's seed, so a scenario can expect what each wave does."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim_run import run_sim

from eden.errors import InvalidInput
from eden.scenario.load import load_scenario
from eden.targets import rollout_waves, select

SCENARIO = """\
name: wave-targets
description: expectations on the devices of one rollout wave
seed: 4
fleet:
  - {profile: qemu-x86_64, count: 20, group: dut}
images:
  base: {version: 13.4.0}
  next: {version: 13.5.0}
steps:
  - power_on: {}
  - expect: {onboarded: true, within: 30m}
  - name: the rollout
    rollout:
      image: next
      waves: [{count: 3}, {fraction: 100%}]
      soak: 2h
      wait: false
  - wait: 1h
  - expect: {target: {wave: 1}, version: next}
  - expect: {target: {wave: 2, rollout: the rollout}, version: base}
expect:
  - name: everyone updated in the end
    version: next
    within: 4h
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_a_wave_target_is_the_wave_the_rollout_runs(tmp_path: Path) -> None:
    summary, events = run_sim(_write(tmp_path, SCENARIO), tmp_path / "out")
    assert summary["verdict"] == "passed", summary["expectations"]
    observed = [e["observed"]["devices"] for e in summary["expectations"][1:3]]
    assert observed == [3, 17]  # wave 1 updated during the soak, wave 2 not yet
    waves = [e for e in events if e["what"] == "rollout_wave"]
    assert [w["devices"] for w in waves] == [3, 17]


def test_the_wave_follows_the_seed_and_not_the_fleet_order(tmp_path: Path) -> None:
    loaded = load_scenario(_write(tmp_path, SCENARIO))
    ids = [d.id for d in loaded.devices]
    target = loaded.scenario.steps[4].args.target
    first = select(target, loaded.devices, seed=4, label="steps[4]", steps=loaded.scenario.steps)
    assert sorted(first) == sorted(rollout_waves(ids, [(None, 3), (1.0, None)], seed=4, label="steps[2]")[0])
    assert first != ids[:3]  # shuffled by the seed, as the rollout does
    other = select(target, loaded.devices, seed=5, label="steps[4]", steps=loaded.scenario.steps)
    assert len(other) == 3 and other != first


def test_expecting_the_wrong_wave_fails(tmp_path: Path) -> None:
    text = SCENARIO.replace("{target: {wave: 1}, version: next}", "{target: {wave: 2}, version: next}")
    summary, _ = run_sim(_write(tmp_path, text), tmp_path / "out")
    assert summary["verdict"] == "failed"


MISTAKES = [
    ("{target: {wave: 1}, version: next}", "{target: {wave: 3}, version: next}", 19,
     "the rollout at steps[2] has 2 waves, not 3"),
    ("{wave: 2, rollout: the rollout}", "{wave: 2, rollout: the rolout}", 20, "'the rolout' is not a rollout step"),
    ("{wave: 2, rollout: the rollout}", "{wave: 2, rollout: 0}", 20, "steps[0] is not a rollout step"),
    ("{wave: 2, rollout: the rollout}", "{rollout: 2}", 20, "'rollout' names the rollout whose 'wave' is targeted"),
]


@pytest.mark.parametrize("old,new,line,words", MISTAKES, ids=[m[1] for m in MISTAKES])
def test_a_wave_of_no_rollout_is_refused_at_its_position(tmp_path: Path, old: str, new: str, line: int, words: str) -> None:
    assert old in SCENARIO
    with pytest.raises(InvalidInput) as exc:
        load_scenario(_write(tmp_path, SCENARIO.replace(old, new)))
    issue = exc.value.issues[0]
    assert words in f"{issue.message} {issue.hint}" and issue.line == line, issue


def test_a_wave_without_any_rollout_is_refused(tmp_path: Path) -> None:
    start = SCENARIO.index("  - name: the rollout")
    text = SCENARIO[:start] + "  - expect: {target: {wave: 1}, version: base}\n"
    with pytest.raises(InvalidInput) as exc:
        load_scenario(_write(tmp_path, text))
    assert "no step is a rollout" in exc.value.issues[0].message
