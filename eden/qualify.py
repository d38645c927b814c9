"""Run a suite: every matrix entry on a backend, in parallel processes when asked.

Each entry runs ``eden.run.execute`` into ``DIR/runs/<entry id>/`` (summary.json, run.json, event
log) and becomes an :class:`~eden.reports.model.EntryResult`, judged against the suite's pass
criteria. Failure classes are never mixed: an invalid entry, a worker exception or an
infrastructure error is *broken*; a failed expectation or criterion is *failed*.

:func:`run_suite` only runs; :func:`finish` stores ``results.json``, records the history and
renders every report (``eden.reports.render.write_all``).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.synchronize
import os
import platform
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict, cast

from eden.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK, InvalidInput, format_issues
from eden.interrupt import STOP_SIGNALS, raise_interrupted, signame_of
from eden.reports.model import EntryResult, RunInfo, RunSummary, SuiteResults, broken_entry, entry_from_summary
from eden.runtime.deadline import Deadline
from eden.suite.criteria import judge
from eden.suite.load import LoadedSuite, MatrixEntry, load_entry

if TYPE_CHECKING:
    from eden.reports.html import History  # the reports (and matplotlib) load only when rendering
    import multiprocessing.sharedctypes

RUNS = "runs"
HARNESS_ERROR_FILE = "harness-error.txt"
_RUN_FILES = {"summary.json", "run.json", "events.jsonl", "events.npz", "events.details.jsonl.gz"}

Progress = Callable[[EntryResult, int, int], None]
"""Called once per finished entry: (result, finished so far, total)."""

STOP_GRACE = 180.0
"""Seconds an interrupted suite waits for its running entries to clean up before killing them."""

class Outcome(TypedDict, total=False):
    """What a worker hands back for one entry: ``summary`` and ``run_info`` when it ran, else ``error``
    (with ``started`` and ``wall_seconds``); ``interrupted`` names the signal that stopped it."""

    summary: RunSummary
    run_info: RunInfo
    error: str
    started: str
    wall_seconds: float
    interrupted: str


_STOP: multiprocessing.synchronize.Event | None = None
"""In a worker process: the suite's stop event (set once the suite is interrupted); None elsewhere."""


@dataclass(frozen=True)
class _Turns:
    """``--stagger`` across the worker processes: the staggered entries start in order, each at
    least ``stagger`` seconds after the one before it actually started. A delay counted from each
    worker's own start would not do that: two workers that come up seconds apart on a busy host
    start their entries at the same moment."""

    stagger: float
    next_turn: "multiprocessing.sharedctypes.Synchronized[int]"
    not_before: "multiprocessing.sharedctypes.Synchronized[float]"

    def wait(self, turn: int, stop: multiprocessing.synchronize.Event) -> bool:
        """Block until it is ``turn``'s go; False when the suite is stopped meanwhile. An earlier
        turn that never comes (its worker died before taking it) holds the others up for at most
        :data:`TURN_GRACE` seconds past their schedule."""
        give_up = time.monotonic() + (turn + 1) * self.stagger + TURN_GRACE
        while True:
            with self.next_turn.get_lock():
                now = time.time()
                late = time.monotonic() >= give_up
                if (self.next_turn.value == turn and now >= self.not_before.value) or late:
                    self.next_turn.value = max(self.next_turn.value, turn + 1)
                    self.not_before.value = now + self.stagger
                    return True
            if stop.wait(0.05):
                return False


TURN_GRACE = 60.0
"""Seconds a staggered entry waits past its schedule for the turns before it (see :class:`_Turns`)."""


_TURNS: _Turns | None = None
"""In a worker process of a staggered suite: the shared turns; None elsewhere."""


def _worker_init(stop: multiprocessing.synchronize.Event, turns: _Turns | None = None) -> None:
    """Worker start-up. An idle worker ignores stop signals: the terminal's Ctrl-C reaches the whole
    process group, and a worker dying between entries would break the pool (whose reaction is to
    kill every other worker in the middle of its clean-up). The stop event keeps it from starting
    another entry instead."""
    global _STOP, _TURNS
    _STOP = stop
    _TURNS = turns
    _ignore_stop_signals()


def _ignore_stop_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _interrupted(signame: str, started: str, wall_seconds: float) -> Outcome:
    """The outcome of an entry stopped by a signal (after its clean-up)."""
    return {"error": f"interrupted ({signame}): the run was stopped and cleaned up", "interrupted": signame,
            "started": started, "wall_seconds": round(wall_seconds, 3)}


NOT_RUN = "not run: the suite was interrupted"
"""The error of an entry that an interrupt kept from starting."""


