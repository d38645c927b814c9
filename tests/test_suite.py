"""Suite files: validation with file:line:col, matrix expansion, profile substitution, criteria."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from eden_subprocess import argv as eden_argv
from eden_subprocess import env as eden_env

from eden.errors import InvalidInput
from eden.scenario.load import load_scenario
from eden.suite import OWN, load_entry, load_suite
from eden.suite.criteria import judge, metric_value
from eden.suite.model import Criteria, Threshold

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "scenarios"
SMOKE = SCENARIOS / "onboarding-smoke.yaml"
UPDATE = SCENARIOS / "baseos-update.yaml"
NETWORK = SCENARIOS / "network-outage-recovery.yaml"
ISSUE_RE = re.compile(r"^(?P<file>[^\s:]+):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>.+)$", re.M)
PROFILES = ["eve-qemu-x86_64", "gateway-arm", "gateway-x86", "nuc-class", "qemu-aarch64", "qemu-x86_64", "rpi4-class"]

PORTS = """\
name: ports
seed: 1
fleet:
  - profile: qemu-x86_64
    group: dut
images:
  base: {version: 13.4.0}
steps:
  - power_on: {}
  - expect: {device_state: ONLINE, within: 5m}
  - network_down: {ports: [eth1]}
expect:
  - {device_state: ONLINE, within: 5m}
"""


def _suite(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _issues(exc: InvalidInput) -> list[tuple[int, int, str, str]]:
    return [(i.line, i.col, i.message, i.hint or "") for i in exc.issues]


# ------------------------------------------------------------------------------ shipped suites


def test_shipped_qualification_suite_expands_every_single_device_scenario() -> None:
    ls = load_suite(REPO / "suites" / "qualification.yaml")
    assert ls.suite.replications == 2
    assert ls.profiles == PROFILES
    assert "controller-overload" not in ls.scenarios and "fleet-rollout-10k" not in ls.scenarios
    single = {p.stem for p in SCENARIOS.glob("*.yaml")} - {"controller-overload", "fleet-rollout-10k"}
    assert set(ls.scenarios) == single
    assert not [e.id for e in ls.entries if e.invalid]
    cells = {e.cell for e in ls.entries}
    assert ("app-deploy-resources", "gateway-arm") in cells
    assert not any(s == "app-deploy-resources" and p != "gateway-arm" for s, p in cells)
    assert ("attestation-tamper", "rpi4-class") not in cells
    assert all(x.reason.strip() for x in ls.excluded)
    excluded = {(x.scenario, x.profile) for x in ls.excluded}
    assert ("attestation-tamper", "rpi4-class") in excluded
    assert ("app-deploy-resources", "gateway-arm") not in excluded  # included again
    assert len(ls.entries) == 2 * len(cells)


def test_shipped_fleet_suite_keeps_its_own_fleets() -> None:
    ls = load_suite(REPO / "suites" / "fleet.yaml")
    assert [e.id for e in ls.entries] == ["controller-overload--own--r0", "fleet-rollout-10k--own--r0"]
    assert ls.profiles == [OWN]
    assert {t.metric for t in ls.suite.criteria.thresholds} == {"onboarding.time.p95", "controller.latency.p99"}
    assert all(e.profile is None for e in ls.entries)


# ------------------------------------------------------------------------------ matrix


def test_matrix_of_scenarios_profiles_and_replications(tmp_path: Path) -> None:
    path = _suite(
        tmp_path,
        f"""\
