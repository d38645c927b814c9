"""The ``eden`` command line.

Exit codes: 0 every expectation met; 1 an expectation failed (a product failure); 2 invalid input
or an infrastructure error (the harness or a backend broke, so the product was not judged).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from eden.backends.base import BACKENDS, runnable_backends
from eden.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK, InfrastructureError, InvalidInput, format_issues
from eden.units import format_duration

err = Console(stderr=True, soft_wrap=True)
out = Console()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eden", description="EVE-OS fleet simulator and test harness")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run scenario files on a backend")
    run.add_argument("scenarios", nargs="+", type=Path, metavar="SCENARIO")
    run.add_argument("--backend", default="sim", choices=runnable_backends())
    run.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    run.add_argument("--out", type=Path, default=None, help="result directory (default: reports/<scenario>-<time>)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    val = sub.add_parser("validate", help="check scenario and hardware profile files; exit 2 on any error")
    val.add_argument("files", nargs="+", type=Path, metavar="FILE")
    val.add_argument("--backend", default="sim", choices=sorted(BACKENDS), help="check capabilities against this backend")

    sch = sub.add_parser("schema", help="print the JSON Schema of scenario (or profile) files")
    sch.add_argument("--profile", action="store_true", help="the hardware profile schema instead")

    sub.add_parser("profiles", help="list the hardware profiles")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "schema":
            return cmd_schema(args)
        if args.command == "profiles":
            return cmd_profiles()
    except InvalidInput as exc:
        err.print(format_issues(exc.issues), markup=False, highlight=False)
        return EXIT_INVALID
    except (InfrastructureError, OSError) as exc:
        # The harness could not do its job (disk, permissions, a backend that broke): exit 2,
        # never 1, so a CI gate does not count it as a product failure.
        err.print(f"error: {exc}", markup=False, highlight=False)
        return EXIT_INVALID
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return EXIT_INVALID


def cmd_validate(args: argparse.Namespace) -> int:
    from eden.backends.base import backend_capabilities
    from eden.scenario.load import load_any

    caps, max_devices = backend_capabilities(args.backend)
    bad = 0
    for path in args.files:
        try:
            kind, obj = load_any(path, backend=args.backend, capabilities=caps, max_devices=max_devices)
        except InvalidInput as exc:
            bad += 1
            err.print(format_issues(exc.issues), markup=False, highlight=False)
            continue
        what = f"scenario '{obj.scenario.name}', {len(obj.devices)} device(s)" if kind == "scenario" else f"hardware profile '{obj.name}'"
        print(f"{path}: ok ({what})", flush=True)
    return EXIT_INVALID if bad else EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    if args.profile:
        from eden.profiles import HwProfile

        schema: Any = {"$schema": "https://json-schema.org/draft/2020-12/schema", **HwProfile.model_json_schema()}
    else:
        from eden.scenario.load import scenario_json_schema

        schema = scenario_json_schema()
    print(json.dumps(schema, indent=2, sort_keys=True))
    return EXIT_OK


def cmd_profiles() -> int:
    from eden.profiles import load_profiles

    table = Table("profile", "arch", "cores", "memory", "tpm", "nics", "description")
    for name, p in load_profiles().items():
        summary = p.description.split(":")[0].split(". ")[0]
        if len(summary) > 60:
            summary = summary[:57].rstrip() + "..."
        table.add_row(name, p.arch, str(p.cores), f"{p.memory / 2**30:g}G", p.tpm, ", ".join(n.name for n in p.nics), summary)
    out.print(table)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from eden.run import default_out_dir, execute, load_for_backend

    # Validate every file before anything runs: a typo in the fifth file must not cost four runs.
    loaded = []
    issues = []
    for path in args.scenarios:
        try:
            loaded.append(load_for_backend(path, args.backend))
        except InvalidInput as exc:
            issues.extend(exc.issues)
    if issues:
        err.print(format_issues(issues), markup=False, highlight=False)
        return EXIT_INVALID
    several = len(loaded) > 1
    root = args.out if args.out is not None else None
    if several and root is None:
        root = Path("reports") / f"run-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    results = []
    used: set[str] = set()
    for ld in loaded:
        if several:
            name, k = ld.scenario.name, 1
            while name in used:  # the same scenario twice must not overwrite its results
                k += 1
                name = f"{ld.scenario.name}-{k}"
            used.add(name)
            out_dir = root / name
        else:
            out_dir = args.out if args.out is not None else default_out_dir(ld.scenario.name)
        result = _run_one(ld, args, out_dir, execute)
        results.append(result)
    _final_table(results)
    if any(r.exit_code == EXIT_INVALID for r in results):
        return EXIT_INVALID
    if any(r.exit_code == EXIT_FAILED for r in results):
        return EXIT_FAILED
    return EXIT_OK


def _run_one(ld: Any, args: argparse.Namespace, out_dir: Path, execute: Any) -> Any:
    sc = ld.scenario
    title = f"{sc.name} [{args.backend}, {len(ld.devices)} device(s)]"
    if args.quiet or not err.is_terminal:
        err.print(f"running {title}", markup=False, highlight=False)
        result = execute(ld, backend_name=args.backend, seed=args.seed, out_dir=out_dir)
    else:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("sim {task.fields[sim]}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task(title, total=sc.duration, sim="0s")

            def report(t: float) -> None:
                progress.update(task, completed=t, sim=format_duration(t))

            result = execute(ld, backend_name=args.backend, seed=args.seed, out_dir=out_dir, progress=report)
    _print_result(result)
    return result


_STYLE = {"passed": "green", "failed": "red", "error": "magenta", "skipped": "yellow", "pending": "yellow"}


def _print_result(result: Any) -> None:
    s = result.summary
    table = Table(title=f"{s['scenario']} - {s['verdict'].upper()}", title_justify="left")
    table.add_column("expectation")
    table.add_column("status")
    table.add_column("observed", overflow="fold")
    table.add_column("at (sim)")
    for e in s.get("expectations", []):
        obs = json.dumps(e.get("observed"), sort_keys=True)
        if len(obs) > 80:
            obs = obs[:77] + "..."
        at = format_duration(e["met_at"]) if e.get("met_at") is not None else "-"
        table.add_row(e["name"], f"[{_STYLE.get(e['status'], 'white')}]{e['status']}[/]", obs, at)
    out.print(table)
    if result.error:
        out.print(f"[magenta]error:[/] {result.error}")
    sim = s.get("simulated_seconds") or 0.0
    out.print(f"results: {result.out_dir}  (simulated {format_duration(sim)}, wall {result.wall_seconds:.1f}s)", highlight=False)


def _final_table(results: list[Any]) -> None:
    if len(results) < 2:
        return
    table = Table(title="summary", title_justify="left")
    for col in ("scenario", "verdict", "devices", "expectations", "simulated", "wall"):
        table.add_column(col)
    for r in results:
        s = r.summary
        exps = s.get("expectations", [])
        passed = sum(1 for e in exps if e["status"] == "passed")
        table.add_row(
            r.scenario,
            f"[{_STYLE.get(r.verdict, 'white')}]{r.verdict}[/]",
            str(s.get("devices")),
            f"{passed}/{len(exps)}",
            format_duration(s.get("simulated_seconds") or 0.0),
            f"{r.wall_seconds:.1f}s",
        )
    out.print(table)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
