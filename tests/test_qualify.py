"""``eden qualify`` and ``eden report`` end to end on the simulator: verdicts, failure classes, exit
codes, results.json, per-entry run folders, criteria, parallel workers, re-rendering."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime
from pathlib import Path

import pytest

from eden import cli
from eden.reports.model import SuiteResults

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "scenarios" / "onboarding-smoke.yaml"
UPDATE = REPO / "scenarios" / "baseos-update.yaml"


def _impossible(tmp_path: Path) -> Path:
    """A copy of onboarding-smoke with an expectation the product cannot meet."""
    text = SMOKE.read_text().replace("name: onboarding-smoke", "name: impossible")
    text = text.replace("boot_reason: FIRST", "boot_reason: WATCHDOG_HUNG")
    path = tmp_path / "impossible.yaml"
    path.write_text(text)
    return path


def _suite(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(body)
    return path


def _qualify(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(["qualify", *map(str, args)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_failed_and_broken_entries_in_parallel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One product failure, one injected harness error, passes, run by two spawned workers."""
    _impossible(tmp_path)
    suite = _suite(
        tmp_path,
        f"""\
name: mixed
scenarios: [{SMOKE}, impossible.yaml, {UPDATE}]
profiles: [qemu-x86_64, rpi4-class]
exclude:
  - {{scenario: impossible, profile: rpi4-class, reason: one failing entry is enough}}
""",
    )
    monkeypatch.setenv("EDEN_INJECT_HARNESS_ERROR", "baseos-update")
    out = tmp_path / "out"
    rc, stdout, stderr = _qualify(capsys, suite, "--jobs", "2", "--out", out, "--history", tmp_path / "h.db")
    assert rc == 2  # a broken entry outranks the product failure
    results = SuiteResults.load(out)
    verdicts = {e.id: e.verdict for e in results.entries}
    assert verdicts == {
        "onboarding-smoke--qemu-x86_64--r0": "passed",
        "onboarding-smoke--rpi4-class--r0": "passed",
        "impossible--qemu-x86_64--r0": "failed",
        "baseos-update--qemu-x86_64--r0": "broken",
        "baseos-update--rpi4-class--r0": "broken",
    }
    assert [e.id for e in results.entries] == list(verdicts)  # matrix order, not completion order
    assert results.jobs == 2 and results.backend == "sim" and results.suite == "mixed"
    failed = next(e for e in results.entries if e.verdict == "failed")
    assert failed.run_verdict == "failed" and failed.error is None
    assert [x["name"] for x in failed.expectations if x["status"] == "failed"] == ["first boot reported"]
    assert [(c.name, c.status) for c in failed.criteria] == [("all expectations pass", "failed")]
    broken = next(e for e in results.entries if e.id == "baseos-update--qemu-x86_64--r0")
    assert broken.run_verdict == "error" and "injected harness fault" in (broken.error or "")
    assert broken.criteria == []  # the product was not judged
    for e in results.entries:
        run = out / e.run_dir
        assert e.run_dir == f"runs/{e.id}" and (run / "summary.json").is_file() and (run / "run.json").is_file()
        summary = json.loads((run / "summary.json").read_text())
        assert summary["seed"] == e.seed
        if e.profile:
            assert summary["profiles"] == [e.profile]
    pids = {json.loads((out / e.run_dir / "run.json").read_text())["pid"] for e in results.entries}
    assert os.getpid() not in pids  # the entries ran in worker processes
    # progress: one line per finished entry; the table and the "not passed" reasons on stdout
    assert sum(1 for line in stderr.splitlines() if "/5]" in line) == 5
    assert "impossible--qemu-x86_64--r0" in stdout and "injected harness fault" in stdout
    assert "one failing entry is enough" not in stdout and "excl." in stdout
    for name in ("junit.xml", "report.html", "summary.md"):
        assert (out / name).is_file()
    assert (out / "allure-results").is_dir()


def test_exit_1_for_a_product_failure_and_0_when_all_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _impossible(tmp_path)
    suite = _suite(tmp_path, f"name: one\nscenarios: [{SMOKE}, impossible.yaml]\n")
    rc, stdout, _ = _qualify(capsys, suite, "--out", tmp_path / "a", "--no-history")
    assert rc == 1
    assert "FAILED" in stdout
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDEN_HISTORY", str(tmp_path / "env.db"))
    ok = _suite(tmp_path, f"name: ok\nscenarios: [{SMOKE}]\nreplications: 2\n")
    rc, stdout, _ = _qualify(capsys, ok)
    assert rc == 0
    (default,) = (tmp_path / "reports").glob("ok-*")  # default DIR: reports/<suite>-<timestamp>
    results = SuiteResults.load(default)
    assert [(e.id, e.seed) for e in results.entries] == [("onboarding-smoke--own--r0", 1), ("onboarding-smoke--own--r1", 2)]
    assert (tmp_path / "env.db").is_file()  # recorded into $EDEN_HISTORY


