"""The results database: recording suite runs, trends, flaky detection and ``eden history``."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from eden import cli, history
from eden.reports.model import EntryResult, SuiteResults


def _entry(scenario: str, profile: str | None, verdict: str, *, seed: int = 1, backend: str = "sim", p50: float = 30.0, **kw: Any) -> EntryResult:
    return EntryResult(
        id=f"{scenario}--{profile or 'own'}--r{kw.get('replication', 0)}",
        suite=kw.get("suite", "s"),
        scenario=scenario,
        scenario_file=f"scenarios/{scenario}.yaml",
        profile=profile,
        backend=backend,
        seed=seed,
        replication=kw.get("replication", 0),
        verdict=verdict,  # type: ignore[arg-type]
        versions=kw.get("versions", {"base": "13.4.0"}),
        started=kw.get("started", ""),
        wall_seconds=0.5,
        simulated_seconds=100.0,
        run_dir=f"runs/{scenario}",
        timings={"onboarding.time": {"count": 1, "p50": p50}, "update.duration": {"count": 0, "p50": None}},
    )


def _results(*entries: EntryResult, suite: str = "s", backend: str = "sim", started: str = "2026-01-01T00:00:00+00:00") -> SuiteResults:
    return SuiteResults(suite=suite, backend=backend, started=started, entries=list(entries))


def test_record_creates_a_wal_database_with_runs_and_entries(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "history.db"
    run_id = history.record(_results(_entry("a", "nuc-class", "passed"), _entry("b", None, "failed")), tmp_path / "out", db)
    assert run_id == 1
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        run = conn.execute("SELECT suite, backend, verdict, passed, failed, broken, out_dir FROM suite_runs").fetchone()
        assert run == ("s", "sim", "failed", 1, 1, 0, str((tmp_path / "out").resolve()))
        rows = conn.execute("SELECT scenario, profile, verdict, seed, versions, artefacts FROM entries ORDER BY id").fetchall()
    finally:
        conn.close()
    assert rows[0] == ("a", "nuc-class", "passed", 1, '{"base":"13.4.0"}', str((tmp_path / "out" / "runs" / "a").resolve()))
    assert rows[1][:2] == ("b", "-")  # own fleet: the same '-' as EntryResult.key


def test_trends_are_oldest_first_limited_and_filtered(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    for n in range(5):
        history.record(_results(_entry("a", "nuc-class", "passed" if n % 2 == 0 else "failed", p50=30.0 + n, started=f"t{n}")), tmp_path, db)
    history.record(_results(_entry("b", "rpi4-class", "passed"), suite="other"), tmp_path, db)
    trend = history.trends(db, last=3)
    items = trend[("a", "nuc-class")]
    assert [i["started"] for i in items] == ["t2", "t3", "t4"]
    assert [i["verdict"] for i in items] == ["passed", "failed", "passed"]
    assert items[-1]["timings"]["onboarding.time"]["p50"] == 34.0
    assert set(items[0]) >= {"started", "verdict", "timings", "seed", "versions"}
    assert items[0]["versions"] == {"base": "13.4.0"} and items[0]["seed"] == 1
    assert set(history.trends(db, keys=[("b", "rpi4-class")])) == {("b", "rpi4-class")}
    assert set(history.trends(db, suite="other")) == {("b", "rpi4-class")}
    assert history.totals(db)[("a", "nuc-class")] == 5
    assert history.trends(tmp_path / "missing.db") == {}


def test_flaky_means_mixed_verdicts_for_the_same_inputs(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    history.record(_results(_entry("a", "nuc-class", "passed", seed=1)), tmp_path, db)
    history.record(_results(_entry("a", "nuc-class", "failed", seed=1)), tmp_path, db)
    # Different seeds on the simulator are different inputs: not flaky.
    history.record(_results(_entry("b", "nuc-class", "passed", seed=1)), tmp_path, db)
    history.record(_results(_entry("b", "nuc-class", "failed", seed=2)), tmp_path, db)
    # Different image versions: a regression, not flakiness.
    history.record(_results(_entry("c", "nuc-class", "passed", versions={"base": "1"})), tmp_path, db)
    history.record(_results(_entry("c", "nuc-class", "failed", versions={"base": "2"})), tmp_path, db)
    # On a real backend, across seeds too; broken counts as not passed.
    history.record(_results(_entry("d", "rpi4-class", "passed", seed=1, backend="qemu"), backend="qemu"), tmp_path, db)
    history.record(_results(_entry("d", "rpi4-class", "broken", seed=9, backend="qemu"), backend="qemu"), tmp_path, db)
    found = {(f["scenario"], f["profile"]): f for f in history.flaky(db)}
    assert set(found) == {("a", "nuc-class"), ("d", "rpi4-class")}
    assert found[("a", "nuc-class")]["verdicts"] == ["passed", "failed"] and found[("a", "nuc-class")]["seed"] == 1
    assert found[("d", "rpi4-class")]["seed"] is None and found[("d", "rpi4-class")]["broken"] == 1
    # Only the last N entries of a cell count.
    for _ in range(3):
        history.record(_results(_entry("a", "nuc-class", "passed", seed=1)), tmp_path, db)
    assert ("a", "nuc-class") not in {(f["scenario"], f["profile"]) for f in history.flaky(db, last=3)}


def test_default_db_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(history.HISTORY_ENV, raising=False)
    assert history.default_db() == Path("reports") / "history.db"
    monkeypatch.setenv(history.HISTORY_ENV, str(tmp_path / "x.db"))
    assert history.default_db() == tmp_path / "x.db"


def test_eden_history_shows_pass_rates_strips_trends_and_flaky(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.db"
    for verdict, p50 in (("passed", 30.0), ("failed", 31.0), ("broken", 32.0), ("passed", 45.0)):
        history.record(_results(_entry("onboarding-smoke", "rpi4-class", verdict, p50=p50)), tmp_path, db)
    history.record(_results(_entry("baseos-update", None, "passed"), suite="fleet"), tmp_path, db)
    capsys.readouterr()
    assert cli.main(["history", "--db", str(db), "--last", "3"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "onboarding-smoke" in line)
    assert "rpi4-class" in row and "4" in row  # four runs recorded
    assert "33%" in row  # pass rate over the last 3
    assert "✗!✓" in row  # the last three verdicts
    assert "31.5s → 45.0s" in row  # onboarding p50: median of the earlier same-input runs in the window -> last
    assert "FLAKY" in row
    assert "flaky cell(s)" in out
    assert cli.main(["history", "--db", str(db), "--suite", "fleet"]) == 0
    out = capsys.readouterr().out
    assert "baseos-update" in out and "onboarding-smoke" not in out and "FLAKY" not in out
    assert cli.main(["history", "--db", str(tmp_path / "none.db")]) == 0
    assert "no history yet" in capsys.readouterr().out


def test_timing_trends_compare_like_with_like(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The trend arrow compares runs with the same seed and images, not the first and the last run of
    the window: runs with other inputs in between must not move the baseline."""
    db = tmp_path / "h.db"
    runs = [(1, "13.4.0", 30.0), (2, "13.4.0", 90.0), (1, "13.5.0", 80.0), (1, "13.4.0", 32.0), (1, "13.4.0", 31.0)]
    for seed, version, p50 in runs:
        history.record(_results(_entry("smoke", "nuc-class", "passed", seed=seed, p50=p50, versions={"base": version})), tmp_path, db)
    items = history.trends(db)[("smoke", "nuc-class")]
    assert [i["timings"]["onboarding.time"]["p50"] for i in history.same_inputs(items)] == [30.0, 32.0, 31.0]
    capsys.readouterr()
    assert cli.main(["history", "--db", str(db)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "smoke" in line)
    assert "31.0s → 31.0s" in row, row  # median(30, 32) -> 31; not 30 -> 31 nor 90/80 anywhere
    # A last run with new inputs has nothing to compare with: its value alone.
    history.record(_results(_entry("smoke", "nuc-class", "passed", seed=5, p50=60.0)), tmp_path, db)
    assert cli.main(["history", "--db", str(db)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "smoke" in line)
    assert "60.0s" in row and "→" not in row, row