def _not_run(started: str = "") -> Outcome:
    """The outcome of an entry that did not start because the suite was interrupted."""
    return {"error": NOT_RUN, "interrupted": "", "started": started, "wall_seconds": 0.0}


def _signal_workers(pool: ProcessPoolExecutor, sig: int) -> None:
    for pid in list(getattr(pool, "_processes", None) or {}):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    from eden.run import _versions as harness_versions

    return harness_versions()


def run_entry(entry: MatrixEntry, backend: str, run_dir: str, turn: int | None = None) -> Outcome:
    """Worker: load and run one entry into ``run_dir``; never raises (errors come back as data).

    Returns ``{"summary", "run_info"}`` or ``{"error", "started", "wall_seconds"}``, plus
    ``"interrupted"`` (the signal's name) when a stop request ended the entry (``eden.interrupt``).
    ``turn``: the entry's place among the staggered starts (``--stagger``, :class:`_Turns`); a stop
    request ends the wait."""
    if turn is not None and _TURNS is not None and _STOP is not None and not _TURNS.wait(turn, _STOP):
        return _not_run()
    started = _now()
    t0 = time.perf_counter()
    out = Path(run_dir)
    if _STOP is not None:  # in a worker: stop requests count while it runs an entry (eden.interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, raise_interrupted)
        if _STOP.is_set():  # checked after the handlers are in: a forwarded SIGTERM is not lost
            _ignore_stop_signals()
            return _not_run(started)
    try:
        return _run_entry(entry, backend, out, started, t0)
    except KeyboardInterrupt as exc:
        return _interrupted(signame_of(exc), started, time.perf_counter() - t0)
    finally:
        if _STOP is not None:
            _ignore_stop_signals()


def _run_entry(entry: MatrixEntry, backend: str, out: Path, started: str, t0: float) -> Outcome:
    try:
        loaded = load_entry(entry, backend)
        from eden.run import execute

        result = execute(loaded, backend_name=backend, seed=entry.seed, out_dir=out)
        run_info: RunInfo = json.loads((out / "run.json").read_text(encoding="utf-8"))
        # eden.run builds the summary as a plain dict; its shape is RunSummary (summary.json)
        return {"summary": cast(RunSummary, result.summary), "run_info": run_info}
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


