"""The health gate: a place takes jobs only after its health scenario passed (docs/lab.md "Health").

A place's health scenario (``health.scenarios`` in the lab file, else
``scenarios/health-<profile>.yaml``) powers the board on, sees it on its console, onboards it,
checks the version eden wrote and logs in over SSH. It runs as a normal ``eden run --backend
board`` restricted to that one place (``EDEN_LAB_PLACES``), in health mode (``EDEN_LAB_HEALTH``:
the SSH check, and a place marked bad may be leased for it), in a process of its own, so a health
run is exactly what a job would do to the board.

The outcome goes into the lease store: passed -> ``good``; failed expectations or a broken run
(no console, a PDU that did nothing, no SSH) -> ``bad`` with the reason. A bad place takes no job
(the board backend skips it) until a later health run passes or an admin marks it good
(``eden lab health PLACE --set good``). The gate checks the places that are *due*: never
checked, bad, or last checked longer ago than ``health.every``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from eden.lab.leases import LeaseStore
from eden.lab.load import GENERIC_HEALTH, LoadedLab

HEALTH_WAIT = 900.0
"""Seconds a health run waits for its place's lease (a job may still hold it)."""
HEALTH_TIMEOUT = 3600.0
"""A health run that takes longer than this is killed, and the place is bad."""
GATE = "health-gate"


@dataclass(frozen=True)
class HealthResult:
    place: str
    health: str
    """``good`` or ``bad``."""
    reason: str
    run_dir: Path
    wall_seconds: float


def due_places(lab: LoadedLab, store: LeaseStore, profiles: Iterable[str] | None = None, *,
               now: float | None = None) -> list[str]:
    """Places of ``profiles`` (all when None) never checked, bad, or checked longer ago than ``health.every``."""
    wanted = set(profiles) if profiles is not None else None
    names = [n for n, p in lab.lab.places.items() if wanted is None or p.profile in wanted]
    now = time.time() if now is None else now
    every = lab.lab.health.every
    return [st.place for st in store.states(names)
            if st.health != "good" or st.health_at is None or now - st.health_at > every]


def check_place(lab: LoadedLab, place: str, out_dir: Path, *, wait: float = HEALTH_WAIT,
                timeout: float = HEALTH_TIMEOUT) -> HealthResult:
    """Run the place's health scenario now and record its health; never raises for a bad board."""
    profile = lab.place(place).profile
    scenario = lab.health_scenario(profile)
    run_dir = out_dir / place
    t0 = time.monotonic()
    if scenario == GENERIC_HEALTH and scenario.is_file():
        scenario = _for_profile(scenario, profile, run_dir)
    if not scenario.is_file():
        result = HealthResult(place, "bad", f"no health scenario for profile {profile} ({scenario})", run_dir, 0.0)
    else:
        env = {**os.environ, "EDEN_LAB": str(lab.path.resolve()), "EDEN_LAB_PLACES": place, "EDEN_LAB_HEALTH": "1",
               "EDEN_LAB_WAIT": f"{wait:g}"}
        argv = [sys.executable, "-m", "eden", "run", str(scenario), "--backend", "board", "--out", str(run_dir),
                "--quiet", "--no-html"]
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "health-run.log", "wb") as log:
            try:
                rc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                rc = -1
        result = HealthResult(place, *_verdict(rc, run_dir, timeout), run_dir, round(time.monotonic() - t0, 1))
    store = LeaseStore(lab.db_path)
    try:
        store.set_health(place, result.health, result.reason, GATE)
    finally:
        store.close()
    return result


def _for_profile(generic: Path, profile: str, run_dir: Path) -> Path:
    """eden's generic health scenario with every fleet entry on ``profile`` (kept in the run dir)."""
    import yaml

    data = yaml.safe_load(generic.read_text())
    for entry in data.get("fleet") or []:
        entry["profile"] = profile
    data["name"] = f"health-{profile}"
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / f"health-{profile}.yaml"
    target.write_text(f"# {generic} with the place's profile\n" + yaml.safe_dump(data, sort_keys=False))
    return target


def _verdict(rc: int, run_dir: Path, timeout: float) -> tuple[str, str]:
    summary: dict[str, object] = {}
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        pass
    if rc == 0:
        return "good", "health scenario passed"
    if rc == -1:
        return "bad", f"health run did not finish within {timeout:.0f} s"
    if rc == 1:
        records = summary.get("expectations")
        failed = [e for e in records if isinstance(e, dict) and e.get("status") != "passed"] if isinstance(records, list) else []
        what = "; ".join(f"{e.get('name')}: {e.get('status')}" for e in failed[:3])
        return "bad", f"health scenario failed: {what or 'see ' + str(run_dir)}"
    error = str(summary.get("error") or "")
    if not error:
        log = run_dir / "health-run.log"
        error = log.read_text(errors="replace").strip().splitlines()[-1] if log.is_file() and log.stat().st_size else ""
    return "bad", f"broken: {error[:400] or f'exit {rc}'}"


def check_places(lab: LoadedLab, places: list[str], out_dir: Path, *, parallel: int = 2,
                 wait: float = HEALTH_WAIT) -> list[HealthResult]:
    """Health runs for ``places``, ``parallel`` at a time; results in the order given."""
    if not places:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(places)))) as pool:
        return list(pool.map(lambda p: check_place(lab, p, out_dir, wait=wait), places))
