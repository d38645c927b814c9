"""``eden lab ...``: the places of a lab, who holds them and how healthy they are (wired into :mod:`eden.cli`).

These commands are for people. ``reserve`` takes a lease and exits, without heartbeats, so the lease
ends after its ``--ttl``; a run on ``--backend board`` keeps its own lease alive.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from eden.errors import EXIT_INVALID, EXIT_OK
from eden.lab.leases import HEALTH_STATES, Lease, LeaseStore, PlaceState, default_owner, when
from eden.lab.load import LoadedLab, load_lab
from eden.lab.model import place_drivers, place_methods
from eden.runtime.deadline import Deadline
from eden.terminal import err, out

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    c = sub.add_parser("lab", help="the boards of a lab: places, leases, health").add_subparsers(dest="lab_cmd", required=True)

    def cmd(name: str, help: str, *, json_out: bool = True) -> argparse.ArgumentParser:
        p = c.add_parser(name, help=help)
        p.add_argument("--lab", type=Path, required=True, metavar="FILE", help="the lab file (docs/lab.md)")
        if json_out:
            p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return p

    cmd("places", "list the places, their drivers, capabilities, health and lease")
    p = cmd("reserve", "take a lease on a place (no heartbeat: it ends after --ttl)")
    p.add_argument("place")
    p.add_argument("--owner", default=None, help="who holds it (default user@host:pid)")
    p.add_argument("--ttl", type=float, default=None, metavar="S", help="lease length in seconds (default: the lab's leases.ttl)")
    p.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait up to S seconds for a busy place (default 0)")
    p = cmd("release", "give a lease back (--token), or break any lease (--force, logged)")
    p.add_argument("place")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--token", default=None, help="the token 'eden lab reserve' printed")
    how.add_argument("--force", action="store_true", help="admin: break whatever lease the place has")
    p.add_argument("--by", default=None, help="who breaks it, for the log (default user@host:pid)")
    p = cmd("status", "lease and health of every place")
    p.add_argument("--history", type=int, default=0, metavar="N", help="also the last N lease log events")
    p = cmd("health", "mark a place's health (admin); --set good clears a bad place")
    p.add_argument("place")
    p.add_argument("--set", dest="health", required=True, choices=[h for h in HEALTH_STATES if h != "unknown"])
    p.add_argument("--reason", required=True)
    p.add_argument("--by", default=None, help="who marks it (default user@host:pid)")
    p = cmd("check", "run the health scenario of places now (default: the places that are due) and record their health")
    p.add_argument("places", nargs="*", metavar="PLACE")
    p.add_argument("--out", type=Path, default=None, help="health run folders (default reports/health-<time>)")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="health runs at once (default 2)")
    s = c.add_parser("standin", help="start a lab of stand-in boards (QEMU VMs wired like boards, docs/board.md) "
                                     "and run COMMAND against it, or wait for Ctrl-C",
                     usage="eden lab standin DIR [--profiles P,P,...] [--console tcp|rfc2217] [-- COMMAND ...]",
                     epilog="COMMAND (after --) runs with EDEN_LAB set to DIR/lab.yaml; the lab stops when it ends.")
    s.add_argument("dir", type=Path, metavar="DIR", help="where the stand-in lab lives (created; lab.yaml is written there)")
    s.add_argument("--profiles", default="qemu-x86_64,qemu-x86_64", metavar="P,P,...",
                   help="one board per hardware profile named (default two qemu-x86_64)")
    s.add_argument("--console", choices=["tcp", "rfc2217"], default="tcp", help="how ser2net serves the consoles")


def run(args: argparse.Namespace) -> int:
    if args.lab_cmd == "standin":
        return _standin(args)
    lab = load_lab(args.lab)  # InvalidInput -> file:line:col, exit 2 (eden.cli)
    if args.lab_cmd == "check":
        return _check(lab, args)
    if getattr(args, "place", None) is not None:
        lab.place(args.place)
    if args.lab_cmd == "reserve" and (args.wait < 0 or (args.ttl is not None and args.ttl < 1)):
        err.print("error: --wait must be 0 or more and --ttl at least 1 second", markup=False, highlight=False)
        return EXIT_INVALID
    with LeaseStore(lab.db_path) as store:
        if args.lab_cmd == "places":
            return _places(lab, store, args.json)
        if args.lab_cmd == "reserve":
            ttl = args.ttl if args.ttl is not None else lab.lab.leases.ttl
            lease = store.reserve(args.place, args.owner or default_owner(), ttl,
                                  wait=Deadline(args.wait) if args.wait > 0 else None)
            if args.json:
                print(json.dumps(lease.to_json()))
            else:
                out.print(f"reserved {lease.place} for {lease.owner} until {when(lease.expires_at)}\n"
                          f"token: {lease.token}  (eden lab release {lease.place} --lab {args.lab} --token {lease.token})",
                          markup=False, highlight=False)
            return EXIT_OK
        if args.lab_cmd == "release":
            return _release(store, args)
        if args.lab_cmd == "status":
            return _status(lab, store, args.json, args.history)
        if args.lab_cmd == "health":
            store.set_health(args.place, args.health, args.reason, args.by or default_owner())
            if args.json:
                print(json.dumps(_state_json(store.states([args.place])[0])))
            else:
                out.print(f"{args.place}: health {args.health} ({args.reason})", markup=False, highlight=False)
            return EXIT_OK
    return EXIT_INVALID


def _check(lab: LoadedLab, args: argparse.Namespace) -> int:
    """Health runs now: exit 0 when every place checked is good, 1 when one is bad (a failed check)."""
    from datetime import datetime

    from eden.lab.health import check_places, due_places

    for name in args.places:
        lab.place(name)
    with LeaseStore(lab.db_path) as store:
        places = list(args.places) or due_places(lab, store)
    if not places:
        out.print("no place is due for a health check", highlight=False)
        return EXIT_OK
    target = args.out or Path("reports") / f"health-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    results = check_places(lab, places, target, parallel=max(1, args.jobs))
    if args.json:
        print(json.dumps([{"place": r.place, "health": r.health, "reason": r.reason, "run_dir": str(r.run_dir),
                           "wall_seconds": r.wall_seconds} for r in results]))
    else:
        for r in results:
            style = "green" if r.health == "good" else "red"
            out.print(f"[{style}]{r.health:<4}[/] {escape(r.place)}  {r.wall_seconds:.0f}s  {escape(r.reason)}  ({escape(str(r.run_dir))})",
                      highlight=False)
    return EXIT_OK if all(r.health == "good" for r in results) else 1


def _standin(args: argparse.Namespace) -> int:
    """``eden lab standin DIR [-- COMMAND]``: try the board backend with no board at hand."""
    import os
    import signal
    import subprocess

    from eden.interrupt import raise_interrupted
    from eden.lab.standin_lab import build_standin_lab

    command: list[str] = list(getattr(args, "command_argv", None) or [])
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    from eden.profiles import load_profiles

    unknown = sorted(set(profiles) - set(load_profiles()))
    if not profiles or unknown:
        err.print(f"error: --profiles: unknown profile(s) {', '.join(unknown) or '(none given)'}", markup=False, highlight=False)
        return EXIT_INVALID
    signal.signal(signal.SIGTERM, raise_interrupted)  # SIGTERM stops the lab as Ctrl-C does
    with build_standin_lab(args.dir, profiles, console=args.console) as lab:
        err.print(f"stand-in lab: {len(lab.places)} board(s), lab file {lab.lab_file}", markup=False, highlight=False)
        if not command:
            err.print("press Ctrl-C to stop it", markup=False, highlight=False)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return EXIT_OK
        env = {**os.environ, "EDEN_LAB": str(lab.lab_file)}
        try:
            return subprocess.run(command, env=env).returncode
        except FileNotFoundError:
            err.print(f"error: command not found: {command[0]}", markup=False, highlight=False)
            return EXIT_INVALID
        except KeyboardInterrupt:
            return 130


def _release(store: LeaseStore, args: argparse.Namespace) -> int:
    broken: Lease | None = None
    if args.force:
        broken = store.release_place(args.place, args.by or default_owner())
    else:
        store.release(Lease(args.place, "", args.token, 0.0, 0.0))  # LeaseLost (exit 2) if another holds it
    if args.json:
        print(json.dumps({"place": args.place, "released": True, "broken": broken.to_json() if broken else None}))
    elif args.force:
        what = f"broke the lease of {broken.owner}" if broken else "no lease was held"
        out.print(f"{args.place}: {what}", markup=False, highlight=False)
    else:
        out.print(f"{args.place}: released", markup=False, highlight=False)
    return EXIT_OK


def _state_json(state: PlaceState) -> dict[str, JsonValue]:
    lease: JsonValue = None
    if state.lease is not None:
        lease = {"owner": state.lease.owner, "acquired_at": state.lease.acquired_at, "expires_at": state.lease.expires_at}
    return {"place": state.place, "health": state.health, "reason": state.reason, "health_at": state.health_at,
            "checked_by": state.checked_by, "lease": lease}


def _lease_text(state: PlaceState) -> str:
    if state.lease is None:
        return "free"
    left = max(0.0, state.lease.expires_at - time.time())
    return f"{escape(state.lease.owner)} ({left:.0f}s left)"


_HEALTH_STYLE = {"good": "green", "bad": "red", "unknown": "yellow"}


def _health_text(state: PlaceState) -> str:
    text = f"[{_HEALTH_STYLE.get(state.health, 'white')}]{state.health}[/]"
    return f"{text} ({escape(state.reason)})" if state.reason else text


def _places(lab: LoadedLab, store: LeaseStore, as_json: bool) -> int:
    states = {s.place: s for s in store.states(lab.names)}
    if as_json:
        rows: list[JsonValue] = []
        for name, place in lab.lab.places.items():
            row = _state_json(states[name])
            drivers: dict[str, JsonValue] = dict(place_drivers(place))
            row.update({"profile": place.profile, "drivers": drivers,
                        "capabilities": list(sorted(place_methods(place))), "tags": list(place.tags)})
            rows.append(row)
        print(json.dumps({"lab": lab.lab.lab, "places": rows}, indent=2))
        return EXIT_OK
    table = Table(title=f"lab {lab.lab.lab}: {lab.path}", title_justify="left")
    for col in ("place", "profile", "drivers", "capabilities", "tags", "health", "lease"):
        table.add_column(col)
    for name, place in lab.lab.places.items():
        drivers_text = ", ".join(f"{k}: {v}" for k, v in place_drivers(place).items()) or "-"
        table.add_row(name, place.profile, escape(drivers_text), ", ".join(sorted(place_methods(place))) or "-",
                      ", ".join(place.tags) or "-", _health_text(states[name]), _lease_text(states[name]))
    _print_wide(table)
    return EXIT_OK


def _print_wide(table: Table) -> None:
    """Not squeezed to 80 columns on a pipe (as ``eden profiles``)."""
    from eden.cli import _wide_print

    widths = [max((len(str(c)) for c in col.cells), default=0) for col in table.columns]
    _wide_print(table, sum(max(w, len(str(col.header))) + 3 for w, col in zip(widths, table.columns)) + 1)


def _status(lab: LoadedLab, store: LeaseStore, as_json: bool, history: int) -> int:
    states = store.states(lab.names)
    events = store.history(limit=history) if history > 0 else []
    if as_json:
        doc: dict[str, JsonValue] = {"lab": lab.lab.lab, "places": [_state_json(s) for s in states]}
        if history > 0:
            doc["history"] = [dict(e) for e in events]
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    table = Table(title=f"lab {lab.lab.lab}", title_justify="left")
    for col in ("place", "lease", "until", "health", "checked"):
        table.add_column(col)
    for s in states:
        checked = f"{when(s.health_at)} by {s.checked_by}" if s.health_at is not None else "-"
        table.add_row(s.place, _lease_text(s), when(s.lease.expires_at) if s.lease else "-", _health_text(s), checked)
    _print_wide(table)
    if events:
        log = Table(title="recent events", title_justify="left")
        for col in ("at", "place", "event", "owner", "detail"):
            log.add_column(col)
        for e in events:
            at = e["at"]
            log.add_row(when(at) if isinstance(at, float) else "-", str(e["place"]), str(e["event"]),
                        escape(str(e["owner"])), escape(str(e["detail"] or "")))
        _print_wide(log)
    return EXIT_OK
