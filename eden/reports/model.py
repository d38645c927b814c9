"""The stored results of a suite run: what every report (Allure, JUnit, HTML, Markdown) is cut from.

``eden qualify`` writes ``DIR/results.json`` (a :class:`SuiteResults`) next to one run folder per
entry (``DIR/runs/<entry id>/`` with that run's ``summary.json``, ``run.json`` and event log).
``eden report DIR`` re-renders every report from these files alone, so reports never need the
backend again. Backend-neutral: a QEMU or board run fills the same fields (``console`` files are
listed in ``attachments``).

Failure classes are never mixed:

* ``failed`` - the product did not do what was expected (an expectation or a pass criterion failed);
* ``broken`` - the harness or the infrastructure failed (backend crash, harness timeout, lost
  console, invalid entry), so the product was not judged;
* ``passed``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import CoreSchema

from eden.verdicts import EntryVerdict, RunVerdict, entry_verdict

if TYPE_CHECKING:
    from eden.scenario.model import Scenario

KEY_TIMINGS = ("boot.time", "onboarding.time", "update.duration", "rollback.time", "reconnect.time", "attestation.time")
"""The per-entry key timings every report shows (seconds; stats as in summary.json)."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- the records of summary.json as results.json keeps them ----------------------------------------
# Keys are optional (``total=False``): the readers use ``.get`` so that older or partial files render.


class TimingStats(TypedDict, total=False):
    """One timing's statistics (seconds), as ``summary.json``'s ``metrics.timings`` holds them."""

    count: int
    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    min: float | None
    max: float | None


class ExpectationRecord(TypedDict, total=False):
    """One expectation's result (``eden.runner.ExpectationResult`` as a dict)."""

    name: str
    where: str
    """``expect[3]`` or ``steps[5]``."""
    line: int | str
    """The scenario line; ``"-"`` in the stand-in record of a tail slice."""
    status: str
    observed: object
    detail: dict[str, object]
    met_at: float | None
    deadline: float | None


class StepSummary(TypedDict, total=False):
    """One step's record (``eden.runner.StepRecord`` as a dict); times in the run's clock."""

    index: int
    action: str
    name: str
    devices: int
    start: float | None
    stop: float | None
    status: str
    detail: dict[str, object]


class WaveRecord(TypedDict, total=False):
    """One rollout wave."""

    wave: int
    devices: int
    start: float
    stop: float | None
    succeeded: int
    failed: int
    timed_out: int
    outcome: str


class RolloutRecord(TypedDict, total=False):
    """One rollout (``eden.runner.RolloutState`` as a dict, without ``resume``)."""

    image: str
    version: str
    devices: int
    state: str
    waves: list[WaveRecord]


class ControllerSeries(TypedDict, total=False):
    """The controller's per-step totals in ``series.controller`` (plus ``<kind>_requests`` columns)."""

    step: float
    requests: list[float]
    rejected: list[float]
    logs_requests: list[float]
    latency_sum: list[float]
    latency_max: list[float]


class Series(TypedDict, total=False):
    """``summary.json``'s series block: time series for plots (devices per state / version, load)."""

    step: float
    t: list[float]
    connected: list[int]
    powered: list[int]
    by_state: dict[str, list[int]]
    by_version: dict[str, list[int]]
    controller: ControllerSeries
    rollbacks: list[float]


class ExcludedCell(TypedDict):
    """A matrix cell a suite left out on purpose."""

    scenario: str
    profile: str | None
    reason: str


class Metrics(TypedDict, total=False):
    """``summary.json``'s metrics block (``eden.metrics.all_metrics``)."""

    timings: dict[str, TimingStats]
    counters: dict[str, int]
    devices: dict[str, object]
    controller: dict[str, dict[str, object]]
    """``all`` and one entry per request kind: requests, rejected_503, latency stats."""
    requested: dict[str, object]
    """The metrics the scenario listed, by name (a number, or a breakdown)."""


class RunSummary(TypedDict, total=False):
    """``summary.json`` as the reports read it (written by ``eden.run.build_summary``)."""

    schema: int
    scenario: str
    description: str
    file: str
    backend: str
    seed: int
    verdict: RunVerdict
    devices: int
    images: dict[str, str]
    profiles: list[str]
    error: str
    simulated_seconds: float | None
    expectations: list[ExpectationRecord]
    steps: list[StepSummary]
    rollouts: list[RolloutRecord]
    metrics: Metrics
    series: Series