name: m
scenarios: [{SMOKE}, {UPDATE}]
profiles: [qemu-x86_64, rpi4-class]
replications: 3
""",
    )
    ls = load_suite(path)
    assert len(ls.entries) == 2 * 2 * 3
    first = ls.entries[0]
    assert first.id == "onboarding-smoke--qemu-x86_64--r0"
    smoke = [e for e in ls.entries if e.cell == ("onboarding-smoke", "rpi4-class")]
    assert [e.seed for e in smoke] == [1, 2, 3]  # scenario seed + r
    assert [e.replication for e in smoke] == [0, 1, 2]
    assert [e.seed for e in ls.entries if e.scenario == "baseos-update"][:3] == [2, 3, 4]
    assert len({e.id for e in ls.entries}) == len(ls.entries)
    assert all(re.fullmatch(r"[a-z0-9._-]+--[a-z0-9._-]+--r\d+", e.id) for e in ls.entries)
    assert "update" in first.features or "update" in ls.entries[-1].features


def test_explicit_seeds_and_seed_override(tmp_path: Path) -> None:
    ls = load_suite(_suite(tmp_path, f"name: s\nscenarios: [{SMOKE}]\nseeds: [10, 20]\n"))
    assert [(e.id, e.seed) for e in ls.entries] == [("onboarding-smoke--own--r0", 10), ("onboarding-smoke--own--r1", 20)]
    ls = load_suite(_suite(tmp_path, f"name: s\nscenarios: [{SMOKE}]\nreplications: 2\noverrides: {{seed: 100}}\n"))
    assert [e.seed for e in ls.entries] == [100, 101]


def test_globs_are_relative_to_the_suite_file(tmp_path: Path) -> None:
    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "a.yaml").write_text(SMOKE.read_text().replace("name: onboarding-smoke", "name: a"))
    (tmp_path / "sc" / "b.yaml").write_text(SMOKE.read_text().replace("name: onboarding-smoke", "name: b"))
    ls = load_suite(_suite(tmp_path, "name: g\nscenarios: [sc/*.yaml]\n"))
    assert ls.scenarios == ["a", "b"]


def test_exclude_and_include(tmp_path: Path) -> None:
    path = _suite(
        tmp_path,
        f"""\
name: ex
scenarios: [{SMOKE}, {UPDATE}, {NETWORK}]
profiles: all
exclude:
  - {{scenario: network-outage-recovery, reason: needs two management ports}}
  - {{scenario: "baseos-*", profile: rpi4-class, reason: slow SD card}}
  - {{profile: nuc-class, reason: no board in the lab}}
include:
  - {{scenario: network-outage-recovery, profile: gateway-x86}}
  - scenario: network-outage-recovery
    overrides: {{duration: 1h, config_items: {{timer.config.interval: 20}}}}
""",
    )
    ls = load_suite(path)
    cells = [e.cell for e in ls.entries]
    assert ("baseos-update", "rpi4-class") not in cells
    assert ("onboarding-smoke", "rpi4-class") in cells
    assert not any(p == "nuc-class" for _, p in cells)
    assert [c for c in cells if c[0] == "network-outage-recovery"] == [
        ("network-outage-recovery", "gateway-x86"),
        ("network-outage-recovery", OWN),
    ]
    reasons = {(x.scenario, x.profile): x.reason for x in ls.excluded}
    assert reasons[("baseos-update", "rpi4-class")] == "slow SD card"
    assert reasons[("onboarding-smoke", "nuc-class")] == "no board in the lab"
    assert ("network-outage-recovery", "gateway-x86") not in reasons
    own = next(e for e in ls.entries if e.cell == ("network-outage-recovery", OWN))
    assert own.id == "network-outage-recovery--own--r0"
    loaded = load_entry(own, "sim")
    assert loaded.scenario.duration == 3600
    assert loaded.scenario.controller.config_items["timer.config.interval"] == 20
    assert loaded.scenario.controller.config_items["network.fallback.any.eth"] == "enabled"  # merged, not replaced


def test_only_profiles_filters_the_matrix(tmp_path: Path) -> None:
    path = _suite(tmp_path, f"name: f\nscenarios: [{SMOKE}, {UPDATE}]\nprofiles: all\n")
    ls = load_suite(path, only_profiles=["rpi4-class"])
    assert {e.profile for e in ls.entries} == {"rpi4-class"} and len(ls.entries) == 2
    own = _suite(tmp_path, f"name: o\nscenarios: [{SMOKE}, {NETWORK}]\n", "own.yaml")
    assert [e.scenario for e in load_suite(own, only_profiles=["gateway-x86"]).entries] == ["network-outage-recovery"]
    with pytest.raises(InvalidInput) as info:
        load_suite(own, only_profiles=["rpi4-class"])
    assert "no entry of suite 'o' runs on rpi4-class" in str(info.value)


def test_profile_substitution_keeps_groups_and_overrides(tmp_path: Path) -> None:
    ld = load_scenario(NETWORK, fleet_profile="rpi4-class")
    assert {d.profile_name for d in ld.devices} == {"rpi4-class"}
    assert [d.id for d in ld.devices] == ["dut-0", "gw-0", "lr-0"]
    lr = ld.device("lr-0")
    assert lr is not None and [n.name for n in lr.profile.nics] == ["eth0", "eth1"]  # entry overrides kept
    gw = ld.device("gw-0")
    assert gw is not None and [n.name for n in gw.profile.nics] == ["eth0", "wlan0"]
    text = """\
