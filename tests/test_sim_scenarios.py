"""The shipped scenarios on the simulator backend, plus the CLI's verdicts and exit codes.

Every ``scenarios/*.yaml`` runs except the large fleet experiments, which are skipped by name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from eden.cli import main
from eden.run import execute, load_for_backend

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
LARGE = ("fleet-rollout-10k", "controller-overload")  # skipped by name: too big for the unit suite


def _small_scenarios() -> list[Path]:
    return sorted(p for p in SCENARIOS.glob("*.yaml") if not p.name.startswith(LARGE))


def test_the_shipped_scenarios_are_found() -> None:
    names = {p.stem for p in _small_scenarios()}
    assert {"onboarding-smoke", "baseos-update", "baseos-update-rollback", "update-with-power-loss"} <= names
    assert not any(n.startswith(LARGE) for n in names)


@pytest.mark.parametrize("path", _small_scenarios(), ids=lambda p: p.stem)
def test_shipped_scenario_passes_on_the_simulator(path: Path, tmp_path: Path) -> None:
    loaded = load_for_backend(path, "sim")
    result = execute(loaded, backend_name="sim", out_dir=tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    failed = [(e["name"], e["status"], e.get("observed"), e.get("detail")) for e in summary["expectations"] if e["status"] != "passed"]
    assert result.verdict == "passed", failed
    assert result.exit_code == 0 and summary["verdict"] == "passed" and not failed
    assert summary["expectations"], "a scenario that checks nothing proves nothing"
    assert all(s["status"] == "passed" for s in summary["steps"])
    assert (tmp_path / "events.jsonl").stat().st_size > 0
    assert json.loads((tmp_path / "run.json").read_text())["verdict"] == "passed"


def _write_variant(tmp_path: Path, source: str, old: str, new: str, name: str = "variant.yaml") -> Path:
    text = (SCENARIOS / source).read_text()
    assert text.count(old) == 1, f"{old!r} must occur once in {source}"
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


def test_a_wrong_expectation_fails_the_run_with_exit_code_1(tmp_path: Path) -> None:
    path = _write_variant(
        tmp_path,
        "onboarding-smoke.yaml",
        "  - name: first boot reported\n    boot_reason: FIRST\n",
        "  - name: first boot reported\n    boot_reason: FALLBACK\n",
    )
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "failed"
    by_name = {e["name"]: e for e in summary["expectations"]}
    assert by_name["first boot reported"]["status"] == "failed"
    assert by_name["first boot reported"]["observed"] is not None
    assert by_name["attestation completes"]["status"] == "passed"  # only the wrong one fails


def test_a_failing_inline_expect_skips_the_remaining_steps(tmp_path: Path) -> None:
    path = _write_variant(
        tmp_path,
        "baseos-update.yaml",
        "  - expect: {attestation: COMPLETE, within: 2m}\n",
        "  - expect: {attestation: RESTART_WAIT, within: 2m}\n",
    )
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    statuses = [s["status"] for s in summary["steps"]]
    assert statuses[:3] == ["passed", "passed", "failed"] and set(statuses[3:]) == {"skipped"}
    assert {e["status"] for e in summary["expectations"] if e["where"].startswith("expect[")} == {"skipped"}


def _unwrap(text: str) -> str:
    """rich wraps stderr at the console width (80 columns when not a terminal): undo it."""
    return re.sub(r"\s+", " ", text)


def test_an_invalid_file_exits_2_with_file_line_col(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_variant(tmp_path, "onboarding-smoke.yaml", "  - power_on: {}\n", "  - power_onn: {}\n", "bad.yaml")
    line = path.read_text().splitlines().index("  - power_onn: {}") + 1
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    err = _unwrap(capsys.readouterr().err)
    assert re.search(rf"{re.escape(str(path))}:{line}:5: error: unknown action 'power_onn'", err), err
    assert "did you mean 'power_on'" in err
    assert not out.exists(), "nothing runs when a file is invalid"


def test_invalid_yaml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nfleet: [\n")
    assert main(["run", str(path), "--quiet"]) == 2
    assert re.search(rf"{re.escape(str(path))}:3:1: error: invalid YAML", _unwrap(capsys.readouterr().err))


def _summary(path: Path, out: Path, seed: int | None = None) -> bytes:
    execute(load_for_backend(path, "sim"), backend_name="sim", seed=seed, out_dir=out)
    return (out / "summary.json").read_bytes()


def test_same_seed_gives_a_byte_identical_summary(tmp_path: Path) -> None:
    path = SCENARIOS / "update-with-power-loss.yaml"
    first = _summary(path, tmp_path / "a")
    second = _summary(path, tmp_path / "b")
    assert first == second
    assert _summary(path, tmp_path / "c", seed=4) == first  # 4 is the file's seed


def test_a_different_seed_gives_a_different_summary(tmp_path: Path) -> None:
    path = SCENARIOS / "onboarding-smoke.yaml"  # boot times are drawn from the profile's distribution
    a = json.loads(_summary(path, tmp_path / "a", seed=11))
    b = json.loads(_summary(path, tmp_path / "b", seed=12))
    assert a["seed"] == 11 and b["seed"] == 12
    del a["seed"], b["seed"]
    assert a != b
    assert a["verdict"] == b["verdict"] == "passed"
    assert a["metrics"] != b["metrics"]


def test_summary_does_not_depend_on_the_process(tmp_path: Path) -> None:
    """Another interpreter with another string-hash seed writes the same bytes."""
    path = SCENARIOS / "network-outage-recovery.yaml"
    here = _summary(path, tmp_path / "here")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = tmp_path / "there"
    proc = subprocess.run(
        [sys.executable, "-m", "eden.cli", "run", str(path), "--out", str(out), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "summary.json").read_bytes() == here
