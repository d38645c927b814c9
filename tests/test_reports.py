"""Qualification reports (Allure results, JUnit, HTML, Markdown) rendered from REAL simulator runs.

The suite results are built here the way ``eden qualify`` builds them: each entry is a real
``eden.run.execute`` run in ``<out>/runs/<entry id>/``, turned into an ``EntryResult`` with
``entry_from_summary`` from the run's own summary.json and run.json. The set covers every verdict:
passed, failed (a copy of onboarding-smoke with an impossible expectation), broken (the harness
fault injected through ``EDEN_INJECT_HARNESS_ERROR``), a small fleet with a rollout (plots) and
two replications of one entry (confidence intervals).
"""

from __future__ import annotations

import json
import platform
import re
import socket
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from eden.reports.model import EntryResult, SuiteResults, broken_entry, entry_from_summary, features_of
from eden.reports.render import write_all
from eden.reports.stats import mean_ci, t_quantile_975
from eden.reports.timeline_slice import timeline_slice
from eden.run import execute, load_for_backend
from eden.timeline import Timeline

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
SUITE = "report-test"
PROFILE_A = "qemu-x86_64"
PROFILE_B = "qemu-aarch64"
FAIL_SCENARIO = "onboarding-impossible-version"
FLEET_SCENARIO = "fleet-rollout-small"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _variant(src: str, dst: Path, replacements: list[tuple[str, str]]) -> Path:
    text = (SCENARIOS / src).read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, f"{old!r} not in {src}"
        text = text.replace(old, new)
    dst.write_text(text, encoding="utf-8")
    return dst