name: nogroup
fleet:
  - {profile: qemu-x86_64, count: 2}
images:
  base: {version: 13.4.0}
  next:
    version: 13.5.0
    variants: [{profile: qemu-x86_64, fraction: 10%, behaviour: crash-on-boot}]
steps:
  - power_on: {}
    target: {profile: qemu-x86_64}
"""
    path = tmp_path / "nogroup.yaml"
    path.write_text(text)
    ld = load_scenario(path, fleet_profile="nuc-class")
    assert [d.id for d in ld.devices] == ["qemu-x86_64-0", "qemu-x86_64-1"]  # ids unchanged
    assert ld.scenario.steps[0].target.profile == "nuc-class"
    assert ld.scenario.images["next"].variants[0].profile == "nuc-class"


def test_an_entry_the_profile_cannot_run_is_invalid_not_the_suite(tmp_path: Path) -> None:
    (tmp_path / "ports.yaml").write_text(PORTS)
    ls = load_suite(_suite(tmp_path, "name: p\nscenarios: [ports.yaml]\nprofiles: [qemu-x86_64, rpi4-class]\n"))
    ok, bad = ls.entries
    assert ok.invalid is None
    assert bad.profile == "rpi4-class" and bad.invalid is not None
    assert "not valid on profile 'rpi4-class'" in bad.invalid
    assert f"{tmp_path / 'ports.yaml'}:11:28: error: no targeted device has a port 'eth1'" in bad.invalid
    assert "eth0, wlan0" in bad.invalid


# ------------------------------------------------------------------------------ errors


def test_an_unknown_override_key_is_a_warning(tmp_path: Path) -> None:
    # EVE reports an unknown configItem and ignores it (spec §6): the suite still runs.
    text = f"name: e\nscenarios: [{SMOKE}]\noverrides:\n  config_items: {{timer.config.intervl: 5}}\n"
    ls = load_suite(_suite(tmp_path, text))
    [warning] = ls.warnings
    assert (warning.line, warning.col, warning.severity) == (4, 18, "warning")
    assert "unknown config item 'timer.config.intervl'" in warning.message
    assert "timer.config.interval" in (warning.hint or "")


@pytest.mark.parametrize(
    "body, where, message, hint",
    [
        ("replication: 2\n", (3, 1), "replication", "replications"),
        ("profiles: [qemu-x86_64, rpi5]\n", (3, 25), "unknown hardware profile 'rpi5'", "known profiles"),
        ("profiles: [qemu-x86_64, qemu-x86-64]\n", (3, 25), "unknown hardware profile 'qemu-x86-64'", "did you mean 'qemu-x86_64'?"),
        ("exclude:\n  - {scenario: onboarding-smoke, profile: nuc-class}\n", (4, 5), "missing required key 'reason'", ""),
        ("profiles: [qemu-x86_64]\nexclude:\n  - {scenario: onboarding-smoke, profile: nuc-class, reason: r}\n", (5, 5), "matches no entry", "profiles qemu-x86_64"),
        ("exclude:\n  - {scenario: onboarding-smok, reason: r}\n", (4, 16), "no scenario of this suite is called 'onboarding-smok'", "did you mean 'onboarding-smoke'?"),
        ("exclude:\n  - {profile: nuc-klass, reason: r}\n", (4, 15), "unknown hardware profile 'nuc-klass'", "did you mean 'nuc-class'?"),
        ("include:\n  - {scenario: onboarding-smoke}\n", (4, 5), "is already in the matrix", "drop this include"),
        ("include:\n  - {scenario: nothing-here.yaml}\n", (4, 16), "unknown scenario 'nothing-here.yaml'", "onboarding-smoke"),
        ("criteria:\n  thresholds:\n    - {metric: onboarding.tim.p95, max: 60s}\n", (5, 16), "unknown metric 'onboarding.tim.p95'", "onboarding.time.p95"),
        ("criteria:\n  thresholds:\n    - {metric: onboarding.time, max: 60s}\n", (5, 16), "is a distribution", "onboarding.time.p95"),
        ("criteria:\n  thresholds:\n    - {metric: onboarding.time.p95}\n", (5, 7), "needs 'max' or 'min'", ""),
        ("overrides:\n  config_items: {timer.config.interval: 1}\n", (4, 41), "minimum is 5", ""),
        ("overrides: {duration: 5 parsecs}\n", (3, 23), "is not a duration", ""),
        ("replications: 0\n", (3, 15), "must be >= 1", ""),
        ("seeds: [1, -2]\n", (3, 12), "must be >= 0", ""),  # seeds feed numpy's SeedSequence
        ("overrides: {seed: -1}\n", (3, 19), "must be >= 0", ""),
        ("replications: 3\nseeds: [1, 2]\n", (3, 15), "2 seed(s)", "either 'replications' or 'seeds'"),
        ("backend: simm\n", (3, 10), "unknown backend 'simm'", "did you mean 'sim'?"),
        ("backend: boards\n", (3, 10), "unknown backend 'boards'", "did you mean 'board'?"),
    ],
)
def test_suite_errors_point_at_file_line_col(
    tmp_path: Path, body: str, where: tuple[int, int], message: str, hint: str
) -> None:
    path = _suite(tmp_path, f"name: e\nscenarios: [{SMOKE}]\n{body}")
    with pytest.raises(InvalidInput) as info:
        load_suite(path)
    issues = _issues(info.value)
    hits = [i for i in issues if message in i[2]]
    assert hits, issues
    line, col, _, got_hint = hits[0]
    assert (line, col) == where, issues
    assert hint in got_hint
    assert all(i.file == str(path) for i in info.value.issues)


def test_an_over_long_suite_name_is_refused(tmp_path: Path) -> None:
    """The name becomes the output folder's name (reports/<suite>-<time>)."""
    path = _suite(tmp_path, f"name: {'s' * 300}\nscenarios: [{SMOKE}]\n")
    with pytest.raises(InvalidInput) as info:
        load_suite(path)
    assert [(i[0], i[1]) for i in _issues(info.value)] == [(1, 7)]
    assert "at most 64 characters" in info.value.issues[0].message


