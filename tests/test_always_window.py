"""``always`` from a point in the run (docs/scenario-language.md "Expectations"): ``from:`` a device
condition (per device, from the first check where it held) and ``after:`` a step (from its end).
Run on the simulator; the runner that judges them is the one every backend uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim_run import run_sim

from eden.errors import InvalidInput
from eden.scenario.load import load_scenario

HEAD = """\
name: always-window
description: invariants that hold only from a point in the run
seed: 3
fleet:
  - {profile: qemu-x86_64, count: 2, group: dut}
images:
  base: {version: 13.4.0}
"""
STEPS = """\
steps:
  - power_on: {}
  - name: online
    expect: {device_state: ONLINE, onboarded: true, within: 5m}
  - wait: 2m
"""
CUT = """\
  - network_down: {}
    target: {devices: [dut-1]}
  - wait: 5m
"""
EXPECT = """\
expect:
  - name: connected once onboarded
    always: true
    connected: true
    from: onboarded
  - name: online from the step on
    always: true
    device_state: ONLINE
    after: online
"""


def _run(tmp_path: Path, text: str) -> dict[str, dict[str, object]]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    summary, _events = run_sim(path, tmp_path / "out")
    return {e["name"]: e for e in summary["expectations"]}


def test_invariants_that_hold_from_their_point_pass(tmp_path: Path) -> None:
    got = _run(tmp_path, HEAD + STEPS + EXPECT)
    assert got["connected once onboarded"]["status"] == "passed", got
    assert got["online from the step on"]["status"] == "passed", got


def test_without_the_point_the_same_invariant_fails_at_the_start(tmp_path: Path) -> None:
    """Nobody is connected before power-on: the point is what makes the first one hold."""
    got = _run(tmp_path, HEAD + STEPS + EXPECT.replace("    from: onboarded\n", "").replace("    after: online\n", ""))
    for name in ("connected once onboarded", "online from the step on"):
        assert got[name]["status"] == "failed", got[name]
        assert got[name]["detail"]["why"] == "violated at t=0.0s", got[name]


def test_a_device_that_drops_after_its_point_fails_the_invariant(tmp_path: Path) -> None:
    got = _run(tmp_path, HEAD + STEPS + CUT + EXPECT)
    res = got["connected once onboarded"]
    assert res["status"] == "failed", res
    t = float(str(res["detail"]["why"]).removeprefix("violated at t=").removesuffix("s"))
    assert t > 120, res  # after the network went down, not before the devices onboarded
    failing = res["detail"]["failing"]
    assert list(failing) == ["dut-1"] and failing["dut-1"]["past_point"] is True, failing


def test_an_invariant_after_a_step_that_never_passes_is_not_judged(tmp_path: Path) -> None:
    steps = STEPS.replace("device_state: ONLINE, onboarded: true, within: 5m", "device_state: MAINTENANCE_MODE, within: 1m")
    got = _run(tmp_path, HEAD + steps + EXPECT)
    res = got["online from the step on"]
    assert res["status"] == "skipped" and "steps[1], which it starts after, never passed" in res["detail"]["why"], res


MISTAKES = [
    # (old text, new text, line, words in the message)
    ("after: online", "after: 9", 21, "there is no steps[9]: the scenario has 3 step(s)"),
    ("after: online", "after: onlin", 21, "no step is named 'onlin'"),
    ("from: onboarded", "from: online", 17, "'online' is not a point"),
    ("from: onboarded", "from: {metric: {name: onboarding.time.max, max: 60}}", 17, "metric and rollout are fleet-level"),
    ("    always: true\n    connected: true\n", "    connected: true\n", 14, "'from' starts an 'always' invariant later"),
]


@pytest.mark.parametrize("old,new,line,words", MISTAKES, ids=[m[1].strip() for m in MISTAKES])
def test_a_bad_point_is_refused_at_its_position(tmp_path: Path, old: str, new: str, line: int, words: str) -> None:
    text = HEAD + STEPS + EXPECT
    assert old in text
    path = tmp_path / "s.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(InvalidInput) as exc:
        load_scenario(path)
    issue = exc.value.issues[0]
    assert words in issue.message, issue
    assert (issue.file, issue.line) == (str(path), line), issue


def test_an_inline_expect_cannot_have_a_point(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + STEPS.replace("within: 5m}", "within: 5m, after: 0}"))
    with pytest.raises(InvalidInput) as exc:
        load_scenario(path)
    assert "an inline expect starts at its own step" in exc.value.issues[0].message
