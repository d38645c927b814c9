"""``allure-results/``: one Allure test result per suite entry, written with allure-python-commons.

Every result is an ``allure_commons.model2.TestResult`` reported through ``AllureFileLogger``
(never hand-written JSON). Clocks: the test's start is the entry's wall-clock start
(``entry.started``) and its stop is start + wall seconds. The scenario's steps carry their times in
the run's own clock (simulated seconds on the simulator, seconds since the start on real
backends); they are mapped to epoch milliseconds as ``entry.started + t`` seconds, so on the
simulator a step may end after the test's wall-clock stop.

Status is exactly the entry's verdict: ``passed``, ``failed`` (product) or ``broken``
(harness / infrastructure). ``categories.json`` sorts them into "Product failures" and
"Infrastructure / harness errors".
"""

from __future__ import annotations

import json
import platform
import socket
from datetime import datetime, timezone
from pathlib import Path
from allure_commons.logger import AllureFileLogger
from allure_commons.model2 import (
    ATTACHMENT_PATTERN,
    Attachment,
    ExecutableItem,
    Label,
    Parameter,
    StatusDetails,
    TestResult,
    TestStepResult,
)
from allure_commons.types import AttachmentType, LabelType
from allure_commons.utils import md5, uuid4

from eden.reports.markdown import failed_expectations, failure_reasons, fmt_observed, fmt_value, profile_label, profile_of
from eden.reports.model import EntryResult, StepSummary, SuiteResults
from eden.reports.plots import PLOT_TITLES, entry_plots
from eden.reports.timeline_slice import tail_slice, timeline_slice

STEP_STATUS = {"passed": "passed", "failed": "failed", "skipped": "skipped", "interrupted": "broken", "pending": "skipped"}

CATEGORIES = [
    {
        "name": "Product failures",
        "description": "An expectation or a pass criterion failed: EVE did not do what the scenario expects.",
        "matchedStatuses": ["failed"],
    },
    {
        "name": "Infrastructure / harness errors",
        "description": "The harness, a backend or the infrastructure failed; the product was not judged.",
        "matchedStatuses": ["broken"],
    },
]

_OURS = ("-result.json", "-container.json", "-globals.json", "environment.properties", "categories.json", "executor.json")


def history_id_of(entry: EntryResult) -> str:
    """Stable across runs: md5 of suite|scenario|profile|replication."""
    return md5(f"{entry.suite}|{entry.scenario}|{profile_of(entry)}|{entry.replication}")


def case_id_of(entry: EntryResult) -> str:
    """Stable across runs and replications: md5 of scenario|profile."""
    return md5(f"{entry.scenario}|{profile_of(entry)}")


def epoch_ms(iso: str | None, fallback: int | None = None) -> int:
    """ISO 8601 (UTC if naive) to epoch milliseconds; ``fallback`` (or now) when unparsable."""
    if iso:
        try:
            dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            return int(round(dt.timestamp() * 1000))
        except ValueError:
            pass
    return fallback if fallback is not None else int(datetime.now(timezone.utc).timestamp() * 1000)


def _clock(base_ms: int, t: float | None) -> int:
    """The run's clock (seconds) to epoch ms: started + t."""
    return base_ms + int(round(float(t or 0.0) * 1000))


class _Writer:
    def __init__(self, logger: AllureFileLogger) -> None:
        self.logger = logger

    def attach(self, item: ExecutableItem, name: str, body: bytes | str, kind: AttachmentType) -> str:
        file_name = ATTACHMENT_PATTERN.format(prefix=uuid4(), ext=kind.extension)
        self.logger.report_attached_data(body=body, file_name=file_name)
        item.attachments.append(Attachment(name=name, source=file_name, type=kind.mime_type))
        return file_name

    def attach_file(self, item: ExecutableItem, name: str, source: Path, kind: AttachmentType) -> str:
        file_name = ATTACHMENT_PATTERN.format(prefix=uuid4(), ext=kind.extension)
        self.logger.report_attached_file(source=source, file_name=file_name)
        item.attachments.append(Attachment(name=name, source=file_name, type=kind.mime_type))
        return file_name