def test_unknown_scenario_files_and_empty_globs(tmp_path: Path) -> None:
    path = _suite(
        tmp_path,
        f"name: e\nscenarios:\n  - {SCENARIOS}/onboarding-smok.yaml\n  - nowhere/*.yaml\n",
    )
    with pytest.raises(InvalidInput) as info:
        load_suite(path)
    text = str(info.value)
    lines = ISSUE_RE.findall(text)
    assert [(int(line), int(col)) for _, line, col, _ in lines] == [(3, 5), (4, 5)]
    assert "scenario file" in text and "not found" in text and "did you mean" in text and "onboarding-smoke.yaml" in text
    assert "no scenario file matches 'nowhere/*.yaml'" in text


def test_an_invalid_scenario_file_invalidates_the_suite(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text().replace("power_on", "powr_on"))
    with pytest.raises(InvalidInput) as info:
        load_suite(_suite(tmp_path, "name: e\nscenarios: [bad.yaml]\n"))
    assert any(i.file.endswith("bad.yaml") and "did you mean 'power_on'" in (i.message + (i.hint or "")) for i in info.value.issues)


def test_a_suite_without_entries_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        load_suite(_suite(tmp_path, f"name: e\nscenarios: [{SMOKE}]\nexclude: [{{scenario: onboarding-smoke, reason: r}}]\n"))
    assert "the suite has no entries" in str(info.value)


# ------------------------------------------------------------------------------ criteria