class RunInfo(TypedDict, total=False):
    """The part of ``run.json`` (wall-clock facts of one run) that the reports read."""

    scenario: str
    file: str
    backend: str
    seed: int
    started: str
    wall_seconds: float
    places: NotRequired[dict[str, str]]
    """The board backend: device id -> lab place."""


class _AsStored:
    """Pydantic metadata: validate and dump the field as the loose JSON shape ``loose`` - values kept
    exactly as stored (ints stay ints, extra keys stay) - while type checkers see the record type."""

    def __init__(self, loose: object) -> None:
        self.loose = loose

    def __get_pydantic_core_schema__(self, source: object, handler: GetCoreSchemaHandler) -> CoreSchema:
        return handler.generate_schema(self.loose)


_RECORDS = _AsStored(list[dict[str, object]])


class CriterionResult(Model):
    """One suite pass criterion judged on one entry."""

    name: str
    status: Literal["passed", "failed"]
    observed: object = None
    why: str = ""
    unit: str = ""
    """The unit of ``observed``: ``s`` for durations, ``req/s``, or empty (a count, a ratio)."""


class EntryResult(Model):
    id: str
    """Unique within the suite run, safe as a folder name: ``<scenario>--<profile>--r<n>``."""
    suite: str
    scenario: str
    scenario_file: str
    description: str = ""
    profile: str | None = None
    """The matrix profile substituted into the fleet; None when the scenario keeps its own fleet."""
    backend: str
    seed: int
    replication: int = 0
    verdict: EntryVerdict
    run_verdict: RunVerdict | None = None
    """What ``eden run`` said for this entry (before the suite's pass criteria)."""
    error: str | None = None
    """Why the entry is broken (infrastructure / harness), when it is."""
    features: list[str] = Field(default_factory=list)
    """Capabilities exercised: onboarding, update, attestation, network, apps, power, controller, rollout."""
    versions: dict[str, str] = Field(default_factory=dict)
    """Image name -> version."""
    devices: int = 0
    started: str = ""
    """Wall-clock start, ISO 8601 UTC."""
    wall_seconds: float = 0.0
    simulated_seconds: float | None = None
    run_dir: str = ""
    """The entry's run folder, relative to the suite output folder."""
    places: dict[str, str] = Field(default_factory=dict)
    """The board backend: device id -> the lab place it ran on (history tells flaky boards from flaky scenarios)."""
    expectations: Annotated[list[ExpectationRecord], _RECORDS] = Field(default_factory=list)
    """As in summary.json: name, where, line, status, observed, detail, met_at, deadline."""
    steps: Annotated[list[StepSummary], _RECORDS] = Field(default_factory=list)
    """As in summary.json: index, action, name, devices, start, stop, status, detail (times in the
    run's clock: simulated seconds on the simulator, seconds since the start on real backends)."""
    criteria: list[CriterionResult] = Field(default_factory=list)
    timings: Annotated[dict[str, TimingStats], _AsStored(dict[str, dict[str, object]])] = Field(default_factory=dict)
    """KEY_TIMINGS -> {count, mean, p50, p95, p99, min, max} (values may be None)."""
    metrics: Annotated[Metrics, _AsStored(dict[str, object])] = Field(default_factory=lambda: Metrics())
    """summary.json's metrics block."""
    series: Annotated[Series | None, _AsStored(dict[str, object] | None)] = None
    """summary.json's series block (time series for plots), when the backend recorded one."""
    rollouts: Annotated[list[RolloutRecord], _RECORDS] = Field(default_factory=list)
    attachments: list[str] = Field(default_factory=list)
    """Extra files in run_dir worth attaching (e.g. console capture on real backends)."""

    @property
    def key(self) -> tuple[str, str]:
        """(scenario, profile) - the matrix cell this entry belongs to."""
        return self.scenario, self.profile or "-"


class SuiteResults(Model):
    suite: str
    description: str = ""
    suite_file: str = ""
    backend: str
    started: str
    finished: str = ""
    wall_seconds: float = 0.0
    jobs: int = 1
    host: str = ""
    platform: str = ""
    python: str = ""
    versions: dict[str, str] = Field(default_factory=dict)
    command: str = ""
    entries: list[EntryResult] = Field(default_factory=list)
    excluded: Annotated[list[ExcludedCell], _RECORDS] = Field(default_factory=list)
    """Matrix cells left out on purpose: {scenario, profile, reason}."""
    interrupted: str = ""
    """The signal that stopped the suite before its end (``SIGINT``, ``SIGTERM``), or empty."""

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "broken": 0}
        for e in self.entries:
            out[e.verdict] += 1
        return out

    @property
    def verdict(self) -> EntryVerdict:
        c = self.counts()
        if c["broken"]:
            return "broken"
        if c["failed"]:
            return "failed"
        return "passed"

    def save(self, out_dir: Path) -> Path:
        path = out_dir / "results.json"
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, out_dir: Path) -> "SuiteResults":
        path = Path(out_dir) / "results.json"
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))


