"""``within`` deadlines stretch on a backend slower than the hardware a scenario describes (QEMU
under TCG, ``EDEN_QEMU_TCG_SCALE``), and only there: the simulator keeps them as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from eden.backends.sim import SimBackend
from eden.errors import InfrastructureError
from eden.qemu.hostcheck import TCG_SCALE_DEFAULT, TCG_SCALE_ENV, tcg_deadline_scale
from eden.runner import Runner, run_verdict
from eden.run import load_for_backend
from eden.timeline import Timeline

SCENARIO = """\
name: deadline-scale
seed: 3
fleet:
  - {profile: qemu-x86_64, count: 1}
images:
  base: {version: 13.4.0}
steps:
  - power_on: {}
  - expect: {device_state: ONLINE, attestation: COMPLETE, within: WITHIN}
"""


class _Stretched(SimBackend):
    """The simulator with a deadline factor, as the QEMU backend has one under TCG."""

    scale = 1.0

    @property
    def deadline_scale(self) -> float:
        return self.scale


def _run(tmp_path: Path, within: str, scale: float) -> tuple[str, Runner]:
    path = tmp_path / f"s-{scale:g}.yaml"
    path.write_text(SCENARIO.replace("WITHIN", within))
    loaded = load_for_backend(path, "sim")
    backend = _Stretched(loaded, seed=loaded.scenario.seed, timeline=Timeline())
    backend.scale = scale
    runner = Runner(loaded, backend, seed=loaded.scenario.seed)
    backend.run(runner.main(), duration=loaded.scenario.duration)
    runner.finish()
    return run_verdict(runner), runner


def _attested_at(tmp_path: Path) -> float:
    """When the expectation is met with a deadline that does not matter."""
    verdict, runner = _run(tmp_path, "1h", 1.0)
    assert verdict == "passed"
    met = runner.expectations[0].met_at
    assert met is not None
    return float(met)


def test_the_deadline_stretches_by_the_backends_factor_and_the_failure_says_so(tmp_path: Path) -> None:
    met = _attested_at(tmp_path)
    assert met > 10
    within = f"{met * 0.7:.0f}s"  # too short as written, long enough twice over
    verdict, runner = _run(tmp_path, within, 1.0)
    assert verdict == "failed"
    why = [r.detail.get("why", "") for r in runner.expectations if r.status == "failed"]
    assert why == [f"not met within {met * 0.7:.0f}s"], why
    verdict, runner = _run(tmp_path, within, 2.0)
    assert verdict == "passed"
    deadline = runner.expectations[0].deadline
    assert deadline is not None and deadline == pytest.approx(2 * float(within[:-1]), abs=1.0)


def test_a_stretched_deadline_that_is_missed_names_the_factor(tmp_path: Path) -> None:
    verdict, runner = _run(tmp_path, "5s", 2.0)
    assert verdict == "failed"
    why = [r.detail.get("why", "") for r in runner.expectations if r.status == "failed"]
    assert why == ["not met within 10s (5s x 2 on sim under TCG)"], why


def test_the_simulator_keeps_deadlines_as_written(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace("WITHIN", "5m"))
    loaded = load_for_backend(path, "sim")
    assert SimBackend(loaded, seed=1, timeline=Timeline()).deadline_scale == 1.0


def test_the_tcg_factor_defaults_to_two_and_takes_1_to_10(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TCG_SCALE_ENV, raising=False)
    assert tcg_deadline_scale() == TCG_SCALE_DEFAULT == 2.0
    for raw, value in (("1", 1.0), (" 3.5 ", 3.5), ("10", 10.0)):
        monkeypatch.setenv(TCG_SCALE_ENV, raw)
        assert tcg_deadline_scale() == value
    for bad in ("0.5", "0", "-2", "11", "nan", "inf", "two", "2x"):
        monkeypatch.setenv(TCG_SCALE_ENV, bad)
        with pytest.raises(InfrastructureError, match=TCG_SCALE_ENV):
            tcg_deadline_scale()