def test_a_criterion_fails_an_otherwise_passing_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = _suite(
        tmp_path,
        f"""\
name: strict
scenarios: [{SMOKE}]
profiles: [qemu-x86_64, rpi4-class]
criteria:
  thresholds:
    - {{metric: onboarding.time.max, max: 40s, name: onboarding under 40 s}}
    - {{metric: boot.time.max, max: 1s, profiles: [nuc-class]}}
""",
    )
    rc, stdout, _ = _qualify(capsys, suite, "--out", tmp_path / "o", "--no-history")
    assert rc == 1
    results = SuiteResults.load(tmp_path / "o")
    fast, slow = results.entries
    assert (fast.profile, fast.verdict) == ("qemu-x86_64", "passed")
    assert (slow.profile, slow.run_verdict, slow.verdict) == ("rpi4-class", "passed", "failed")
    crit = {c.name: c for c in slow.criteria}
    assert set(crit) == {"all expectations pass", "onboarding under 40 s"}  # the nuc-class threshold does not apply
    assert crit["onboarding under 40 s"].status == "failed" and crit["onboarding under 40 s"].observed > 40
    assert "> 40s" in crit["onboarding under 40 s"].why
    assert "criterion onboarding under 40 s" in stdout


def test_thresholds_alone_decide_without_all_expectations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _impossible(tmp_path)
    suite = _suite(
        tmp_path,
        """\
name: lenient
scenarios: [impossible.yaml]
criteria:
  all_expectations: false
  thresholds: [{metric: onboarding.time.max, max: 2m}]
""",
    )
    rc, _, _ = _qualify(capsys, suite, "--out", tmp_path / "o", "--no-history")
    assert rc == 0
    (entry,) = SuiteResults.load(tmp_path / "o").entries
    assert (entry.run_verdict, entry.verdict) == ("failed", "passed")


def test_a_harness_exception_is_broken_never_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import eden.run

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(eden.run, "execute", explode)
    suite = _suite(tmp_path, f"name: boom\nscenarios: [{SMOKE}]\n")
    rc, stdout, _ = _qualify(capsys, suite, "--out", tmp_path / "o", "--no-history")
    assert rc == 2
    (entry,) = SuiteResults.load(tmp_path / "o").entries
    assert entry.verdict == "broken" and entry.error == "harness error: RuntimeError: disk on fire"
    assert entry.attachments == ["harness-error.txt"]
    assert "disk on fire" in (tmp_path / "o" / entry.run_dir / "harness-error.txt").read_text()


def test_an_entry_the_profile_cannot_run_is_broken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ports = SMOKE.read_text().replace("name: onboarding-smoke", "name: ports")
    ports = ports.replace("  - expect: {device_state: ONLINE, within: 2m}\n", "  - network_down: {ports: [eth1]}\n")
    (tmp_path / "ports.yaml").write_text(ports)
    suite = _suite(tmp_path, "name: p\nscenarios: [ports.yaml]\nprofiles: [qemu-x86_64, nuc-class]\n")
    rc, stdout, stderr = _qualify(capsys, suite, "--out", tmp_path / "o", "--no-history")
    assert rc == 2
    ok, bad = SuiteResults.load(tmp_path / "o").entries
    assert ok.verdict == "passed"
    assert bad.verdict == "broken" and "no targeted device has a port 'eth1'" in (bad.error or "")
    assert "1 invalid" in stderr


def test_invalid_suites_and_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = _suite(tmp_path, f"name: bad\nscenarios: [{SMOKE}]\nprofiles: [qemu-x86_65]\n")
    rc, _, stderr = _qualify(capsys, suite)
    assert rc == 2
    assert f"{suite}:3:12: error: unknown hardware profile 'qemu-x86_65'" in stderr
    assert "did you mean 'qemu-x86_64'?" in stderr
    good = _suite(tmp_path, f"name: good\nscenarios: [{SMOKE}]\nprofiles: all\n")
    rc, _, stderr = _qualify(capsys, good, "--profile", "rpi5")
    assert rc == 2 and "unknown profile(s) for --profile: rpi5" in stderr
    rc, _, stderr = _qualify(capsys, tmp_path / "missing.yaml")
    assert rc == 2 and "file not found" in stderr
    assert not (tmp_path / "reports").exists()


def test_profile_option_and_history_across_two_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eden import history

    suite = _suite(tmp_path, f"name: two\nscenarios: [{SMOKE}]\nprofiles: all\n")
    db = tmp_path / "h.db"
    for n in (1, 2):
        rc, _, _ = _qualify(capsys, suite, "--profile", "nuc-class", "qemu-x86_64", "--out", tmp_path / f"r{n}", "--history", db)
        assert rc == 0
    assert [e.profile for e in SuiteResults.load(tmp_path / "r1").entries] == ["nuc-class", "qemu-x86_64"]
    trend = history.trends(db)
    assert set(trend) == {("onboarding-smoke", "nuc-class"), ("onboarding-smoke", "qemu-x86_64")}
    assert [i["verdict"] for i in trend[("onboarding-smoke", "nuc-class")]] == ["passed", "passed"]
    assert history.flaky(db) == []