FEATURES = {
    "baseos_update": "update",
    "retry_update": "update",
    "force_fallback": "update",
    "rollout": "rollout",
    "resume_rollout": "rollout",
    "tamper": "attestation",
    "request_attestation": "attestation",
    "network_down": "network",
    "network_up": "network",
    "network_flap": "network",
    "deploy_app": "apps",
    "remove_app": "apps",
    "power_on": "power",
    "power_off": "power",
    "power_cycle": "power",
    "reboot": "power",
    "shutdown": "power",
    "graceful_poweroff": "power",
    "controller_outage": "controller",
    "controller_503": "controller",
    "controller_hang": "controller",
    "refuse_device_certs": "attestation",
    "controller_restore": "controller",
    "set_config": "config",
    "maintenance_mode": "config",
    "hang": "watchdog",
    "crash": "watchdog",
}


def features_of(scenario: Scenario) -> list[str]:
    """The capabilities a scenario exercises (Allure ``feature`` labels), sorted."""
    found = {"onboarding"}
    for item in list(scenario.steps) + list(scenario.faults):
        feature = FEATURES.get(item.action)
        if feature:
            found.add(feature)
    for exp in scenario.expect:
        if exp.attestation is not None or exp.maintenance_mode is not None:
            found.add("attestation")
        if exp.app is not None:
            found.add("apps")
        if exp.connected is not None:
            found.add("network")
    if scenario.device_count >= 10:
        found.add("fleet")
    return sorted(found)


def entry_from_summary(
    summary: RunSummary,
    run_info: RunInfo,
    *,
    entry_id: str,
    suite: str,
    scenario_file: str,
    profile: str | None,
    replication: int,
    run_dir: str,
    features: list[str],
    criteria: list[CriterionResult] | None = None,
    attachments: list[str] | None = None,
) -> EntryResult:
    """Build an :class:`EntryResult` from one run's summary.json and run.json contents.

    The suite verdict is ``broken`` when the run was an infrastructure error, ``failed`` when an
    expectation or a criterion failed, else ``passed``."""
    criteria = criteria or []
    run_verdict = summary.get("verdict")
    verdict = entry_verdict(run_verdict, criteria_failed=any(c.status == "failed" for c in criteria))
    timings = (summary.get("metrics") or Metrics()).get("timings") or {}
    return EntryResult(
        id=entry_id,
        suite=suite,
        scenario=summary.get("scenario", ""),
        scenario_file=scenario_file,
        description=summary.get("description", ""),
        profile=profile,
        backend=summary.get("backend", run_info.get("backend", "")),
        seed=int(summary.get("seed", run_info.get("seed", 0))),
        replication=replication,
        verdict=verdict,
        run_verdict=run_verdict,
        error=summary.get("error"),
        features=features,
        versions=summary.get("images", {}),
        devices=int(summary.get("devices", 0)),
        started=run_info.get("started", ""),
        wall_seconds=float(run_info.get("wall_seconds", 0.0)),
        simulated_seconds=summary.get("simulated_seconds"),
        run_dir=run_dir,
        places=dict(run_info.get("places") or {}),
        expectations=summary.get("expectations", []),
        steps=summary.get("steps", []),
        criteria=criteria,
        timings={k: timings[k] for k in KEY_TIMINGS if k in timings},
        metrics=summary.get("metrics", Metrics()),
        series=summary.get("series"),
        rollouts=summary.get("rollouts", []),
        attachments=attachments or [],
    )


def broken_entry(
    *,
    entry_id: str,
    suite: str,
    scenario: str,
    scenario_file: str,
    profile: str | None,
    backend: str,
    seed: int,
    replication: int,
    error: str,
    started: str = "",
    wall_seconds: float = 0.0,
) -> EntryResult:
    """An entry that never produced a summary (invalid entry, worker crash): broken."""
    return EntryResult(
        id=entry_id,
        suite=suite,
        scenario=scenario,
        scenario_file=scenario_file,
        profile=profile,
        backend=backend,
        seed=seed,
        replication=replication,
        verdict="broken",
        run_verdict="error",
        error=error,
        started=started,
        wall_seconds=wall_seconds,
    )