def _index(where: str) -> int:
    digits = "".join(ch for ch in where if ch.isdigit())
    return int(digits) if digits else 0


def _step_name(step: StepSummary) -> str:
    name = str(step.get("name") or step.get("action") or "step")
    expectation = (step.get("detail") or {}).get("expectation")
    return f"{name}: {expectation}" if expectation and expectation != name else name


def _steps(entry: EntryResult, base_ms: int) -> list[TestStepResult]:
    out = []
    for step in entry.steps:
        start = step.get("start")
        stop = step.get("stop")
        if stop is None:
            stop = start
        detail = step.get("detail") or {}
        status = STEP_STATUS.get(str(step.get("status")), "unknown")
        params = [Parameter(name="devices", value=str(step.get("devices", 0)))]
        if start is not None and stop is not None:  # stop is start when the step has none
            params.append(Parameter(name="run clock", value=f"{float(start):g}s → {float(stop):g}s"))
        details = None
        if status != "passed":
            why = detail.get("why") or step.get("status")
            observed = detail.get("observed")
            details = StatusDetails(message=f"{why}" + (f"; observed {fmt_value(observed)}" if observed is not None else ""))
        out.append(
            TestStepResult(
                name=_step_name(step),
                status=status,
                statusDetails=details,
                parameters=params,
                start=_clock(base_ms, start) if start is not None else base_ms,
                stop=_clock(base_ms, stop) if stop is not None else base_ms,
            )
        )
    final = sorted(
        (e for e in entry.expectations if str(e.get("where", "")).startswith("expect")),
        key=lambda e: _index(str(e.get("where", ""))),
    )
    if final:
        children = []
        for exp in final:
            at = exp.get("met_at") if exp.get("met_at") is not None else exp.get("deadline")
            if at is None:
                at = entry.simulated_seconds or 0.0
            ok = exp.get("status") == "passed"
            why = (exp.get("detail") or {}).get("why") or ("" if ok else "not met")
            children.append(
                TestStepResult(
                    name=f"expect: {exp.get('name', '?')}",
                    status=STEP_STATUS.get(str(exp.get("status")), "unknown"),
                    statusDetails=None if ok else StatusDetails(message=f"{why}; observed {fmt_value(exp.get('observed'))}"),
                    parameters=[
                        Parameter(name="where", value=f"{exp.get('where')} (line {exp.get('line')})"),
                        Parameter(name="observed", value=fmt_value(exp.get("observed"))),
                    ],
                    start=_clock(base_ms, at),
                    stop=_clock(base_ms, at),
                )
            )
        statuses = {c.status for c in children}
        out.append(
            TestStepResult(
                name="expectations",
                status="failed" if "failed" in statuses else ("skipped" if statuses == {"skipped"} else "passed"),
                steps=children,
                start=min(c.start for c in children),
                stop=max(c.stop for c in children),
            )
        )
    if entry.criteria:
        end = _clock(base_ms, entry.simulated_seconds or 0.0)
        crit = [
            TestStepResult(
                name=f"criterion: {c.name}",
                status=c.status,
                statusDetails=None if c.status == "passed" else StatusDetails(message=f"{c.why}; observed {fmt_observed(c)}"),
                start=end,
                stop=end,
            )
            for c in entry.criteria
        ]
        out.append(
            TestStepResult(
                name="pass criteria",
                status="failed" if any(c.status == "failed" for c in entry.criteria) else "passed",
                steps=crit,
                start=end,
                stop=end,
            )
        )
    return out


