"""Run one scenario on a backend and write its results.

Outputs in the run directory:

* ``summary.json`` - a pure function of (scenario, seed, backend): verdict, expectations with their
  observed values, steps with their (simulated) times, metrics. Byte-identical across reruns.
* ``run.json`` - everything wall-clock: start time, wall duration, host, versions, throughput.
* ``events.jsonl`` (or ``events.npz`` + details for fleets over 1,000 devices) - the timeline.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from eden.backends.base import Backend
from eden.backends.registry import backend_capabilities, make_backend
from eden.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK, InfrastructureError, InvalidInput, Issue
from eden.metrics import all_metrics
from eden.runner import Runner, run_verdict
from eden.scenario.load import LoadedScenario, load_scenario
from eden.timeline import Timeline
from eden.verdicts import RunVerdict

COLUMNAR_ABOVE = 1000
SUMMARY_SCHEMA = 1


@dataclass
class RunResult:
    scenario: str
    path: str
    verdict: RunVerdict
    out_dir: Path
    summary: dict[str, Any]
    wall_seconds: float
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return {"passed": EXIT_OK, "failed": EXIT_FAILED}.get(self.verdict, EXIT_INVALID)


def load_for_backend(path: str | Path, backend: str) -> LoadedScenario:
    caps, max_devices = backend_capabilities(backend)
    loaded = load_scenario(path, backend=backend, capabilities=caps, max_devices=max_devices)
    issues = backend_input_issues(backend, loaded)
    if issues:
        raise InvalidInput(issues)
    return loaded


def backend_input_issues(backend: str, loaded: LoadedScenario) -> list[Issue]:
    """What a backend needs beyond the file's own rules (real image files, environment), checked
    at load with file:line:col rather than at run time; ``eden validate --backend`` reports them too."""
    if backend == "qemu":
        from eden.backends.qemu_eve import input_issues

        return input_issues(loaded)
    if backend == "board":
        from eden.backends.board import input_issues as lab_issues

        return lab_issues(loaded)
    return []


def execute(
    loaded: LoadedScenario,
    *,
    backend_name: str = "sim",
    seed: int | None = None,
    out_dir: Path,
    progress: Callable[[float], None] | None = None,
) -> RunResult:
    sc = loaded.scenario
    seed = sc.seed if seed is None else seed
    out_dir.mkdir(parents=True, exist_ok=True)
    timeline = Timeline()
    wall0 = time.perf_counter()
    started = datetime.now(timezone.utc)
    error: str | None = None
    backend: Backend | None = None
    runner = None
    try:
        backend = make_backend(backend_name, loaded, seed, timeline, out_dir)
        runner = Runner(loaded, backend, seed=seed)
        backend.run(runner.main(), duration=sc.duration, progress=progress)
        runner.finish()
        verdict = run_verdict(runner)
    except InfrastructureError as exc:
        error = str(exc)
        verdict = "error"
        if runner is not None:
            runner.abort(f"infrastructure error: {exc}")
    wall = time.perf_counter() - wall0
    summary = build_summary(loaded, backend_name, seed, verdict, runner, backend, error)
    write_json(out_dir / "summary.json", summary)
    events_file = "none"
    if backend is not None:
        if len(loaded.devices) > COLUMNAR_ABOVE:
            timeline.write_columnar(out_dir / "events.npz")
            events_file = "events.npz"
        else:
            timeline.write_jsonl(out_dir / "events.jsonl")
            events_file = "events.jsonl"
    sim_seconds = backend.now() if backend is not None else 0.0
    stats = backend.stats() if backend is not None else {}
    node_events = int(stats.get("node_events", 0))
    bulk = int(stats.get("bulk_requests", 0))
    run_info = {
        "scenario": sc.name,
        "file": str(loaded.path),
        "backend": backend_name,
        "seed": seed,
        "verdict": verdict,
        "started": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 3),
        "simulated_seconds": sim_seconds,
        "devices": len(loaded.devices),
        "timeline_events": len(timeline),
        "events_file": events_file,
        "node_events": node_events,
        "bulk_requests": bulk,
        "events_per_second": round((node_events + bulk) / wall, 1) if wall > 0 else None,
        "node_hours_per_wall_second": round(len(loaded.devices) * sim_seconds / 3600 / wall, 1) if wall > 0 else None,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": _versions(),
        "command": " ".join(sys.argv),
        "pid": os.getpid(),
    }
    if "timings" in stats:  # real backends: measured wall times (not in summary.json, which is deterministic)
        run_info["device_timings"] = stats["timings"]
    if "places" in stats:  # the board backend: which lab place each device ran on (history: flaky boards)
        run_info["places"] = stats["places"]
    write_json(out_dir / "run.json", run_info)
    return RunResult(sc.name, str(loaded.path), verdict, out_dir, summary, wall, error)


def build_summary(
    loaded: LoadedScenario,
    backend_name: str,
    seed: int,
    verdict: RunVerdict,
    runner: Runner | None,
    backend: Backend | None,
    error: str | None,
) -> dict[str, Any]:
    sc = loaded.scenario
    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,
        "scenario": sc.name,
        "description": sc.description,
        "file": loaded.path.name,
        "backend": backend_name,
        "seed": seed,
        "verdict": verdict,
        "devices": len(loaded.devices),
        "images": {name: img.version for name, img in sc.images.items()},
        "profiles": sorted({d.profile_name for d in loaded.devices}),
    }
    if error:
        summary["error"] = error
    if runner is not None:
        summary["simulated_seconds"] = _r(backend.now()) if backend is not None else None
        summary["expectations"] = [_r(asdict(e)) for e in runner.expectations]
        summary["steps"] = [_r(asdict(s)) for s in runner.steps]
        summary["rollouts"] = [_r({k: v for k, v in asdict(r).items() if k != "resume"}) for r in runner.rollouts]
    if backend is not None and runner is not None:
        summary["metrics"] = _r(all_metrics(backend, runner, sc.metrics))
        summary["series"] = _r(backend.series())
    return summary


def _r(value: object) -> object:
    """Round floats so the JSON is stable and readable."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {str(k): _r(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_r(v) for v in value]
    return value


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("eden", "simpy", "numpy", "pydantic", "pyyaml", "rich"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "?"
    return out


def default_out_dir(name: str, root: Path | None = None) -> Path:
    """``reports/<name>-<timestamp>``, never an existing folder (two runs in one second)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = (root or Path("reports")) / f"{name}-{stamp}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out
