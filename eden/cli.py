"""The ``eden`` command line.

Exit codes: 0 every expectation met; 1 an expectation failed (a product failure); 2 invalid input
or an infrastructure error (the harness or a backend broke, so the product was not judged).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from eden.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK, InfrastructureError, InvalidInput, format_issues
from eden.terminal import err, out
from eden.units import format_duration

if TYPE_CHECKING:
    from eden.suite.load import LoadedSuite


def _seed_arg(text: str) -> int:
    """``--seed``: the range a scenario's ``seed`` has (eden.scenario.model.Seed), checked before anything runs."""
    from eden.scenario.model import SEED_MAX

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{value} is out of range: 0 to {SEED_MAX}")
    return value


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eden", description="EVE-OS fleet simulator and test harness")
    p.add_argument("--version", action="version", version=f"eden {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    if list(argv[:1]) == ["agent"]:
        # The agent starts on every boot of a device (a TCG VM of the reference image: its Python
        # start-up is on the boot's critical path), so it does not import the harness's scenario
        # models and backends only to build parsers it does not use: 3 to 4 s less per start there.
        from eden.agent.cli import add_parser as add_agent_parser

        add_agent_parser(sub)
        return p
    from eden.backends.registry import REGISTRY, runnable_backends

    run = sub.add_parser("run", help="run scenario files on a backend")
    run.add_argument("scenarios", nargs="+", type=Path, metavar="SCENARIO")
    run.add_argument("--backend", default="sim", choices=runnable_backends(), help=_BACKEND_HELP)
    run.add_argument("--seed", type=_seed_arg, default=None, help="override the scenario's seed")
    run.add_argument("--out", type=Path, default=None, help="result directory (default: reports/<scenario>-<time>)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--no-html", action="store_true", help="do not write report.html into the result directory")
    run.add_argument("--lab", type=Path, default=None, metavar="LAB", help=_LAB_HELP)

    val = sub.add_parser("validate", help="check scenario and hardware profile files; exit 2 on any error")
    val.add_argument("files", nargs="+", type=Path, metavar="FILE")
    val.add_argument("--backend", default="sim", choices=sorted(REGISTRY), help="check capabilities against this backend")
    val.add_argument("--lab", type=Path, default=None, metavar="LAB", help=_LAB_HELP)

    sch = sub.add_parser("schema", help="print the JSON Schema of scenario (or profile, or lab) files")
    kind = sch.add_mutually_exclusive_group()
    kind.add_argument("--profile", action="store_true", help="the hardware profile schema instead")
    kind.add_argument("--lab", action="store_true", help="the lab file schema instead (docs/lab.md)")
    sch.add_argument("--out", type=Path, default=None, metavar="FILE",
                     help="write it to FILE instead of stdout (e.g. eden-scenario.schema.json, which docs/scenario-language.md's editor set-up uses)")

    sub.add_parser("profiles", help="list the hardware profiles")

    q = sub.add_parser("qualify", help="run a suite (scenarios x hardware profiles) and write its reports")
    q.add_argument("suite", type=Path, metavar="SUITE")
    q.add_argument("--backend", default=None, choices=sorted(REGISTRY), help="default: the suite's backend")
    q.add_argument("--profile", dest="profiles", nargs="+", action="extend", metavar="P", help="only entries on these profiles")
    q.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="parallel worker processes (default 1; on --backend board: the lab's healthy places)")
    q.add_argument("--stagger", type=float, default=0.0, metavar="S",
                   help="start the parallel entries S seconds apart, in suite order, to spread their boot load (default 0)")
    q.add_argument("--out", type=Path, default=None, help="output folder (default: reports/<suite>-<time>)")
    q.add_argument("--history", type=Path, default=None, metavar="DB", help="results database (default: $EDEN_HISTORY or reports/history.db)")
    q.add_argument("--no-history", action="store_true", help="do not record this run in the results database")
    q.add_argument("--lab", type=Path, default=None, metavar="LAB", help=_LAB_HELP)
    q.add_argument("--no-health-gate", action="store_true",
                   help="on --backend board: do not run the health scenarios of places that are due (docs/lab.md)")

    rep = sub.add_parser("report", help="re-render the reports of a suite run from DIR/results.json")
    rep.add_argument("dir", type=Path, metavar="DIR")
    rep.add_argument("--allure", action="store_true", help="render DIR/allure-report with the Allure CLI")
    rep.add_argument("--history", type=Path, default=None, metavar="DB", help="results database for the trends")

    hist = sub.add_parser("history", help="pass rates, timing trends and flaky entries from the results database")
    hist.add_argument("--db", type=Path, default=None, help="results database (default: $EDEN_HISTORY or reports/history.db)")
    hist.add_argument("--suite", default=None, help="only this suite")
    hist.add_argument("--last", type=int, default=10, metavar="N", help="runs per cell to show (default 10)")
    hist.add_argument("--places", action="store_true",
                      help="per lab place: pass rate, flaky boards apart from flaky scenarios (and health, with --lab)")
    hist.add_argument("--lab", type=Path, default=None, metavar="LAB", help="with --places: the lab whose health trend to show")

    from eden.controller.cli import add_parser as add_controller_parser

    add_controller_parser(sub)

    from eden.agent.cli import add_parser as add_agent_parser

    add_agent_parser(sub)

    from eden.emulate.cli import add_parser as add_emulate_parser

    add_emulate_parser(sub)

    from eden.image.cli import add_parser as add_image_parser

    add_image_parser(sub)

    from eden.lab.cli import add_parser as add_lab_parser

    add_lab_parser(sub)
    return p


