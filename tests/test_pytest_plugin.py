"""The pytest plugin (eden.pytest_plugin), run with pytester on copies of the shipped scenarios."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"


def _copy(pytester: pytest.Pytester, name: str, dest: str | None = None, *, replace: tuple[str, str] | None = None, rename: str | None = None) -> Path:
    text = (SCENARIOS / f"{name}.yaml").read_text()
    if rename:
        text = text.replace(f"name: {name}\n", f"name: {rename}\n", 1)
    if replace:
        assert text.count(replace[0]) == 1
        text = text.replace(*replace)
    path = pytester.path / (dest or f"{rename or name}.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _allure_results(folder: Path) -> dict[str, dict[str, Any]]:
    results = [json.loads(p.read_text()) for p in folder.glob("*-result.json")]
    return {r["name"]: r for r in results}


def _params(result: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in result["parameters"]}


def _labels(result: dict[str, Any], name: str) -> list[str]:
    return [label["value"] for label in result["labels"] if label["name"] == name]


def test_only_scenario_files_are_collected(pytester: pytest.Pytester) -> None:
    _copy(pytester, "onboarding-smoke", "sc/onboarding-smoke.yaml")
    shutil.copy(ROOT / "hw_profiles/nuc-class.yaml", pytester.path / "sc/nuc-class.yaml")
    (pytester.path / "sc/suite.yaml").write_text("name: qualification\nscenarios: [onboarding-smoke]\n")
    (pytester.path / "sc/list.yml").write_text("- a\n- b\n")
    (pytester.path / "sc/broken.yaml").write_text("key: [unclosed\n")
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")

    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == 0
    ids = [line for line in result.outlines if "::" in line]
    assert ids == ["sc/onboarding-smoke.yaml::onboarding-smoke", "test_plain.py::test_plain"]

    result = pytester.runpytest("--collect-only", "-q", "--eden-profile", "nuc-class", "--eden-profile", "gateway-x86", "sc")
    ids = [line for line in result.outlines if "::" in line]
    assert ids == ["sc/onboarding-smoke.yaml::onboarding-smoke[nuc-class]", "sc/onboarding-smoke.yaml::onboarding-smoke[gateway-x86]"]


def test_profiles_seed_and_run_folders(pytester: pytest.Pytester) -> None:
    _copy(pytester, "onboarding-smoke")
    out = pytester.path / "runs"
    result = pytester.runpytest(
        "--eden-profile", "nuc-class", "--eden-profile", "gateway-x86", "--eden-seed", "7", "--eden-out", str(out), "-v"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*onboarding-smoke.yaml::onboarding-smoke[[]nuc-class[]] PASSED*", f"eden: run folders in {out}"])
    for profile in ("nuc-class", "gateway-x86"):
        summary = json.loads((out / f"onboarding-smoke--{profile}" / "summary.json").read_text())
        assert summary["profiles"] == [profile] and summary["seed"] == 7 and summary["verdict"] == "passed"


def test_bad_options_are_usage_errors(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--eden-backend", "boards")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*backend 'boards' is unknown*runnable: board, emulated, qemu, sim*"])
    result = pytester.runpytest("--eden-profile", "nuc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown profile nuc*"])


def test_failures_errors_allure_and_junit(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _copy(pytester, "onboarding-smoke")
    _copy(pytester, "baseos-update")
    _copy(pytester, "onboarding-smoke", rename="wrong-expect", replace=("boot_reason: FIRST", "boot_reason: FALLBACK"))
    _copy(pytester, "onboarding-smoke", rename="harness-fault")
    _copy(pytester, "onboarding-smoke", rename="bad-input", replace=("- power_on: {}", "- power_onn: {}"))
    monkeypatch.setenv("EDEN_INJECT_HARNESS_ERROR", "harness-fault")
    allure_dir, junit = pytester.path / "allure-results", pytester.path / "junit.xml"

    result = pytester.runpytest_subprocess(f"--alluredir={allure_dir}", f"--junitxml={junit}", "--eden-out", "runs")
    result.assert_outcomes(passed=2, failed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of scenario bad-input*",
            "*bad-input.yaml:*: error: unknown action 'power_onn'; did you mean 'power_on'?",
            "*ERROR at setup of scenario harness-fault*",
            "infrastructure error (broken: the product was not judged): injected harness fault*",
            "scenario wrong-expect failed (sim, seed 1): 1 of 6 expectations failed",
            "  FAILED first boot reported (expect[1], line 23)",
            '    observed: {"boot_reason": "FIRST"}',
            "    why: not met at the end of the run",
        ]
    )

    # JUnit: a failed expectation is a <failure>, a broken harness or bad input an <error>.
    cases = {tc.get("name"): tc for tc in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == {"onboarding-smoke", "baseos-update", "wrong-expect", "harness-fault", "bad-input"}
    kinds = {name: sorted(child.tag for child in tc if child.tag != "properties") for name, tc in cases.items()}
    assert kinds == {"onboarding-smoke": [], "baseos-update": [], "wrong-expect": ["failure"], "harness-fault": ["error"], "bad-input": ["error"]}
    props = {p.get("name"): p.get("value") for p in cases["baseos-update"].iter("property")}
    assert props["backend"] == "sim" and props["seed"] == "2" and props["profile"] == "-" and props["devices"] == "1"
    assert props["image.base"] == "13.4.0" and props["image.next"] == "13.5.0" and props["verdict"] == "passed"
    assert {p.get("name"): p.get("value") for p in cases["harness-fault"].iter("property")}["verdict"] == "broken"

    # Allure: statuses passed / failed / broken, never mixed.
    results = _allure_results(allure_dir)
    status = {name: r["status"] for name, r in results.items()}
    assert status == {"onboarding-smoke": "passed", "baseos-update": "passed", "wrong-expect": "failed", "harness-fault": "broken", "bad-input": "broken"}
    assert "injected harness fault" in results["harness-fault"]["statusDetails"]["message"]

    update = results["baseos-update"]
    names = [s["name"] for s in update["steps"]]
    assert names == [
        "power_on",
        "expect: device_state=ONLINE within 300s",
        "expect: attestation=COMPLETE within 120s",
        "baseos_update",
        "expect: device_state=BASEOS_UPDATING within 300s",
        "expect: current_partition={'state': 'inprogress', 'version': 'next'} within 600s",
        "expectations",
    ]
    assert [s["name"] for s in update["steps"][-1]["steps"]][:2] == ["expect: new image committed", "expect: reported UPDATED"]
    assert all(s["status"] == "passed" for s in update["steps"])
    step_params = {p["name"]: p["value"] for p in update["steps"][3]["parameters"]}
    assert step_params["devices"] == "1" and re.fullmatch(r"\d+s → \d+s", step_params["run clock"])
    start, stop = (float(t[:-1]) for t in step_params["run clock"].split(" → "))
    assert 0 < start == stop < 300  # simulated seconds, not wall time
    assert _params(update) == {"profile": "-", "backend": "sim", "seed": "2", "image base": "13.4.0", "image next": "13.5.0", "devices": "1"}
    assert _labels(update, "parentSuite") == ["sim"] and _labels(update, "suite") == ["eden"]
    assert _labels(update, "subSuite") == ["baseos-update"] and _labels(update, "story") == ["baseos-update"]
    assert {"update", "onboarding"} <= set(_labels(update, "feature")) and _labels(update, "host")
    attachments = {a["name"]: a for a in update["attachments"]}
    assert {"metrics.json", "summary.json", "scenario baseos-update.yaml"} <= set(attachments)
    metrics = json.loads((allure_dir / attachments["metrics.json"]["source"]).read_text())
    assert metrics["timings"]["update.duration"]["count"] == 1

    wrong = results["wrong-expect"]
    assert [s["status"] for s in wrong["steps"]] == ["passed", "passed", "passed", "failed"]
    failed = [s for s in wrong["steps"][-1]["steps"] if s["status"] != "passed"]
    assert [(s["name"], s["status"]) for s in failed] == [("expect: first boot reported", "failed")]
    assert "boot_reason=FIRST" in failed[0]["statusDetails"]["message"]
    assert "1 of 6 expectations failed" in wrong["statusDetails"]["message"]
    slice_ = next(a for a in wrong["attachments"] if a["name"] == "timeline around 'first boot reported'")
    text = (allure_dir / slice_["source"]).read_text()
    assert "first boot reported" in text and "booted" in text

    broken = results["harness-fault"]
    assert any(a["name"] == "timeline: end of the run" for a in broken["attachments"])
    assert _params(results["bad-input"]) == {"profile": "-", "backend": "sim"}  # filed with its parameters even though it never ran
    assert (pytester.path / "runs" / "harness-fault" / "summary.json").is_file()


def test_the_fleet_fixture_follows_the_options(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fleet="""
        def test_online(eden_fleet, eden_profile):
            fleet = eden_fleet(profile="qemu-x86_64", count=2)
            assert set(fleet.loaded.profiles) == {eden_profile}
            assert fleet.seed == 5
            fleet.power_on()
            assert fleet.wait_until({"device_state": "ONLINE"}, within="5m")

        def test_broken_input(eden_fleet):
            eden_fleet(profile="qemu-x86_64").apply("baseos_update", image="missing")
        """
    )
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest("--eden-profile", "nuc-class", "--eden-profile", "gateway-arm", "--eden-seed", "5", f"--junitxml={junit}", "-v")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*test_online[[]nuc-class[]] PASSED*", "*test_online[[]gateway-arm[]] PASSED*", "*unknown image 'missing'*"])
    cases = {tc.get("name"): tc for tc in ET.parse(junit).getroot().iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["test_online[gateway-arm]"].iter("property")}
    assert props == {"backend": "sim", "profile": "gateway-arm", "seed": "5", "image.base": "13.4.0"}


def test_fleet_calls_become_allure_steps(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fleet="""
        def test_update(eden_fleet):
            fleet = eden_fleet(profile="nuc-class", images={"base": "13.4.0", "next": "13.5.0"})
            fleet.power_on()
            fleet.wait_until({"device_state": "ONLINE"}, within="5m")
            fleet.apply("baseos_update", image="next")
            fleet.advance("10s")
            fleet.wait_until({"baseos_status": "UPDATED"}, within=20)
        """
    )
    allure_dir = pytester.path / "allure-results"
    result = pytester.runpytest_subprocess(f"--alluredir={allure_dir}")
    result.assert_outcomes(failed=1)
    res = _allure_results(allure_dir)["test_update"]
    assert res["status"] == "failed"
    steps = [(s["name"].split(" [")[0], s["status"]) for s in res["steps"]]
    assert steps == [
        ("power_on", "passed"),
        ("wait_until device_state=ONLINE within 300s", "passed"),
        ("baseos_update", "passed"),
        ("advance 10s", "passed"),
        ("wait_until baseos_status=UPDATED within 20s", "failed"),
    ]
    assert res["steps"][0]["name"] == "power_on [t=0s]"
    assert {"image": "next", "devices": "1"}.items() <= {p["name"]: p["value"] for p in res["steps"][2]["parameters"]}.items()
    assert _params(res) == {"profile": "nuc-class", "backend": "sim", "seed": "0", "image base": "13.4.0", "image next": "13.5.0"}