def _labels(entry: EntryResult, host: str) -> list[Label]:
    labels = [
        Label(name=LabelType.PARENT_SUITE, value=entry.backend),
        Label(name=LabelType.SUITE, value=entry.suite),
        Label(name=LabelType.SUB_SUITE, value=entry.scenario),
        Label(name=LabelType.HOST, value=host),
        Label(name=LabelType.FRAMEWORK, value="eden"),
        Label(name=LabelType.STORY, value=entry.scenario),
        Label(name=LabelType.TAG, value=profile_of(entry)),
        Label(name=LabelType.TAG, value=entry.backend),
    ]
    labels += [Label(name=LabelType.FEATURE, value=f) for f in entry.features]
    if entry.devices > 1:
        labels.append(Label(name=LabelType.TAG, value="fleet"))
    return labels


def _parameters(entry: EntryResult) -> list[Parameter]:
    params = [
        Parameter(name="profile", value=profile_of(entry)),
        Parameter(name="backend", value=entry.backend),
        Parameter(name="seed", value=str(entry.seed)),
        Parameter(name="replication", value=str(entry.replication)),
    ]
    params += [Parameter(name=f"image {name}", value=str(version)) for name, version in entry.versions.items()]
    if entry.devices:
        params.append(Parameter(name="devices", value=str(entry.devices)))
    return params


def _status_details(entry: EntryResult, run_dir: Path) -> StatusDetails | None:
    if entry.verdict == "passed":
        return None
    reasons = failure_reasons(entry)
    trace_lines = []
    for exp in failed_expectations(entry):
        trace_lines.append(
            f"{entry.scenario_file}:{exp.get('line', '?')}: {exp.get('where', '?')} {exp.get('name', '?')}\n"
            f"    detail: {json.dumps(exp.get('detail'), sort_keys=True, default=str)}\n"
            f"    met_at: {exp.get('met_at')}  deadline: {exp.get('deadline')}"
        )
    if entry.verdict == "broken":
        trace_lines.append(f"run verdict: {entry.run_verdict}; run folder: {run_dir}")
    return StatusDetails(message="\n".join(reasons), trace="\n".join(trace_lines) or None)


def _result(entry: EntryResult, writer: _Writer, run_dir: Path, host: str, plots: dict[str, bytes], fallback_ms: int) -> TestResult:
    start_ms = epoch_ms(entry.started, fallback_ms)
    stop_ms = start_ms + int(round(entry.wall_seconds * 1000))
    profile = profile_label(profile_of(entry))
    rep = f" #{entry.replication}" if entry.replication else ""
    description = (entry.description or entry.scenario) + (
        f"\n\nScenario file: {entry.scenario_file}. Backend {entry.backend}, seed {entry.seed}, "
        f"{entry.devices} device(s). Run folder: {entry.run_dir or '-'}."
    )
    if entry.error:
        description += f"\n\nError: {entry.error}"
    result = TestResult(
        uuid=uuid4(),
        historyId=history_id_of(entry),
        testCaseId=case_id_of(entry),
        name=f"{entry.scenario} [{profile}]{rep}",
        fullName=f"{entry.suite}.{entry.scenario}[{profile_of(entry)}][r{entry.replication}]",
        titlePath=[entry.suite, entry.scenario],
        description=description,
        status=entry.verdict,
        statusDetails=_status_details(entry, run_dir),
        stage="finished",
        start=start_ms,
        stop=stop_ms,
        labels=_labels(entry, host),
        parameters=_parameters(entry),
        steps=_steps(entry, start_ms),
    )
    has_run = run_dir.is_dir() and bool(entry.run_dir)
    for exp in failed_expectations(entry):
        text = timeline_slice(run_dir, exp, end=entry.simulated_seconds) if has_run else "(run folder missing)\n"
        writer.attach(result, f"timeline around '{exp.get('name', '?')}'", text, AttachmentType.TEXT)
    if entry.verdict == "broken" and has_run:
        writer.attach(result, "timeline: end of the run", tail_slice(run_dir, entry.simulated_seconds), AttachmentType.TEXT)
    if entry.metrics or entry.timings:
        body = json.dumps({"timings": entry.timings, "metrics": entry.metrics}, indent=2, sort_keys=True, default=str)
        writer.attach(result, "metrics.json", body, AttachmentType.JSON)
    for key, png in plots.items():
        writer.attach(result, PLOT_TITLES.get(key, key), png, AttachmentType.PNG)
    for name in entry.attachments:
        path = run_dir / name
        if path.is_file():
            writer.attach_file(result, name, path, AttachmentType.TEXT)
    return result


