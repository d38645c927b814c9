"""Run a suite: every matrix entry on a backend, in parallel processes when asked.

Each entry runs ``eden.run.execute`` into ``DIR/runs/<entry id>/`` (summary.json, run.json, event
log) and becomes an :class:`~eden.reports.model.EntryResult`, judged against the suite's pass
criteria. Failure classes are never mixed: an invalid entry, a worker exception or an
infrastructure error is *broken*; a failed expectation or criterion is *failed*.

:func:`run_suite` only runs; :func:`finish` stores ``results.json``, records the history and
renders every report (``eden.reports.render.write_all``).
"""

from __future__ import annotations

import json
import multiprocessing
import platform
import socket
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from eden.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK, InvalidInput, format_issues
from eden.reports.model import EntryResult, SuiteResults, broken_entry, entry_from_summary
from eden.suite.criteria import judge
from eden.suite.load import LoadedSuite, MatrixEntry, load_entry

RUNS = "runs"
HARNESS_ERROR_FILE = "harness-error.txt"
_RUN_FILES = {"summary.json", "run.json", "events.jsonl", "events.npz", "events.details.jsonl.gz"}

Progress = Callable[[EntryResult, int, int], None]
"""Called once per finished entry: (result, finished so far, total)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    from eden.run import _versions as harness_versions

    return harness_versions()


def run_entry(entry: MatrixEntry, backend: str, run_dir: str) -> dict[str, Any]:
    """Worker: load and run one entry into ``run_dir``; never raises (errors come back as data).

    Returns ``{"summary", "run_info"}`` or ``{"error", "started", "wall_seconds"}``."""
    started = _now()
    t0 = time.perf_counter()
    out = Path(run_dir)
    try:
        loaded = load_entry(entry, backend)
        from eden.run import execute

        result = execute(loaded, backend_name=backend, seed=entry.seed, out_dir=out)
        run_info = json.loads((out / "run.json").read_text(encoding="utf-8"))
        return {"summary": result.summary, "run_info": run_info}
    except InvalidInput as exc:
        error = f"invalid entry:\n{format_issues(exc.issues)}"
    except Exception as exc:  # noqa: BLE001 - anything the harness throws is a broken entry
        error = f"harness error: {type(exc).__name__}: {exc}"
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / HARNESS_ERROR_FILE).write_text(traceback.format_exc(), encoding="utf-8")
        except OSError:
            pass
    return {"error": error, "started": started, "wall_seconds": round(time.perf_counter() - t0, 3)}


def _scenario_file(path: str) -> str:
    """The scenario file as shown in reports: relative to the working folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _attachments(run_dir: Path) -> list[str]:
    if not run_dir.is_dir():
        return []
    files = [p.name for p in run_dir.iterdir() if p.is_file() and p.name not in _RUN_FILES]
    logs = run_dir / "logs"  # real backends: controller, agent and console logs
    if logs.is_dir():
        files += [f"logs/{p.name}" for p in logs.iterdir() if p.is_file()]
    return sorted(files)


def entry_result(ls: LoadedSuite, entry: MatrixEntry, outcome: dict[str, Any] | None, out_dir: Path) -> EntryResult:
    """Turn one worker outcome into the entry's result, judged against the suite's criteria."""
    rel = f"{RUNS}/{entry.id}"
    common = dict(
        entry_id=entry.id,
        suite=ls.suite.name,
        scenario_file=_scenario_file(entry.file),
        profile=entry.profile,
        replication=entry.replication,
    )
    if entry.invalid is not None or outcome is None or "error" in outcome:
        error = entry.invalid or (outcome or {}).get("error") or "the entry did not run"
        result = broken_entry(
            **common,
            scenario=entry.scenario,
            backend=ls.backend,
            seed=entry.seed,
            error=error,
            started=(outcome or {}).get("started", ""),
            wall_seconds=float((outcome or {}).get("wall_seconds", 0.0)),
        )
        result.features = list(entry.features)
        if (out_dir / rel).is_dir():
            result.run_dir = rel
            result.attachments = _attachments(out_dir / rel)
        return result
    summary = outcome["summary"]
    criteria = []
    if summary.get("verdict") != "error":
        criteria = judge(ls.suite.criteria, ls.thresholds_for(entry), summary)
    result = entry_from_summary(
        summary,
        outcome["run_info"],
        **common,
        run_dir=rel,
        features=list(entry.features),
        criteria=criteria,
        attachments=_attachments(out_dir / rel),
    )
    if not ls.suite.criteria.all_expectations and result.verdict == "failed" and result.run_verdict == "failed":
        # Only the thresholds decide: expectations are informative here.
        result.verdict = "failed" if any(c.status == "failed" for c in criteria) else "passed"
    return result