_LAB_HELP = "the lab file of --backend board (docs/lab.md); default: $EDEN_LAB"

_BACKEND_HELP = (
    "where the devices run (default: sim): sim = the SimPy model in simulated time, thousands of nodes "
    "in seconds; emulated = a real controller and one agent process per device, in real time; "
    "qemu = QEMU VMs booting the reference EVE image (needs scripts/install-system-deps); "
    "board = boards in a lab, through the drivers of a lab file (--lab)"
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eden")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # `eden schema | head`: the reader left. Say nothing more, and let no flush at exit fail again.
        import os

        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as a shell reports a process ended by SIGPIPE


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if argv[:2] == ["lab", "standin"] and "--" in argv:
        # eden lab standin ... -- COMMAND: argparse's subparsers do not keep what follows "--"
        command, argv = argv[argv.index("--") + 1:], argv[:argv.index("--")]
    args = _parser(argv).parse_args(argv)
    if command:
        args.command_argv = command
    if getattr(args, "lab", None) is not None and args.command in ("run", "validate", "qualify"):
        # The board backend reads the lab file from the environment, so a suite's worker processes
        # (eden qualify --jobs) see the same lab as the run that started them.
        os.environ["EDEN_LAB"] = str(args.lab.resolve())
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "schema":
            return cmd_schema(args)
        if args.command == "profiles":
            return cmd_profiles()
        if args.command == "qualify":
            return cmd_qualify(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "history":
            return cmd_history(args)
        if args.command == "controller":
            from eden.controller.cli import run as run_controller

            return run_controller(args)
        if args.command == "agent":
            from eden.agent.cli import run as run_agent

            return run_agent(args)
        if args.command == "emulate":
            from eden.emulate.cli import run as run_emulate

            return run_emulate(args)
        if args.command == "image":
            from eden.image.cli import run as run_image

            return run_image(args)
        if args.command == "lab":
            from eden.lab.cli import run as run_lab

            return run_lab(args)
    except InvalidInput as exc:
        err.print(format_issues(exc.issues), markup=False, highlight=False)
        return EXIT_INVALID
    except BrokenPipeError:
        raise
    except (InfrastructureError, OSError) as exc:
        # The harness could not do its job (disk, permissions, a backend that broke): exit 2,
        # never 1, so a CI gate does not count it as a product failure.
        err.print(f"error: {exc}", markup=False, highlight=False)
        return EXIT_INVALID
    except KeyboardInterrupt as exc:
        from eden.interrupt import exit_code, signame_of

        err.print(f"interrupted ({exc})" if str(exc) else "interrupted", markup=False, highlight=False)
        return exit_code(signame_of(exc))
    return EXIT_INVALID


def cmd_validate(args: argparse.Namespace) -> int:
    from eden.backends.registry import backend_capabilities
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
        if kind == "scenario":
            from eden.run import backend_input_issues

            problems = backend_input_issues(args.backend, obj)
            if problems:
                bad += 1
                err.print(format_issues(problems), markup=False, highlight=False)
                continue
        if kind == "scenario" and obj.warnings:
            err.print(format_issues(obj.warnings), markup=False, highlight=False)
        what = f"scenario '{obj.scenario.name}', {len(obj.devices)} device(s)" if kind == "scenario" else f"hardware profile '{obj.name}'"
        print(f"{path}: ok ({what})", flush=True)
    return EXIT_INVALID if bad else EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    if args.profile:
        from eden.profiles import HwProfile

        schema: Any = {"$schema": "https://json-schema.org/draft/2020-12/schema", **HwProfile.model_json_schema()}
    elif args.lab:
        from eden.lab.model import lab_json_schema

        schema = lab_json_schema()
    else:
        from eden.scenario.load import scenario_json_schema

        schema = scenario_json_schema()
    text = json.dumps(schema, indent=2, sort_keys=True)
    if args.out is None:
        print(text)
        return EXIT_OK
    args.out.write_text(text + "\n", encoding="utf-8")  # an OSError is reported by main (exit 2)
    err.print(f"wrote {args.out}", markup=False, highlight=False)
    return EXIT_OK


def cmd_profiles() -> int:
    from eden.profiles import load_profiles

    table = Table("profile", "arch", "cores", "memory", "tpm", "nics", "description")
    for name, p in load_profiles().items():
        summary = p.description.split(":")[0].split(". ")[0]
        if len(summary) > 60:
            summary = summary[:57].rstrip() + "..."
        table.add_row(name, p.arch, str(p.cores), f"{p.memory / 2**30:g}G", p.tpm, ", ".join(n.name for n in p.nics), summary)
    widths = [max(len(c) for c in col.cells) if col.cells else 0 for col in table.columns]
    needed = sum(max(w, len(str(col.header))) + 3 for w, col in zip(widths, table.columns)) + 1
    _wide_print(table, needed)  # a pipe or a file: not cut at rich's default of 80 columns
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
    warnings = [w for ld in loaded for w in ld.warnings]
    if warnings:
        err.print(format_issues(warnings), markup=False, highlight=False)
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
        if not args.no_html:
            _run_html(result, ld)
    _final_table(results)
    if any(r.exit_code == EXIT_INVALID for r in results):
        return EXIT_INVALID
    if any(r.exit_code == EXIT_FAILED for r in results):
        return EXIT_FAILED
    return EXIT_OK


def _run_html(result: Any, ld: Any) -> None:
    """report.html beside the run's files; a report that cannot be drawn does not change the verdict."""
    from eden.reports.model import features_of
    from eden.reports.render import write_run_html

    try:
        path = write_run_html(result.out_dir, features=features_of(ld.scenario))
    except Exception as exc:  # noqa: BLE001 - the run's files are written; say why the page is not
        err.print(f"warning: no report.html: {exc}", markup=False, highlight=False)
        return
    out.print(f"report: {path}", highlight=False)


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
    real_time = s.get("backend", "sim") != "sim"
    table.add_column("at" if real_time else "at (sim)")
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
    clock = f"run time {format_duration(sim)}" if real_time else f"simulated {format_duration(sim)}"
    out.print(f"results: {result.out_dir}  ({clock}, wall {result.wall_seconds:.1f}s)", highlight=False)


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


# -------------------------------------------------------------------------------------- suites

_GLYPH = {"passed": ("✓", "green"), "failed": ("✗", "red"), "broken": ("!", "magenta")}


def _lab_gate(ls: LoadedSuite, args: argparse.Namespace, out_dir: Path) -> int | None:
    """Before a suite runs on a lab: the health gate on the places that are due (docs/lab.md
    "Health"), then the number of healthy places of the suite's profiles (the default --jobs).
    None: no lab, or no healthy place at all (exit 2)."""
    from eden.lab.health import check_places, due_places
    from eden.lab.leases import LeaseStore
    from eden.lab.load import load_lab

    value = os.environ.get("EDEN_LAB", "")
    if not value:
        err.print("error: --backend board needs a lab file: give --lab lab.yaml (docs/lab.md)", markup=False, highlight=False)
        return None
    lab = load_lab(Path(value))
    profiles = {e.profile for e in ls.entries if e.profile}
    if any(e.profile is None for e in ls.entries):  # entries with their own fleet: any profile of the lab
        profiles |= {p.profile for p in lab.lab.places.values()}
    names = [n for n, p in lab.lab.places.items() if p.profile in profiles]
    with LeaseStore(lab.db_path) as store:
        due = [] if args.no_health_gate else due_places(lab, store, profiles)
    if due:
        err.print(f"health gate: {len(due)} place(s) due: {', '.join(due)}", markup=False, highlight=False)
        results = check_places(lab, due, out_dir / "health", parallel=max(1, args.jobs or len(due)))
        for r in results:
            style = "green" if r.health == "good" else "red"
            err.print(f"  [{style}]{r.health:<4}[/] {r.place}  {r.wall_seconds:.0f}s  {r.reason}", highlight=False)
        (out_dir / "health").mkdir(parents=True, exist_ok=True)
        (out_dir / "health" / "health.json").write_text(json.dumps(
            [{"place": r.place, "health": r.health, "reason": r.reason, "run_dir": str(r.run_dir),
              "wall_seconds": r.wall_seconds} for r in results], indent=2) + "\n")
    with LeaseStore(lab.db_path) as store:
        healthy = [st.place for st in store.states(names) if st.health != "bad"]
    if not healthy:
        err.print(f"error: no healthy place in lab {lab.lab.lab!r} for profile(s) {', '.join(sorted(profiles))}; "
                  "see eden lab status, and eden lab health PLACE --set good once a board is fixed", markup=False, highlight=False)
        return None
    return len(healthy)


def _glyphs(verdicts: list[str]) -> str:
    return "".join(f"[{_GLYPH[v][1]}]{_GLYPH[v][0]}[/]" for v in verdicts)


def cmd_qualify(args: argparse.Namespace) -> int:
    from eden.history import default_db
    from eden.profiles import load_profiles
    from eden.interrupt import exit_code as interrupted_exit_code
    from eden.qualify import NOT_RUN, default_out_dir, exit_code, finish, run_suite
    from eden.suite.load import load_suite

    if args.jobs is not None and args.jobs < 1:
        err.print("error: --jobs must be 1 or more", markup=False, highlight=False)
        return EXIT_INVALID
    if not 0 <= args.stagger <= 3600:
        err.print("error: --stagger must be between 0 and 3600 seconds", markup=False, highlight=False)
        return EXIT_INVALID
    if args.profiles:
        known = list(load_profiles())
        unknown = [p for p in args.profiles if p not in known]
        if unknown:
            err.print(f"error: unknown profile(s) for --profile: {', '.join(unknown)}", markup=False, highlight=False)
            err.print(f"    hint: known profiles: {', '.join(known)}", markup=False, highlight=False)
            return EXIT_INVALID
    ls = load_suite(args.suite, backend=args.backend, only_profiles=args.profiles)
    if ls.warnings:
        err.print(format_issues(ls.warnings), markup=False, highlight=False)
    out_dir = args.out if args.out is not None else default_out_dir(ls.suite.name)
    db = None if args.no_history else (args.history or default_db())
    if ls.backend == "board":
        jobs = _lab_gate(ls, args, out_dir)
        if jobs is None:
            return EXIT_INVALID
        args.jobs = args.jobs or jobs
    args.jobs = args.jobs or 1
    invalid = sum(1 for e in ls.entries if e.invalid)
    err.print(
        f"suite {ls.suite.name}: {len(ls.entries)} entries on {ls.backend}"
        + (f", {invalid} invalid" if invalid else "")
        + (f", {len(ls.excluded)} cell(s) excluded" if ls.excluded else "")
        + f", {args.jobs} job(s) -> {out_dir}",
        markup=False,
        highlight=False,
    )
    width = len(str(len(ls.entries)))

    def progress(entry: Any, done: int, total: int) -> None:
        glyph, style = _GLYPH[entry.verdict]
        err.print(
            f"[{done:>{width}}/{total}] [{style}]{glyph} {entry.verdict:<6}[/] {entry.id}  {entry.wall_seconds:.1f}s",
            highlight=False,
        )

    results = run_suite(ls, out_dir, jobs=args.jobs, stagger=args.stagger, progress=progress, command=" ".join(["eden", *sys.argv[1:]]))
    _matrix_table(ls, results)
    _problems(results)
    if results.interrupted:
        # The reports of what ran are still written; an interrupted run is not history.
        not_run = sum(1 for e in results.entries if e.error == NOT_RUN)
        err.print(f"interrupted ({results.interrupted}): {not_run} of {len(results.entries)} entries not run; "
                  "the running ones were stopped and cleaned up", markup=False, highlight=False)
        db = None
    try:
        paths, history_problem = finish(results, out_dir, db)
    except Exception as exc:  # noqa: BLE001 - a report that cannot be drawn is a harness problem
        err.print(f"error: writing the reports failed: {type(exc).__name__}: {exc}", markup=False, highlight=False)
        err.print(f"results: {out_dir / 'results.json'}", markup=False, highlight=False)
        return EXIT_INVALID
    if history_problem:
        err.print(f"warning: {history_problem}", markup=False, highlight=False)
    for name, path in paths.items():
        out.print(f"{name + ':':<10} {path}", highlight=False)
    if db is not None and not history_problem:
        out.print(f"{'history:':<10} {db}", highlight=False)
    c = results.counts()
    style = {"passed": "green", "failed": "red", "broken": "magenta"}[results.verdict]
    out.print(
        f"[{style}]{ls.suite.name}: {results.verdict.upper()}[/] - {c['passed']} passed, {c['failed']} failed, "
        f"{c['broken']} broken in {results.wall_seconds:.1f}s wall ({results.jobs} job(s))",
        highlight=False,
    )
    if results.interrupted:
        return interrupted_exit_code(results.interrupted)
    return exit_code(results)


def _matrix_table(ls: Any, results: Any) -> None:
    from eden.suite.model import OWN

    cells: dict[tuple[str, str], list[str]] = {}
    for e in results.entries:
        cells.setdefault((e.scenario, e.profile or OWN), []).append(e.verdict)
    excluded = {(x.scenario, x.profile or OWN): x.reason for x in ls.excluded}
    columns = ls.profiles
    table = Table(title=f"{ls.suite.name} on {ls.backend}", title_justify="left")
    table.add_column("scenario", no_wrap=True)
    for col in columns:
        table.add_column(col, justify="center", no_wrap=True)
    for scenario in ls.scenarios:
        row = [scenario]
        for col in columns:
            verdicts = cells.get((scenario, col))
            if verdicts:
                row.append(_glyphs(verdicts))
            elif (scenario, col) in excluded:
                row.append("[dim]excl.[/]")
            else:
                row.append("")
        table.add_row(*row)
    _wide_print(table, 4 + max((len(r) for r in ls.scenarios), default=8) + sum(len(c) + 3 for c in columns))
    out.print("✓ passed  ✗ failed (product)  ! broken (harness)  - one mark per replication", style="dim")


def _wide_print(table: Table, needed: int) -> None:
    """Print a table on stdout; when stdout is not a terminal, never squeeze it below ``needed``."""
    if out.is_terminal or out.width >= needed:
        out.print(table)
    else:
        Console(width=needed).print(table)


def _problems(results: Any) -> None:
    bad = [e for e in results.entries if e.verdict != "passed"]
    if not bad:
        return
    table = Table(title="not passed", title_justify="left")
    table.add_column("entry", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("why", overflow="fold", min_width=40)
    for e in bad:
        reasons: list[str] = []
        if e.verdict == "broken":
            reasons.append((e.error or "unknown error").strip())
        else:
            reasons += [f"{x.get('name')}: {x.get('status')}" for x in e.expectations if x.get("status") != "passed"]
            reasons += [f"criterion {c.name}: {c.why}" for c in e.criteria if c.status == "failed" and c.name != "all expectations pass"]
        glyph, style = _GLYPH[e.verdict]
        table.add_row(e.id, f"[{style}]{e.verdict}[/]", "\n".join(reasons[:6]) or "-")
    _wide_print(table, max(len(e.id) for e in bad) + 70)


def _find_allure() -> Path | None:
    import shutil

    found = shutil.which("allure")
    if found:
        return Path(found)
    repo = Path(__file__).resolve().parent.parent
    for root in (repo, Path.cwd()):
        candidate = root / ".tools" / "node_modules" / ".bin" / "allure"
        if candidate.is_file():
            return candidate
    return None


def cmd_report(args: argparse.Namespace) -> int:
    from eden.reports.model import SuiteResults

    directory: Path = args.dir
    if not (directory / "results.json").is_file():
        err.print(f"error: {directory / 'results.json'} not found", markup=False, highlight=False)
        err.print("    hint: DIR is the output folder of 'eden qualify' (it holds results.json and runs/)", markup=False, highlight=False)
        return EXIT_INVALID
    results = SuiteResults.load(directory)
    if args.allure:
        return _allure_report(directory, results)
    from eden import history
    from eden.qualify import render

    db = args.history or history.default_db()
    trend = history.trends(db, keys={e.key for e in results.entries}) if db.exists() else None
    for name, path in render(results, directory, trend or None).items():
        out.print(f"{name + ':':<10} {path}", highlight=False)
    return EXIT_OK


def _allure_report(directory: Path, results: Any) -> int:
    import shutil
    import subprocess

    allure = _find_allure()
    if allure is None:
        err.print("error: the Allure CLI (npm package 'allure') is not installed", markup=False, highlight=False)
        err.print(
            "    hint: run scripts/bootstrap (installs it into .tools/), or: npm install --prefix .tools allure",
            markup=False,
            highlight=False,
        )
        return EXIT_INVALID
    source = (directory / "allure-results").resolve()
    if not source.is_dir():
        from eden.qualify import render

        render(results, directory, None)
    target = (directory / "allure-report").resolve()
    if target.exists():
        shutil.rmtree(target)
    cmd = [str(allure), "generate", str(source), "--output", str(target)]
    err.print("running " + " ".join(cmd), markup=False, highlight=False)
    proc = subprocess.run(cmd, cwd=directory, capture_output=True, text=True)
    if proc.returncode != 0 or not (target / "index.html").is_file():
        err.print(f"error: allure generate failed (exit {proc.returncode})", markup=False, highlight=False)
        err.print((proc.stdout + proc.stderr).strip()[-2000:], markup=False, highlight=False)
        return EXIT_INVALID
    out.print(f"allure report: {target / 'index.html'}", highlight=False)
    out.print(f"open it with: {allure} open {target}", highlight=False)
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from eden import history

    db: Path = args.db or history.default_db()
    if not db.exists():
        out.print(f"no history yet: {db} does not exist (eden qualify records every run there)", highlight=False)
        return EXIT_OK
    last = max(1, args.last)
    if args.places:
        return _history_places(db, args)
    trend = history.trends(db, last=last, suite=args.suite)
    totals = history.totals(db, suite=args.suite)
    flaky = {(f["scenario"], f["profile"]) for f in history.flaky(db, last=max(20, last), suite=args.suite)}
    if not trend:
        out.print(f"{db}: no recorded entries" + (f" for suite '{args.suite}'" if args.suite else ""), highlight=False)
        return EXIT_OK
    table = Table(title=f"history: {db}" + (f" (suite {args.suite})" if args.suite else ""), title_justify="left")
    for col in ("scenario", "profile", "runs", f"pass (last {last})", "last verdicts", "onboarding p50", "update p50", "flaky"):
        table.add_column(col, no_wrap=True)
    for (scenario, profile), items in sorted(trend.items()):
        verdicts = [i["verdict"] for i in items]
        rate = verdicts.count("passed") / len(verdicts)
        rate_style = "green" if rate == 1 else ("red" if rate < 0.5 else "yellow")
        table.add_row(
            scenario,
            profile,
            str(totals.get((scenario, profile), len(items))),
            f"[{rate_style}]{rate:.0%}[/]",
            _glyphs(verdicts),
            _trend(items, "onboarding.time"),
            _trend(items, "update.duration"),
            "[bold red]FLAKY[/]" if (scenario, profile) in flaky else "",
        )
    names = [len(s) + len(p) for s, p in trend]
    _wide_print(table, 100 + max(names, default=0) + 2 * last)
    out.print("timings: median p50 of the earlier runs with the same backend, images and seed → the last run's", style="dim")
    if flaky:
        out.print(f"{len(flaky)} flaky cell(s): mixed verdicts for the same inputs (scenario, profile, backend, versions, seed)", style="red")
    return EXIT_OK


def _history_places(db: Path, args: argparse.Namespace) -> int:
    """``eden history --places``: each lab place's record, and whose fault the failures look like."""
    from eden import history

    window = max(20, args.last * 5)
    stats = history.place_stats(db, last=window, suite=args.suite)
    health: dict[str, tuple[str, list[str]]] = {}
    if args.lab is not None:
        from eden.lab.leases import LeaseStore
        from eden.lab.load import load_lab

        lab = load_lab(args.lab)
        with LeaseStore(lab.db_path) as store:
            for state in store.states(lab.names):
                events = [str(e["detail"] or "").split(":", 1)[0] for e in store.history(state.place, limit=200)
                          if e["event"] == "health"]
                health[state.place] = (state.health, events[-args.last:])
                stats.setdefault(state.place, history.place_record([]))
    if not stats:
        out.print(f"{db}: no entries ran on lab places (eden qualify --backend board records them)", highlight=False)
        return EXIT_OK
    flaky = history.flaky_boards(db, last=window, suite=args.suite)
    suspects = {b["place"] for b in flaky["boards"]}
    table = Table(title=f"lab places: {db}", title_justify="left")
    for col in ("place", "entries", "pass rate", f"last {args.last}", "health", "health trend", "flaky board"):
        table.add_column(col, no_wrap=True)
    glyph = {"good": "[green]●[/]", "bad": "[red]✗[/]", "unknown": "[dim]?[/]"}
    for place, st in sorted(stats.items()):
        rate = st["pass_rate"]
        style = "green" if rate == 1 else ("red" if rate is not None and rate < 0.5 else "yellow")
        now_health, trend = health.get(place, ("-", []))
        table.add_row(place, str(st["entries"]), "-" if rate is None else f"[{style}]{rate:.0%}[/]",
                      _glyphs(st["verdicts"][-args.last:]), now_health, "".join(glyph.get(t, "?") for t in trend) or "-",
                      "[bold red]FLAKY BOARD[/]" if place in suspects else "")
    _wide_print(table, 120)
    for b in flaky["boards"]:
        out.print(f"flaky board: {b['place']} failed {b['scenario']} on {b['profile']}, which passed on "
                  f"{', '.join(b['passed_on'])}", style="red", highlight=False)
    for sc in flaky["scenarios"]:
        out.print(f"flaky scenario (or a product bug): {sc['scenario']} on {sc['profile']} failed on "
                  f"{', '.join(sc['failed_on'])}", style="yellow", highlight=False)
    return EXIT_OK


def _trend(items: list[dict[str, Any]], timing: str) -> str:
    """The last run's p50 against the median of the earlier runs with the same inputs (backend,
    images, seed: history.same_inputs) in the window; other runs are not comparable."""
    from statistics import median

    from eden.history import same_inputs

    comparable = same_inputs(items)
    values = [((i.get("timings") or {}).get(timing) or {}).get("p50") for i in comparable]
    last = values[-1] if values else None
    earlier = [v for v in values[:-1] if v is not None]
    if last is None:
        return "-"
    if not earlier:
        return _secs(last)
    before = median(earlier)
    change = (last - before) / before if before else 0.0
    style = "red" if change > 0.1 else ("green" if change < -0.1 else "default")
    return f"{_secs(before)} → [{style}]{_secs(last)}[/]"


def _secs(value: float) -> str:
    return f"{value:.1f}s" if value < 100 else format_duration(round(value))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