def _run_entry(
    out: Path,
    scenario_path: Path,
    *,
    profile: str | None,
    replication: int = 0,
    seed: int | None = None,
) -> EntryResult:
    loaded = load_for_backend(scenario_path, "sim")
    entry_id = f"{loaded.scenario.name}--{profile or 'fleet'}--r{replication}"
    run_dir = out / "runs" / entry_id
    execute(loaded, backend_name="sim", seed=seed, out_dir=run_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    run_info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    return entry_from_summary(
        summary,
        run_info,
        entry_id=entry_id,
        suite=SUITE,
        scenario_file=str(scenario_path),
        profile=profile,
        replication=replication,
        run_dir=f"runs/{entry_id}",
        features=features_of(loaded.scenario),
    )


def build_suite_results(out: Path) -> SuiteResults:
    """Run the scenarios for real into ``out/runs/`` and gather them as a suite's results."""
    src = out / "scenarios"
    src.mkdir(parents=True)
    smoke_a = SCENARIOS / "onboarding-smoke.yaml"
    smoke_b = _variant("onboarding-smoke.yaml", src / "smoke-b.yaml", [(f"profile: {PROFILE_A}", f"profile: {PROFILE_B}")])
    update_a = SCENARIOS / "baseos-update.yaml"
    update_b = _variant("baseos-update.yaml", src / "update-b.yaml", [(f"profile: {PROFILE_A}", f"profile: {PROFILE_B}")])
    failing = _variant(
        "onboarding-smoke.yaml",
        src / "impossible.yaml",
        [
            ("name: onboarding-smoke", f"name: {FAIL_SCENARIO}"),
            ("metrics: [", '  - name: running an impossible version\n    version: "99.0"\n    within: 2m\nmetrics: ['),
        ],
    )
    fleet = _variant(
        "fleet-rollout-10k.yaml",
        src / "fleet-small.yaml",
        [
            ("name: fleet-rollout-10k", f"name: {FLEET_SCENARIO}"),
            ("count: 3000", "count: 12"),
            ("count: 2000", "count: 8"),
            ("duration: 24h", "duration: 6h"),
        ],
    )
    started = datetime.now(timezone.utc)
    entries = [
        _run_entry(out, smoke_a, profile=PROFILE_A, replication=0, seed=1),
        _run_entry(out, smoke_a, profile=PROFILE_A, replication=1, seed=7),
        _run_entry(out, smoke_b, profile=PROFILE_B),
        _run_entry(out, update_a, profile=PROFILE_A),
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDEN_INJECT_HARNESS_ERROR", "baseos-update")
        entries.append(_run_entry(out, update_b, profile=PROFILE_B))
    entries.append(_run_entry(out, failing, profile=PROFILE_A))
    entries.append(_run_entry(out, fleet, profile=None))
    run_info = json.loads((out / "runs" / entries[0].id / "run.json").read_text(encoding="utf-8"))
    return SuiteResults(
        suite=SUITE,
        description="report test suite: every verdict, a fleet and replications",
        suite_file="tests/test_reports.py",
        backend="sim",
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_seconds=round(sum(e.wall_seconds for e in entries), 3),
        host=socket.gethostname(),
        platform=platform.platform(),
        python=sys.version.split()[0],
        versions=run_info["versions"],
        command="pytest tests/test_reports.py",
        entries=entries,
    )


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[SuiteResults, Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("qualify")
    results = build_suite_results(out)
    results.save(out)
    paths = write_all(results, out)
    return results, out, paths


def _by_verdict(results: SuiteResults) -> dict[str, list[EntryResult]]:
    out: dict[str, list[EntryResult]] = {"passed": [], "failed": [], "broken": []}
    for e in results.entries:
        out[e.verdict].append(e)
    return out


def test_the_fixture_covers_every_verdict(suite: Any) -> None:
    results, _out, paths = suite
    v = _by_verdict(results)
    assert [e.scenario for e in v["failed"]] == [FAIL_SCENARIO]
    assert [(e.scenario, e.profile) for e in v["broken"]] == [("baseos-update", PROFILE_B)]
    assert "injected harness fault" in (v["broken"][0].error or "")
    assert len(v["passed"]) == 5
    assert set(paths) == {"allure", "junit", "html", "markdown"} and all(p.exists() for p in paths.values())


# ----------------------------------------------------------------------------------- Allure --
def _allure_results(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*-result.json"))]


def _params(result: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in result.get("parameters", [])}


def _labels(result: dict[str, Any], name: str) -> list[str]:
    return [lb["value"] for lb in result.get("labels", []) if lb["name"] == name]


def _flat_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in steps:
        out.append(s)
        out += _flat_steps(s.get("steps", []))
    return out


def _find(results: list[dict[str, Any]], entry: EntryResult) -> dict[str, Any]:
    hits = [
        r
        for r in results
        if r["titlePath"][-1] == entry.scenario
        and _params(r)["profile"] == (entry.profile or "-")
        and _params(r)["replication"] == str(entry.replication)
    ]
    assert len(hits) == 1, (entry.id, len(hits))
    return hits[0]


def test_allure_has_one_result_per_entry_with_the_entry_verdict(suite: Any) -> None:
    results, out, _ = suite
    allure = _allure_results(out / "allure-results")
    assert len(allure) == len(results.entries)
    for entry in results.entries:
        r = _find(allure, entry)
        assert r["status"] == entry.verdict
        assert r["stage"] == "finished" and r["start"] <= r["stop"]
        assert len(r["historyId"]) == 32 and len(r["testCaseId"]) == 32
    ids = [r["historyId"] for r in allure]
    assert len(set(ids)) == len(ids), "historyId must tell replications apart"
    smoke = [r for r in allure if r["titlePath"][-1] == "onboarding-smoke" and _params(r)["profile"] == PROFILE_A]
    assert len(smoke) == 2 and smoke[0]["testCaseId"] == smoke[1]["testCaseId"]


def test_allure_steps_parameters_and_labels(suite: Any) -> None:
    results, out, _ = suite
    allure = _allure_results(out / "allure-results")
    host = socket.gethostname()
    for entry in results.entries:
        r = _find(allure, entry)
        steps = r.get("steps", [])
        names = [s["name"] for s in steps]
        # the scenario's steps come first, in order, named after the scenario's steps
        assert len(names) >= len(entry.steps)
        for step, name in zip(entry.steps, names):
            assert name.startswith(step["name"]), (name, step["name"])
        for s in _flat_steps(steps):
            assert s["start"] <= s["stop"], s["name"]
        params = _params(r)
        assert {"profile", "backend", "seed", "replication"} <= set(params)
        assert params["backend"] == "sim" and params["seed"] == str(entry.seed)
        for image, version in entry.versions.items():
            assert params[f"image {image}"] == version
        assert _labels(r, "suite") == [SUITE]
        assert _labels(r, "host") == [host]
        assert _labels(r, "framework") == ["eden"]
        assert sorted(_labels(r, "feature")) == sorted(entry.features) and "onboarding" in _labels(r, "feature")
    update = _find(allure, next(e for e in results.entries if e.scenario == "baseos-update" and e.verdict == "passed"))
    assert "update" in _labels(update, "feature")
    step0 = update["steps"][0]
    # steps are mapped to epoch ms as entry.started + t
    assert step0["start"] == update["start"] and update["steps"][5]["stop"] > update["steps"][5]["start"]


def _attachments(folder: Path, result: dict[str, Any]) -> list[tuple[dict[str, Any], Path]]:
    out = []
    for item in [result] + _flat_steps(result.get("steps", [])):
        for a in item.get("attachments", []):
            path = folder / a["source"]
            assert path.is_file(), a
            out.append((a, path))
    return out


def test_allure_failed_entry_has_message_and_timeline_slice(suite: Any) -> None:
    results, out, _ = suite
    folder = out / "allure-results"
    failed = _by_verdict(results)["failed"][0]
    r = _find(_allure_results(folder), failed)
    message = r["statusDetails"]["message"]
    assert "running an impossible version" in message and "not met within 120s" in message and "13.4.0" in message
    atts = _attachments(folder, r)
    slices = [(a, p) for a, p in atts if a["name"].startswith("timeline around")]
    assert len(slices) == 1
    a, path = slices[0]
    assert a["type"] == "text/plain"
    text = path.read_text(encoding="utf-8")
    assert "running an impossible version" in text
    assert re.search(r"^\s+\d+\.\d{3}s\s+device\s+dut-0\s+(booted|attested|onboarded)", text, re.M), text
    assert len(text.splitlines()) <= 320
    metrics = [p for a, p in atts if a["type"] == "application/json"]
    assert metrics and "timings" in json.loads(metrics[0].read_text(encoding="utf-8"))
    # the failing expectation is also a failed step
    failed_steps = [s for s in _flat_steps(r["steps"]) if s["status"] == "failed"]
    assert any("running an impossible version" in s["name"] for s in failed_steps)


def test_allure_broken_entry_says_why(suite: Any) -> None:
    results, out, _ = suite
    folder = out / "allure-results"
    broken = _by_verdict(results)["broken"][0]
    r = _find(_allure_results(folder), broken)
    assert r["status"] == "broken"
    assert "injected harness fault" in r["statusDetails"]["message"]
    assert not any("impossible" in s["name"] for s in _flat_steps(r.get("steps", [])))


def test_allure_fleet_entry_has_png_plots_and_passed_single_devices_have_none(suite: Any) -> None:
    results, out, _ = suite
    folder = out / "allure-results"
    allure = _allure_results(folder)
    fleet = _find(allure, next(e for e in results.entries if e.scenario == FLEET_SCENARIO))
    pngs = [(a, p) for a, p in _attachments(folder, fleet) if a["type"] == "image/png"]
    assert len(pngs) >= 4, [a["name"] for a, _ in pngs]
    for _a, path in pngs:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    names = {a["name"] for a, _ in pngs}
    assert {"Devices per state", "Rollout progress per wave", "Controller load and latency"} <= names
    smoke = _find(allure, results.entries[0])
    assert not [a for a, _ in _attachments(folder, smoke) if a["type"] == "image/png"]


def test_allure_environment_categories_executor(suite: Any) -> None:
    results, out, _ = suite
    folder = out / "allure-results"
    props = {}
    for line in (folder / "environment.properties").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        props[key] = value
    assert props["backend"] == "sim" and props["host"] == socket.gethostname()
    assert props["python"] == sys.version.split()[0] and props["version.eden"]
    assert props["image.base"] == "13.4.0"
    cats = {c["name"]: c for c in json.loads((folder / "categories.json").read_text(encoding="utf-8"))}
    assert cats["Product failures"]["matchedStatuses"] == ["failed"]
    assert cats["Infrastructure / harness errors"]["matchedStatuses"] == ["broken"]
    executor = json.loads((folder / "executor.json").read_text(encoding="utf-8"))
    assert executor["name"] == "eden" and executor["type"] == "eden"
    assert executor["buildName"] == f"{SUITE} {results.started}" and executor["reportName"]


def test_rerendering_replaces_results_and_keeps_allure_history(suite: Any, tmp_path: Path) -> None:
    results, out, _ = suite
    history = out / "allure-results" / "history"
    history.mkdir(exist_ok=True)
    (history / "history.json").write_text("{}", encoding="utf-8")
    write_all(SuiteResults.load(out), out)
    assert len(list((out / "allure-results").glob("*-result.json"))) == len(results.entries)
    assert (history / "history.json").is_file()


# ------------------------------------------------------------------------------------ JUnit --
def test_junit_parses_with_failure_and_error_classes(suite: Any) -> None:
    results, out, _ = suite
    root = ET.parse(out / "junit.xml").getroot()
    assert root.tag == "testsuites"
    counts = results.counts()
    assert root.get("tests") == str(len(results.entries))
    assert root.get("failures") == str(counts["failed"]) == "1"
    assert root.get("errors") == str(counts["broken"]) == "1"
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(results.entries)
    assert root.find("./testsuite/properties/property[@name='backend']").get("value") == "sim"
    by_key = {(c.get("classname"), c.get("name")): c for c in cases}
    assert len(by_key) == len(cases), "testcase names must be unique"
    for entry in results.entries:
        case = by_key[(f"{SUITE}.{entry.scenario}", f"{entry.profile or 'own fleet'} r{entry.replication}")]
        float(case.get("time"))
        props = {p.get("name"): p.get("value") for p in case.findall("./properties/property")}
        assert props["profile"] == (entry.profile or "-") and props["backend"] == "sim"
        assert props["seed"] == str(entry.seed) and props["replication"] == str(entry.replication)
        assert props["image.base"] == "13.4.0"
        failures, errors = case.findall("failure"), case.findall("error")
        assert case.find("skipped") is None
        if entry.verdict == "passed":
            assert not failures and not errors
        elif entry.verdict == "failed":
            assert len(failures) == 1 and not errors
            assert "running an impossible version" in failures[0].get("message")
        else:
            assert len(errors) == 1 and not failures
            assert "injected harness fault" in errors[0].get("message")


def test_junit_and_html_show_the_controller_answers_per_status(suite: Any) -> None:
    results, out, _ = suite
    entry = _by_verdict(results)["passed"][0]
    answers = entry.metrics["controller"]["all"]["status"]
    assert answers.get("304", 0) > 0
    shown = " · ".join(f"{code} ×{n}" for code, n in answers.items())
    root = ET.parse(out / "junit.xml").getroot()
    outs = [c.findtext("system-out") or "" for c in root.iter("testcase")]
    assert any(f"controller answers: {shown} (" in text for text in outs)
    assert f"{shown} (" in (out / "report.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------- HTML --
def test_html_is_self_contained_with_matrix_plots_and_ci(suite: Any) -> None:
    results, out, _ = suite
    text = (out / "report.html").read_text(encoding="utf-8")
    matrix = re.search(r'<table class="matrix">.*?</table>', text, re.S)
    assert matrix, "no qualification matrix"
    for name in {e.scenario for e in results.entries} | {PROFILE_A, PROFILE_B}:
        assert f">{name}<" in matrix.group(0), name
    for verdict in ("passed", "failed", "broken"):
        assert f'class="cell {verdict}"' in matrix.group(0)
    assert len(re.findall(r'<img src="data:image/png;base64,', text)) >= 4
    assert "±" in text and "95 % confidence" in text
    # no reference to a network resource
    refs = re.findall(r'(?:src|href)\s*=\s*["\']?([^"\' >]+)', text, re.I)
    assert refs
    assert not [r for r in refs if re.match(r"(?:https?|wss?|ftp):|//", r, re.I)]
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", text, re.I)
    # every in-page link lands on an element
    ids = set(re.findall(r'\bid="([^"]+)"', text))
    assert all(ref[1:] in ids for ref in refs if ref.startswith("#"))
    # local links point at files that exist
    local = [r for r in refs if not r.startswith(("#", "data:"))]
    assert any(r.endswith("summary.json") for r in local)
    for ref in local:
        assert (out / ref).exists(), ref
    assert "injected harness fault" in text and "running an impossible version" in text
    for key in ("boot", "onboarding", "attestation time", "update duration"):
        assert f">{key}<" in text
    assert results.versions["eden"] in text and socket.gethostname() in text
    assert 'class="trend"' not in text  # no history given


def test_html_history_trend_next_to_each_cell(suite: Any, tmp_path: Path) -> None:
    results, out, _ = suite
    history = {
        ("onboarding-smoke", PROFILE_A): [
            {"started": f"2026-11-{d:02d}T00:00:00+00:00", "verdict": v, "timings": {}}
            for d, v in enumerate(["passed", "failed", "passed", "broken", "passed"], start=1)
        ]
    }
    from eden.reports.html import render_html

    text = render_html(results, history=history, plots={})
    matrix = re.search(r'<table class="matrix">.*?</table>', text, re.S).group(0)
    assert matrix.count('class="trend"') == len({e.key for e in results.entries})
    assert '<i class="failed"' in matrix and '<i class="broken"' in matrix and "60 % of 5" in matrix
    assert "no history" in matrix


# --------------------------------------------------------------------------------- Markdown --
def test_summary_md_has_counts_table_and_reasons(suite: Any) -> None:
    results, out, _ = suite
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert f"| scenario | {PROFILE_A} | {PROFILE_B} | own fleet |" in md
    assert re.search(r"^\|---\|---\|---\|---\|$", md, re.M)
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| scenario")]
    assert len(rows) == len({e.scenario for e in results.entries})
    assert "✅" in md and "❌" in md and "⚠️" in md
    assert "✅ 2 of 2" in md  # the two replications
    assert "5 passed" in md and "1 failed" in md and "1 broken" in md
    assert "running an impossible version: not met within 120s" in md
    assert "injected harness fault" in md
    assert "[report.html](report.html)" in md


# ---------------------------------------------------------------------- stats, slices, edges --
def test_t_quantiles_and_confidence_interval() -> None:
    assert t_quantile_975(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile_975(10) == pytest.approx(2.228, abs=1e-3)
    assert t_quantile_975(30) == pytest.approx(2.042, abs=1e-3)
    assert t_quantile_975(1000) == pytest.approx(1.96, abs=1e-3)
    assert all(t_quantile_975(d) > t_quantile_975(d + 1) for d in range(1, 30))
    ci = mean_ci([10.0, 12.0, 14.0])
    assert ci is not None and ci.mean == pytest.approx(12.0) and ci.stdev == pytest.approx(2.0)
    assert ci.half_width == pytest.approx(4.3027 * 2.0 / 3**0.5, rel=1e-4)
    assert ci.format(1) == "12.0 ± 5.0"
    single = mean_ci([3.0, None])
    assert single is not None and single.half_width is None and single.format(1) == "3.0"
    assert mean_ci([None]) is None


def test_timeline_slice_reads_the_columnar_form(tmp_path: Path) -> None:
    tl = Timeline()
    for i in range(400):
        tl.add(float(i), "device", f"dev-{i % 4}", "tick", {"n": i})
    tl.add(400.0, "harness", None, "step_stop", {"index": 1})
    tl.write_columnar(tmp_path / "events.npz")
    exp = {"name": "x", "where": "expect[0]", "line": 3, "status": "failed", "observed": {}, "deadline": 400.0,
           "met_at": None, "detail": {"why": "not met within 60s", "failing": {"dev-1": {}}}}
    text = timeline_slice(tmp_path, exp, end=400.0)
    lines = [ln for ln in text.splitlines() if re.match(r"\s+\d+\.\d{3}s", ln)]
    assert lines and all("dev-1" in ln or "step_stop" in ln for ln in lines)
    assert min(float(ln.split("s")[0]) for ln in lines) >= 280.0
    assert "n=397" in text and "step_stop" in text
    many = timeline_slice(tmp_path, {**exp, "detail": {}}, end=400.0, cap=50)
    assert "omitted (cap 50)" in many


def test_broken_entry_without_a_run_folder_renders(tmp_path: Path) -> None:
    entry = broken_entry(
        entry_id="x--qemu-x86_64--r0", suite="s", scenario="x", scenario_file="x.yaml", profile="qemu-x86_64",
        backend="sim", seed=1, replication=0, error="worker crashed (exit -9)",
    )
    results = SuiteResults(suite="s", backend="sim", started="2026-11-25T00:00:00+00:00", entries=[entry])
    paths = write_all(results, tmp_path)
    root = ET.parse(paths["junit"]).getroot()
    assert root.find("./testsuite/testcase/error").get("message") == "worker crashed (exit -9)"
    (result,) = _allure_results(paths["allure"])
    assert result["status"] == "broken" and "worker crashed" in result["statusDetails"]["message"]
    assert "worker crashed" in paths["html"].read_text(encoding="utf-8")
    assert "⚠️" in paths["markdown"].read_text(encoding="utf-8")


def test_console_capture_files_are_attached_as_text(suite: Any, tmp_path: Path) -> None:
    """Real backends list their console capture in ``entry.attachments``; it is attached as text."""
    import shutil

    from eden.reports.allure import write_allure

    results, out, _ = suite
    entry = results.entries[0]
    shutil.copytree(out / entry.run_dir, tmp_path / entry.run_dir)
    (tmp_path / entry.run_dir / "console-dut-0.log").write_text("EVE-OS booting\nlogin:\n", encoding="utf-8")
    one = results.model_copy(update={"entries": [entry.model_copy(update={"attachments": ["console-dut-0.log"]})]})
    folder = write_allure(one, tmp_path)
    (result,) = _allure_results(folder)
    consoles = [(a, p) for a, p in _attachments(folder, result) if a["name"] == "console-dut-0.log"]
    assert len(consoles) == 1 and consoles[0][0]["type"] == "text/plain"
    assert consoles[0][1].read_text(encoding="utf-8").startswith("EVE-OS booting")


def test_a_failed_pass_criterion_is_a_product_failure_everywhere(suite: Any, tmp_path: Path) -> None:
    """Suite pass criteria (e.g. "p95 onboarding <= 10 s") judged on a real run that passed."""
    import shutil

    from eden.reports.model import CriterionResult

    results, out, _ = suite
    passed = results.entries[0]
    shutil.copytree(out / passed.run_dir, tmp_path / passed.run_dir)
    summary = json.loads((tmp_path / passed.run_dir / "summary.json").read_text(encoding="utf-8"))
    run_info = json.loads((tmp_path / passed.run_dir / "run.json").read_text(encoding="utf-8"))
    p95 = passed.timings["onboarding.time"]["p95"]
    entry = entry_from_summary(
        summary, run_info, entry_id=passed.id, suite=SUITE, scenario_file=passed.scenario_file, profile=passed.profile,
        replication=0, run_dir=passed.run_dir, features=passed.features,
        criteria=[
            CriterionResult(name="all expectations pass", status="passed", observed="7/7"),
            CriterionResult(name="p95 onboarding <= 10 s", status="failed", observed=p95, why=f"{p95:.1f} s > 10 s"),
        ],
    )
    assert entry.run_verdict == "passed" and entry.verdict == "failed"
    paths = write_all(results.model_copy(update={"entries": [entry]}), tmp_path)
    (result,) = _allure_results(paths["allure"])
    assert result["status"] == "failed" and "criterion p95 onboarding <= 10 s" in result["statusDetails"]["message"]
    assert any(s["name"] == "pass criteria" and s["status"] == "failed" for s in result["steps"])
    case = ET.parse(paths["junit"]).getroot().find("./testsuite/testcase")
    assert case.find("failure") is not None and case.find("error") is None
    html_text = paths["html"].read_text(encoding="utf-8")
    assert "Pass criteria" in html_text and "p95 onboarding &lt;= 10 s" in html_text


# ------------------------------------------------------------------------- a newcomer's report --
def test_a_time_interval_from_two_replications_never_goes_below_zero() -> None:
    """Two replications give t = 12.7: 1 s and 9 s would be "5.0 ± 50.8", a time below -45 s."""
    wide = mean_ci([1.0, 9.0], lower=0.0)
    assert wide is not None and wide.too_small and wide.low is None and wide.half_width is None
    assert wide.mean == pytest.approx(5.0) and wide.format(1) == "5.0 (n=2 too small for a 95 % CI)"
    tight = mean_ci([10.0, 10.2], lower=0.0)
    assert tight is not None and not tight.too_small and tight.low is not None and tight.low >= 0.0
    assert mean_ci([1.0, 9.0]).low < 0  # unbounded quantities keep the plain t interval


def test_the_replication_table_shows_no_negative_time(suite: Any) -> None:
    _results, _out, paths = suite
    page = paths["html"].read_text(encoding="utf-8")
    section = page.split('id="replications"', 1)[1].split("</section>", 1)[0]
    cells = re.findall(r'<td class="num">(\[[^<]*\]|n too small)</td>', section)
    assert cells, section[:2000]
    assert not [c for c in cells if c.startswith("[-")], cells
    assert not re.search(r"(?<![\w.])-\d", re.sub(r"<[^>]+>", " ", section)), section


def test_criteria_show_their_units(tmp_path: Path) -> None:
    from eden.reports.html import render_html
    from eden.reports.model import CriterionResult
    from eden.suite.criteria import judge_threshold
    from eden.suite.model import Threshold

    summary = {"metrics": {"timings": {"onboarding.time": {"p95": 12.34}}, "counters": {}}, "verdict": "passed"}
    judged = judge_threshold(Threshold(metric="onboarding.time.p95", max=10.0), summary)
    assert (judged.status, judged.unit) == ("failed", "s")
    count = CriterionResult(name="devices.total >= 3", status="passed", observed=3)
    entry = broken_entry(entry_id="x--p--r0", suite="s", scenario="x", scenario_file="x.yaml", profile="p",
                         backend="sim", seed=1, replication=0, error="-")
    entry = entry.model_copy(update={"criteria": [judged, count]})
    page = render_html(SuiteResults(suite="s", backend="sim", started="", entries=[entry]), plots={})
    table = page.split("<h4>Pass criteria</h4>", 1)[1].split("</table>", 1)[0]
    assert '<td class="mono">12.3 s</td>' in table, table
    assert '<td class="mono">3</td>' in table


def test_the_timeline_slice_of_a_failed_expectation_is_in_the_html(suite: Any) -> None:
    results, _out, paths = suite
    page = paths["html"].read_text(encoding="utf-8")
    (failed,) = [e for e in results.entries if e.verdict == "failed"]
    from eden.reports.html import anchor

    body = page.split(f'id="{anchor(failed)}"', 1)[1]
    body = body.split('<details class="entry', 1)[0]
    assert "Timeline before &#x27;running an impossible version&#x27;" in body, body[:3000]
    slice_text = body.split('<pre class="mono slice">', 1)[1].split("</pre>", 1)[0]
    assert re.search(r"^\s+\d+\.\d{3}s  ", slice_text, re.M), slice_text  # event lines, not only the header
    (broken,) = [e for e in results.entries if e.verdict == "broken"]
    broken_body = page.split(f'id="{anchor(broken)}"', 1)[1].split('<details class="entry', 1)[0]
    assert "Timeline: the end of the run" in broken_body


def test_a_long_report_folds_what_needs_no_attention(suite: Any) -> None:
    """Passed entries are folded (their plots stay in the page); past ATTENTION_SHOWN entries the
    "Needs attention" list folds too; the header's navigation is the table of contents."""
    from eden.reports.html import ATTENTION_SHOWN, anchor, render_html

    results, _out, paths = suite
    page = paths["html"].read_text(encoding="utf-8")
    for e in results.entries:
        tag = re.search(rf'<details class="entry {e.verdict}" id="{re.escape(anchor(e))}"( open)?>', page)
        assert tag is not None and bool(tag.group(1)) == (e.verdict != "passed"), e.id
    nav = page.split("<nav>", 1)[1].split("</nav>", 1)[0]
    assert all(f'href="#{s}"' in nav for s in ("summary", "matrix", "attention", "timings", "entries", "environment"))
    (failed,) = [e for e in results.entries if e.verdict == "failed"]
    many = [failed.model_copy(update={"id": f"{failed.id}-{i}", "replication": i}) for i in range(ATTENTION_SHOWN + 3)]
    long_page = render_html(results.model_copy(update={"entries": many}), plots={})
    attention = long_page.split('id="attention"', 1)[1].split("</section>", 1)[0]
    assert attention.count("<li ") == ATTENTION_SHOWN + 3
    assert "<summary>3 more entries need attention</summary>" in attention


def test_plot_text_is_never_smaller_than_text_pt(suite: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.text import Text

    from eden.reports import plots

    results, _out, _ = suite
    figures: list[Any] = []
    real_png = plots._png
    monkeypatch.setattr(plots, "_png", lambda fig: figures.append(fig) or real_png(fig))
    for e in results.entries:
        plots.entry_plots(e)
    assert len(figures) >= 4
    sizes = [t.get_fontsize() for fig in figures for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert sizes and min(sizes) >= plots.TEXT_PT, sorted(set(sizes))