def run_suite(
    ls: LoadedSuite,
    out_dir: Path,
    *,
    jobs: int = 1,
    progress: Progress | None = None,
    command: str = "",
) -> SuiteResults:
    """Run every entry of ``ls`` into ``out_dir/runs/`` and collect the results in matrix order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUNS).mkdir(exist_ok=True)
    started = _now()
    t0 = time.perf_counter()
    total = len(ls.entries)
    results: dict[str, EntryResult] = {}

    def done(entry: MatrixEntry, outcome: dict[str, Any] | None) -> None:
        result = entry_result(ls, entry, outcome, out_dir)
        results[entry.id] = result
        if progress is not None:
            progress(result, len(results), total)

    runnable = [e for e in ls.entries if e.invalid is None]
    for e in ls.entries:
        if e.invalid is not None:
            done(e, None)
    if jobs <= 1 or len(runnable) <= 1:
        for e in runnable:
            done(e, run_entry(e, ls.backend, str(out_dir / RUNS / e.id)))
    else:
        _run_parallel(ls, runnable, out_dir, jobs, done)
    finished = _now()
    return SuiteResults(
        suite=ls.suite.name,
        description=ls.suite.description,
        suite_file=_scenario_file(str(ls.path)),
        backend=ls.backend,
        started=started,
        finished=finished,
        wall_seconds=round(time.perf_counter() - t0, 3),
        jobs=max(1, jobs),
        host=socket.gethostname(),
        platform=platform.platform(),
        python=sys.version.split()[0],
        versions=_versions(),
        command=command or " ".join(sys.argv),
        entries=[results[e.id] for e in ls.entries],
        excluded=[{"scenario": x.scenario, "profile": x.profile, "reason": x.reason} for x in ls.excluded],
    )


def _run_parallel(
    ls: LoadedSuite,
    entries: list[MatrixEntry],
    out_dir: Path,
    jobs: int,
    done: Callable[[MatrixEntry, dict[str, Any] | None], None],
) -> None:
    """Run ``entries`` in ``jobs`` spawned worker processes; a dead worker makes its entries broken."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(entries)), mp_context=context) as pool:
        futures: dict[Future[dict[str, Any]], MatrixEntry] = {
            pool.submit(run_entry, e, ls.backend, str(out_dir / RUNS / e.id)): e for e in entries
        }
        try:
            for future in as_completed(futures):
                entry = futures[future]
                try:
                    outcome = future.result()
                except BrokenProcessPool as exc:
                    outcome = {"error": f"harness error: the worker process died ({exc})"}
                except Exception as exc:  # noqa: BLE001 - e.g. a result that does not unpickle
                    outcome = {"error": f"harness error: {type(exc).__name__}: {exc}"}
                done(entry, outcome)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def exit_code(results: SuiteResults) -> int:
    """0 all passed, 1 a product failure, 2 any broken entry (invalid input or infrastructure)."""
    verdict = results.verdict
    return {"passed": EXIT_OK, "failed": EXIT_FAILED}.get(verdict, EXIT_INVALID)


def finish(results: SuiteResults, out_dir: Path, db: Path | None) -> tuple[dict[str, Path], str | None]:
    """Store ``results.json``, record the run in the history ``db`` and render every report.

    Returns (report name -> path, a history problem or None). A history database that cannot be
    written does not lose the reports."""
    paths: dict[str, Path] = {"results": results.save(out_dir)}
    history_problem: str | None = None
    trend_data: dict[Any, Any] | None = None
    if db is not None:
        from eden import history

        try:
            history.record(results, out_dir, db)
            trend_data = history.trends(db, keys={e.key for e in results.entries})
        except Exception as exc:  # noqa: BLE001 - sqlite3 errors, a read-only disk ...
            history_problem = f"could not record the run in {db}: {exc}"
    paths.update(render(results, out_dir, trend_data))
    return paths, history_problem


def render(results: SuiteResults, out_dir: Path, history: Any = None) -> dict[str, Path]:
    """Every report (Allure results, JUnit, HTML, Markdown) from stored results."""
    from eden.reports.render import write_all

    return dict(write_all(results, out_dir, history=history))


def default_out_dir(suite: str) -> Path:
    """``reports/<suite>-<timestamp>``, never an existing folder."""
    from eden.run import default_out_dir as run_default

    return run_default(suite)


__all__ = [
    "HARNESS_ERROR_FILE",
    "RUNS",
    "entry_result",
    "exit_code",
    "finish",
    "render",
    "run_entry",
    "run_suite",
]
