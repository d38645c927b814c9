#!/usr/bin/env python3
"""Benchmark one scenario on the simulator: wall time, peak memory and engine throughput.

    python benchmarks/bench_fleet.py                                   # scenarios/fleet-rollout-10k.yaml
    python benchmarks/bench_fleet.py scenarios/onboarding-smoke.yaml --repeat 3
    python benchmarks/bench_fleet.py --json --max-wall 60 --max-rss-mb 2048

Each repetition runs in a fresh interpreter (this script re-invokes itself with ``--child``), so the
peak RSS reported is that run's alone. The child loads the scenario with ``eden.run.load_for_backend``
and runs it with ``eden.run.execute`` exactly as ``eden run`` does (results are written too), then
reports what ``run.json`` and ``summary.json`` say plus its own ``ru_maxrss``.

Numbers printed:

* ``wall``         - seconds of ``eden.run.execute`` (build the fleet, simulate, write results), as
                     in run.json; ``load`` is parsing/validating/expanding the scenario and ``total``
                     is import + load + run in the child (what ``eden run`` costs minus interpreter start).
* ``peak RSS``     - the child's ``ru_maxrss`` in MB (2**20 bytes).
* ``node-hours/s`` - devices x simulated hours / wall: simulated fleet time per wall second.
* ``events/s``     - (node_events + bulk_requests) / wall: node machine calls plus requests answered in bulk.

``--max-wall`` / ``--max-rss-mb`` turn the run into a check: exit 1 if the worst repetition's
``total`` seconds or peak RSS is over the limit (or any run did not pass).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = REPO / "scenarios" / "fleet-rollout-10k.yaml"

# Fields averaged / minimised over repetitions, with their labels and formats for the text report.
NUMERIC = [
    ("wall_seconds", "wall (run)", "{:.2f} s"),
    ("load_seconds", "load", "{:.2f} s"),
    ("total_seconds", "total (import+load+run)", "{:.2f} s"),
    ("peak_rss_mb", "peak RSS", "{:.1f} MB"),
    ("node_hours_per_wall_second", "node-hours / wall s", "{:,.1f}"),
    ("events_per_second", "engine events / s", "{:,.0f}"),
]


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


# ------------------------------------------------------------------------------------- child --


def child(scenario: Path, seed: int | None, out_dir: Path, result_file: Path) -> int:
    """Load and run ``scenario`` in this (fresh) process; write one JSON record to ``result_file``."""
    t0 = time.perf_counter()
    from eden.errors import InvalidInput
    from eden.run import execute, load_for_backend

    t_import = time.perf_counter()
    try:
        loaded = load_for_backend(scenario, "sim")
    except InvalidInput as exc:
        print(exc, file=sys.stderr)
        return 2
    t_load = time.perf_counter()
    result = execute(loaded, backend_name="sim", seed=seed, out_dir=out_dir)
    total = time.perf_counter() - t0
    run = json.loads((out_dir / "run.json").read_text())
    summary = json.loads((out_dir / "summary.json").read_text())
    wall = float(run["wall_seconds"]) or 1e-9
    devices = int(run["devices"])
    sim = float(run["simulated_seconds"])
    node_events, bulk = int(run["node_events"]), int(run["bulk_requests"])
    ctrl = summary.get("metrics", {}).get("controller", {}).get("all", {})
    record = {
        "scenario": run["scenario"],
        "file": str(scenario),
        "seed": run["seed"],
        "verdict": result.verdict,
        "devices": devices,
        "simulated_seconds": sim,
        "wall_seconds": run["wall_seconds"],
        "import_seconds": round(t_import - t0, 3),
        "load_seconds": round(t_load - t_import, 3),
        "total_seconds": round(total, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "node_hours_per_wall_second": round(devices * sim / 3600 / wall, 1),
        "events_per_second": round((node_events + bulk) / wall, 1),
        "node_events": node_events,
        "bulk_requests": bulk,
        "controller_requests": ctrl.get("requests"),
        "rejected_503": ctrl.get("rejected_503"),
        "timeline_events": run["timeline_events"],
        "out_dir": str(out_dir),
    }
    result_file.write_text(json.dumps(record))
    return 0


# ------------------------------------------------------------------------------------ parent --


def measure(scenario: Path, *, seed: int | None = None, out_dir: Path | None = None) -> dict[str, Any]:
    """Run ``scenario`` once in a fresh interpreter and return its record (see :func:`child`).

    Results go to ``out_dir`` (kept) or to a temporary folder (removed afterwards).
    Raises RuntimeError if the child fails (invalid scenario, crash).
    """
    with tempfile.TemporaryDirectory(prefix="eden-bench-") as tmp:
        out = out_dir if out_dir is not None else Path(tmp) / "out"
        result_file = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(scenario), "--out", str(out)]
        cmd += ["--result", str(result_file)]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        done = subprocess.run(cmd, cwd=REPO)
        if done.returncode != 0 or not result_file.exists():
            raise RuntimeError(f"benchmark run of {scenario} failed (exit {done.returncode})")
        record: dict[str, Any] = json.loads(result_file.read_text())
    if out_dir is None:
        record["out_dir"] = None
    return record


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    keys = [k for k, _, _ in NUMERIC]
    return {
        "mean": {k: round(statistics.fmean(r[k] for r in runs), 3) for k in keys},
        "min": {k: min(r[k] for r in runs) for k in keys},
        "max": {k: max(r[k] for r in runs) for k in keys},
    }


def format_run(r: dict[str, Any]) -> str:
    sim = r["simulated_seconds"]
    lines = [
        f"{r['scenario']}: {r['verdict']}  (seed {r['seed']}, {r['devices']:,} devices, "
        f"simulated {sim:,.0f} s = {sim / 3600:.2f} h)",
        f"  wall (run)               {r['wall_seconds']:.2f} s   load {r['load_seconds']:.2f} s, "
        f"total {r['total_seconds']:.2f} s",
        f"  peak RSS                 {r['peak_rss_mb']:.1f} MB",
        f"  node-hours / wall s      {r['node_hours_per_wall_second']:,.1f}",
        f"  engine events / s        {r['events_per_second']:,.0f}",
        f"  node events              {r['node_events']:,}",
        f"  bulk requests            {r['bulk_requests']:,}",
    ]
    if r.get("controller_requests") is not None:
        lines.append(f"  controller requests      {r['controller_requests']:,}  (503: {r['rejected_503']:,})")
    if r.get("out_dir"):
        lines.append(f"  results                  {r['out_dir']}")
    return "\n".join(lines)


def format_aggregate(agg: dict[str, dict[str, float]], n: int) -> str:
    lines = [f"over {n} runs:               {'mean':>14} {'min':>14}"]
    for key, label, fmt in NUMERIC:
        lines.append(f"  {label:<25} {fmt.format(agg['mean'][key]):>14} {fmt.format(agg['min'][key]):>14}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", nargs="?", type=Path, default=DEFAULT_SCENARIO, help="default: %(default)s")
    p.add_argument("--repeat", type=int, default=1, metavar="N", help="number of runs (each in a fresh process)")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--out", type=Path, default=None, help="keep results here (run-<i>/ per repetition when N > 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--max-wall", type=float, default=None, metavar="S", help="fail if a run's total seconds exceed S")
    p.add_argument("--max-rss-mb", type=float, default=None, metavar="MB", help="fail if a run's peak RSS exceeds MB")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    scenario = args.scenario.resolve()
    if args.child:
        return child(scenario, args.seed, args.out, args.result)
    if not scenario.is_file():
        p.error(f"no such scenario file: {args.scenario}")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")

    runs = []
    for i in range(args.repeat):
        out = None
        if args.out is not None:
            out = args.out.resolve() if args.repeat == 1 else args.out.resolve() / f"run-{i + 1}"
        if not args.json:
            print(f"[{i + 1}/{args.repeat}] running {scenario.name} ...", file=sys.stderr, flush=True)
        try:
            record = measure(scenario, seed=args.seed, out_dir=out)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        runs.append(record)
        if not args.json:
            print(format_run(record), flush=True)

    agg = aggregate(runs)
    problems = [f"run {i + 1}: verdict {r['verdict']}" for i, r in enumerate(runs) if r["verdict"] != "passed"]
    if args.max_wall is not None and agg["max"]["total_seconds"] > args.max_wall:
        problems.append(f"total {agg['max']['total_seconds']:.1f} s > {args.max_wall:g} s")
    if args.max_rss_mb is not None and agg["max"]["peak_rss_mb"] > args.max_rss_mb:
        problems.append(f"peak RSS {agg['max']['peak_rss_mb']:.0f} MB > {args.max_rss_mb:g} MB")
    checked = args.max_wall is not None or args.max_rss_mb is not None

    if args.json:
        report: dict[str, Any] = {"scenario": runs[0]["scenario"], "file": str(scenario), "runs": runs, **agg}
        if checked:
            report["problems"] = problems
        print(json.dumps(report, indent=2))
    else:
        if len(runs) > 1:
            print(format_aggregate(agg, len(runs)))
        if checked:
            print("targets: " + ("met" if not problems else "NOT met: " + "; ".join(problems)))
    return 1 if checked and problems else 0


if __name__ == "__main__":
    sys.exit(main())