def test_report_rerenders_from_results_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = _suite(tmp_path, f"name: rr\nscenarios: [{SMOKE}]\n")
    out = tmp_path / "o"
    assert _qualify(capsys, suite, "--out", out, "--history", tmp_path / "h.db")[0] == 0
    for name in ("report.html", "junit.xml", "summary.md"):
        (out / name).unlink()
    assert cli.main(["report", str(out), "--history", str(tmp_path / "h.db")]) == 0
    for name in ("report.html", "junit.xml", "summary.md"):
        assert (out / name).is_file()
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "results.json not found" in capsys.readouterr().err


def test_report_allure_runs_the_cli_or_says_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = _suite(tmp_path, f"name: al\nscenarios: [{SMOKE}]\n")
    out = tmp_path / "o"
    assert _qualify(capsys, suite, "--out", out, "--no-history")[0] == 0
    monkeypatch.setattr(cli, "_find_allure", lambda: None)
    assert cli.main(["report", "--allure", str(out)]) == 2
    err = capsys.readouterr().err
    assert "npm install --prefix .tools allure" in err and "scripts/bootstrap" in err
    # A stand-in for the npm CLI: records its arguments and writes an index.html.
    fake = tmp_path / "bin" / "allure"
    fake.parent.mkdir()
    fake.write_text(
        '#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\n'
        'while [ "$1" != "--output" ]; do shift; done\nmkdir -p "$2" && echo ok > "$2/index.html"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(cli, "_find_allure", lambda: fake)
    assert cli.main(["report", "--allure", str(out)]) == 0
    args = (fake.parent / "args").read_text().split()
    assert args == ["generate", str((out / "allure-results").resolve()), "--output", str((out / "allure-report").resolve())]
    assert (out / "allure-report" / "index.html").is_file()


def test_find_allure_looks_on_path_then_in_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    found = cli._find_allure()
    repo_tool = REPO / ".tools" / "node_modules" / ".bin" / "allure"
    assert found == (repo_tool if repo_tool.is_file() else None)
    local = tmp_path / ".tools" / "node_modules" / ".bin" / "allure"
    local.parent.mkdir(parents=True)
    local.write_text("#!/bin/sh\n")
    local.chmod(0o755)
    assert cli._find_allure() in (repo_tool, local)
    on_path = tmp_path / "allure"
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    assert cli._find_allure() == on_path
    assert os.access(on_path, os.X_OK)


@pytest.mark.slow
def test_report_allure_with_the_real_allure_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The npm Allure 3 CLI that scripts/bootstrap installs renders our allure-results."""
    found = cli._find_allure()
    assert found is not None, "the Allure CLI is missing: run scripts/bootstrap (npm install --prefix .tools allure)"
    suite = _suite(tmp_path, f"name: real-allure\nscenarios: [{SMOKE}]\nreplications: 2\n")
    out = tmp_path / "o"
    assert _qualify(capsys, suite, "--out", out, "--no-history")[0] == 0
    assert cli.main(["report", "--allure", str(out)]) == 0
    report = out / "allure-report"
    assert (report / "index.html").is_file()
    rendered = " ".join(p.read_text(errors="replace") for p in report.rglob("*.json"))
    assert "onboarding-smoke" in rendered


def test_stagger_spaces_the_parallel_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = _suite(tmp_path, f"name: staggered\nscenarios: [{SMOKE}, {UPDATE}]\n")
    out = tmp_path / "out"
    rc, _stdout, stderr = _qualify(capsys, suite, "--jobs", "2", "--stagger", "2", "--out", out, "--no-history")
    assert rc == 0, stderr
    results = SuiteResults.load(out)
    first, second = (datetime.fromisoformat(e.started) for e in results.entries)
    assert (second - first).total_seconds() >= 1, (first, second)  # 2 s apart, on a 1 s resolution
    assert results.wall_seconds >= 2.0
    rc, _stdout, stderr = _qualify(capsys, suite, "--stagger", "-1", "--out", tmp_path / "bad", "--no-history")
    assert rc == 2 and "--stagger must be between 0 and 3600" in stderr


def test_staggered_turns_start_in_order_and_apart_whoever_asks_first() -> None:
    """--stagger across workers (eden.qualify._Turns): turn 1 asking first still waits for turn 0,
    then for the stagger, so two workers that come up at different times cannot start together."""
    import multiprocessing
    import threading
    import time as _time

    from eden.qualify import _Turns

    ctx = multiprocessing.get_context("spawn")
    turns = _Turns(0.5, ctx.Value("q", 0), ctx.Value("d", 0.0))
    stop = ctx.Event()
    went: dict[int, float] = {}

    def take(turn: int) -> None:
        assert turns.wait(turn, stop)
        went[turn] = _time.time()

    late = threading.Thread(target=take, args=(1,))
    late.start()
    _time.sleep(0.3)  # turn 1 is already waiting when turn 0 comes
    take(0)
    late.join(5)
    assert set(went) == {0, 1} and went[1] - went[0] >= 0.5 - 0.01, went
    stop.set()
    assert not turns.wait(5, stop)  # a stopped suite ends the wait