SUMMARY = {
    "verdict": "passed",
    "devices": 3,
    "simulated_seconds": 100.0,
    "expectations": [{"name": "a", "status": "passed"}, {"name": "b", "status": "passed"}],
    "metrics": {
        "timings": {"onboarding.time": {"count": 3, "p95": 42.0, "max": 50.0}, "update.duration": {"count": 0, "p95": None}},
        "counters": {"rollbacks": 2, "reboots": 5},
        "controller": {"all": {"p99": 0.2, "requests": 500, "rejected_503": 7}, "config": {"p99": 0.3}},
        "requested": {"controller.request_rate": 5.0, "onboarding.time": {"count": 3}},
    },
    "rollouts": [{"waves": [{"outcome": "passed", "succeeded": 10}, {"outcome": "failed", "succeeded": 3}]}],
}


@pytest.mark.parametrize(
    "name, value",
    [
        ("onboarding.time.p95", 42.0),
        ("update.duration.p95", None),
        ("rollbacks", 2),
        ("controller.latency.p99", 0.2),
        ("controller.latency.config.p99", 0.3),
        ("controller.requests", 500),
        ("controller.rejected_503", 7),
        ("controller.request_rate", 5.0),
        ("devices.total", 3),
        ("rollout.waves_completed", 1),
        ("rollout.devices_updated", 13),
    ],
)
def test_metric_lookup_in_a_stored_summary(name: str, value: object) -> None:
    assert metric_value(SUMMARY, name) == value


def test_thresholds_judge_a_summary() -> None:
    crit = Criteria(thresholds=[])
    results = judge(
        crit,
        [
            Threshold(metric="onboarding.time.p95", max="60s"),
            Threshold(metric="onboarding.time.max", max=45),
            Threshold(metric="update.duration.p95", max=10, name="update fast"),
            Threshold(metric="controller.rejected_503", min=10),
        ],
        SUMMARY,
    )
    assert [(r.name, r.status) for r in results] == [
        ("all expectations pass", "passed"),
        ("onboarding.time.p95 <= 1m", "passed"),
        ("onboarding.time.max <= 45s", "failed"),
        ("update fast", "failed"),
        ("controller.rejected_503 >= 10", "failed"),
    ]
    assert results[2].why == "50s > 45s" and results[2].observed == 50.0
    assert results[3].why == "not measured in this run"
    failing = dict(SUMMARY, verdict="failed", expectations=[{"name": "a", "status": "failed"}])
    assert judge(crit, [], failing)[0].why == "1 of 1 not met"
    assert judge(Criteria(all_expectations=False), [], failing) == []


def test_overrides_layer_suite_then_scenario_then_include(tmp_path: Path) -> None:
    path = _suite(
        tmp_path,
        f"""\
name: layers
overrides: {{seed: 50, duration: 2h, config_items: {{timer.config.interval: 30, timer.metric.interval: 120}}}}
scenarios:
  - file: {SMOKE}
    overrides: {{config_items: {{timer.config.interval: 20}}}}
profiles: [nuc-class]
include:
  - scenario: onboarding-smoke
    profile: rpi4-class
    overrides: {{seed: 7, config_items: {{timer.metric.interval: 90}}}}
""",
    )
    nuc, rpi = load_suite(path).entries
    assert (nuc.seed, rpi.seed) == (50, 7)
    assert dict(nuc.overrides) == {"duration": 7200.0, "config_items": {"timer.config.interval": 20, "timer.metric.interval": 120}}
    assert dict(rpi.overrides)["config_items"] == {"timer.config.interval": 20, "timer.metric.interval": 90}
    loaded = load_entry(rpi, "sim")
    assert loaded.scenario.duration == 7200 and {d.profile_name for d in loaded.devices} == {"rpi4-class"}


@pytest.mark.slow
def test_the_main_jobs_qualification_suite_passes_on_the_simulator(tmp_path: Path) -> None:
    """What ``scripts/main`` runs first: every single-device scenario on every hardware profile,
    twice. A shipped scenario that fails on some profile fails the main job (exit 1), so either
    it passes there or the suite excludes the cell with the reason."""
    out = tmp_path / "out"
    done = subprocess.run(
        eden_argv("qualify", str(REPO / "suites" / "qualification.yaml"), "--jobs", "1", "--out", str(out), "--no-history"),
        capture_output=True, text=True, timeout=900, env=eden_env(tmp_path), cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "qualification: PASSED" in done.stdout, done.stdout[-4000:]
    assert (out / "junit.xml").is_file()