def entry_result(ls: LoadedSuite, entry: MatrixEntry, outcome: Outcome | None, out_dir: Path) -> EntryResult:
    """Turn one worker outcome into the entry's result, judged against the suite's criteria."""
    rel = f"{RUNS}/{entry.id}"
    scenario_file = _scenario_file(entry.file)
    if entry.invalid is not None or outcome is None or "error" in outcome:
        error = entry.invalid or (outcome or {}).get("error") or "the entry did not run"
        result = broken_entry(
            entry_id=entry.id,
            suite=ls.suite.name,
            scenario_file=scenario_file,
            profile=entry.profile,
            replication=entry.replication,
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
        entry_id=entry.id,
        suite=ls.suite.name,
        scenario_file=scenario_file,
        profile=entry.profile,
        replication=entry.replication,
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
    stagger: float = 0.0,
    progress: Progress | None = None,
    command: str = "",
) -> SuiteResults:
    """Run every entry of ``ls`` into ``out_dir/runs/`` and collect the results in matrix order.

    ``stagger``: with parallel jobs, the first ``jobs`` entries start this many seconds apart, in
    suite order, so that their machines do not all boot at once (on real VMs the boot is CPU bound,
    and a burst slows every boot in it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUNS).mkdir(exist_ok=True)
    started = _now()
    t0 = time.perf_counter()
    total = len(ls.entries)
    results: dict[str, EntryResult] = {}

    def done(entry: MatrixEntry, outcome: Outcome | None) -> None:
        result = entry_result(ls, entry, outcome, out_dir)
        results[entry.id] = result
        if progress is not None:
            progress(result, len(results), total)

    runnable = [e for e in ls.entries if e.invalid is None]
    for e in ls.entries:
        if e.invalid is not None:
            done(e, None)
    # A SIGTERM (a CI job cancelled) stops the suite like a Ctrl-C (eden.interrupt).
    main_thread = threading.current_thread() is threading.main_thread()
    saved_term = signal.signal(signal.SIGTERM, raise_interrupted) if main_thread else None
    try:
        if jobs <= 1 or len(runnable) <= 1:
            interrupted = _run_serial(ls, runnable, out_dir, done)
        else:
            interrupted = _run_parallel(ls, runnable, out_dir, jobs, done, stagger)
    finally:
        if saved_term is not None:
            signal.signal(signal.SIGTERM, saved_term)
    for e in runnable:  # what an interrupt left unfinished
        if e.id not in results:
            done(e, _not_run())
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
        interrupted=interrupted,
    )


def _run_serial(
    ls: LoadedSuite, entries: list[MatrixEntry], out_dir: Path, done: Callable[[MatrixEntry, Outcome | None], None]
) -> str:
    """Run ``entries`` one after the other in this process; returns the signal that stopped them, or ""."""
    for e in entries:
        try:
            outcome = run_entry(e, ls.backend, str(out_dir / RUNS / e.id))
            done(e, outcome)
        except KeyboardInterrupt as exc:  # between entries: nothing of an entry is running
            return signame_of(exc)
        if outcome.get("interrupted"):
            return str(outcome["interrupted"])
    return ""


def _run_parallel(
    ls: LoadedSuite,
    entries: list[MatrixEntry],
    out_dir: Path,
    jobs: int,
    done: Callable[[MatrixEntry, Outcome | None], None],
    stagger: float = 0.0,
) -> str:
    """Run ``entries`` in ``jobs`` spawned worker processes; a dead worker makes its entries broken.

    On Ctrl-C or SIGTERM, no further entry starts; the running ones are asked to stop (SIGTERM, a
    no-op for a worker that got the terminal's Ctrl-C already) and waited for, up to
    :data:`STOP_GRACE`, so each cleans up after itself. Returns the signal's name, or ""."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    workers = min(jobs, len(entries))
    turns = _Turns(stagger, context.Value("q", 0), context.Value("d", 0.0)) if stagger > 0 else None
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                               initargs=(stop, turns))
    futures: dict[Future[Outcome], MatrixEntry] = {
        pool.submit(run_entry, e, ls.backend, str(out_dir / RUNS / e.id), i if turns and i < workers else None): e
        for i, e in enumerate(entries)
    }
    pending = set(futures)

    def collect(future: Future[Outcome]) -> None:
        try:
            outcome = future.result()
        except BrokenProcessPool as exc:
            outcome = {"error": f"harness error: the worker process died ({exc})"}
        except KeyboardInterrupt as exc:  # a stop request that reached the worker outside run_entry's guard
            outcome = _interrupted(signame_of(exc), "", 0.0)
        except Exception as exc:  # noqa: BLE001 - e.g. a result that does not unpickle
            outcome = {"error": f"harness error: {type(exc).__name__}: {exc}"}
        done(futures[future], outcome)
        pending.discard(future)

    interrupted = ""
    try:
        for future in as_completed(futures):
            collect(future)
    except KeyboardInterrupt as exc:
        interrupted = signame_of(exc)
        stop.set()
        for future in pending:
            future.cancel()
        _signal_workers(pool, signal.SIGTERM)
        _drain(pool, [f for f in pending if not f.cancelled()], collect)
    except BaseException:  # a harness bug (e.g. in a report callback): do not wait for the rest
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True, cancel_futures=True)
    return interrupted


def _drain(pool: ProcessPoolExecutor, running: list[Future[Outcome]],
           collect: Callable[[Future[Outcome]], None]) -> None:
    """Wait for the interrupted entries' outcomes; past :data:`STOP_GRACE`, kill their workers."""
    deadline = Deadline(STOP_GRACE)
    left = set(running)
    while left:
        try:
            for future in as_completed(left, timeout=deadline.remaining()):
                left.discard(future)
                collect(future)
        except KeyboardInterrupt:
            continue  # another Ctrl-C: it reached the workers too, which now stop without waiting
        except TimeoutError:
            print(f"eden qualify: {len(left)} entries did not stop within {STOP_GRACE:.0f} s; killing their workers",
                  file=sys.stderr)
            _signal_workers(pool, signal.SIGKILL)
            return


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
    trend_data: History | None = None
    if db is not None:
        from eden import history

        try:
            history.record(results, out_dir, db)
            trend_data = history.trends(db, keys={e.key for e in results.entries})
        except Exception as exc:  # noqa: BLE001 - sqlite3 errors, a read-only disk ...
            history_problem = f"could not record the run in {db}: {exc}"
    paths.update(render(results, out_dir, trend_data))
    return paths, history_problem


def render(results: SuiteResults, out_dir: Path, history: History | None = None) -> dict[str, Path]:
    """Every report (Allure results, JUnit, HTML, Markdown) from stored results."""
    from eden.reports.render import write_all

    return dict(write_all(results, out_dir, history=history))


def default_out_dir(suite: str) -> Path:
    """``reports/<suite>-<timestamp>``, never an existing folder."""
    from eden.run import default_out_dir as run_default

    return run_default(suite)


__all__ = [
    "HARNESS_ERROR_FILE",
    "NOT_RUN",
    "RUNS",
    "entry_result",
    "exit_code",
    "finish",
    "render",
    "run_entry",
    "run_suite",
]