def _prop_escape(text: str, key: bool = False) -> str:
    out = str(text).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    if key:
        for ch in (" ", "=", ":", "#", "!"):
            out = out.replace(ch, "\\" + ch)
    return out


def environment(results: SuiteResults) -> dict[str, str]:
    """The run's environment (``environment.properties``): backend, host, python, versions, images."""
    env: dict[str, str] = {
        "suite": results.suite,
        "suite.file": results.suite_file or "-",
        "backend": results.backend,
        "host": results.host or socket.gethostname(),
        "platform": results.platform or platform.platform(),
        "python": results.python or platform.python_version(),
        "started": results.started,
        "wall.seconds": f"{results.wall_seconds:.1f}",
        "jobs": str(results.jobs),
        "command": results.command or "-",
        "entries": str(len(results.entries)),
    }
    if results.interrupted:
        env["interrupted"] = results.interrupted
    for pkg, version in sorted(results.versions.items()):
        env[f"version.{pkg}"] = version
    images: dict[str, set[str]] = {}
    for e in results.entries:
        for name, version in e.versions.items():
            images.setdefault(name, set()).add(str(version))
    for name, versions in sorted(images.items()):
        env[f"image.{name}"] = ", ".join(sorted(versions))
    profiles = sorted({profile_of(e) for e in results.entries})
    if profiles:
        env["profiles"] = ", ".join(profiles)
    return env


def write_allure(
    results: SuiteResults,
    out_dir: Path,
    *,
    base_dir: Path | None = None,
    plots: dict[str, dict[str, bytes]] | None = None,
) -> Path:
    """Write ``out_dir/allure-results/`` (results, attachments, environment.properties,
    categories.json, executor.json) and return that folder.

    ``base_dir`` is the folder entries' ``run_dir`` are relative to (default ``out_dir``);
    ``plots`` maps entry id -> plots (computed here when None). Earlier eden results in the folder
    are replaced; an Allure ``history/`` sub-folder is kept."""
    base_dir = Path(base_dir or out_dir)
    target = Path(out_dir) / "allure-results"
    if target.is_dir():
        for path in target.iterdir():
            if path.is_file() and (path.name.endswith(_OURS) or "-attachment." in path.name):
                path.unlink()
    logger = AllureFileLogger(str(target))
    writer = _Writer(logger)
    host = results.host or socket.gethostname()
    fallback_ms = epoch_ms(results.started)
    for entry in results.entries:
        entry_plot = plots.get(entry.id, {}) if plots is not None else entry_plots(entry)
        run_dir = base_dir / entry.run_dir if entry.run_dir else base_dir / "runs" / entry.id
        logger.report_result(_result(entry, writer, run_dir, host, entry_plot, fallback_ms))
    lines = [f"{_prop_escape(k, key=True)}={_prop_escape(v)}" for k, v in environment(results).items()]
    (target / "environment.properties").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (target / "categories.json").write_text(json.dumps(CATEGORIES, indent=2) + "\n", encoding="utf-8")
    executor = {
        "name": "eden",
        "type": "eden",
        "buildName": f"{results.suite} {results.started}".strip(),
        "reportName": f"eden qualification: {results.suite} ({results.backend})",
    }
    (target / "executor.json").write_text(json.dumps(executor, indent=2) + "\n", encoding="utf-8")
    return target
