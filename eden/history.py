"""The results history: every suite run recorded in a SQLite database (WAL mode).

Default location ``reports/history.db``; ``--history``/``--db`` or ``$EDEN_HISTORY`` override it.

Tables:

* ``suite_runs`` - one row per ``eden qualify``: suite, backend, start/finish, host, harness
  versions, counts, verdict, output folder.
* ``entries`` - one row per entry: suite, scenario, profile (``-`` for an own fleet), backend,
  image versions (JSON), seed, replication, verdict, wall and simulated seconds, key timings (JSON),
  artefact folder, start, and the lab places its devices ran on (JSON, ``--backend board``).

An entry is **flaky** when the same inputs gave mixed verdicts (passed and failed/broken): the same
scenario, profile, backend, image versions and seed; on real backends (not ``sim``) also across
seeds, since a real device is never the same twice.

On a lab (``--backend board``) a failure has two suspects, the board and the release. A place is a
**flaky board** when it failed entries that other places passed with the same inputs (and those
places never failed them); inputs that failed on two or more places are a **flaky scenario** (or a
real product problem), whatever board they ran on (:func:`flaky_boards`).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

from eden.reports.model import SuiteResults

HISTORY_ENV = "EDEN_HISTORY"
DEFAULT_DB = Path("reports") / "history.db"
SCHEMA_VERSION = 2

Key = tuple[str, str]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS suite_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    suite TEXT NOT NULL,
    suite_file TEXT NOT NULL DEFAULT '',
    backend TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT NOT NULL DEFAULT '',
    wall_seconds REAL,
    jobs INTEGER,
    host TEXT NOT NULL DEFAULT '',
    versions TEXT NOT NULL DEFAULT '{}',
    verdict TEXT NOT NULL,
    passed INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    broken INTEGER NOT NULL,
    out_dir TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES suite_runs(id) ON DELETE CASCADE,
    entry_id TEXT NOT NULL,
    suite TEXT NOT NULL,
    scenario TEXT NOT NULL,
    profile TEXT NOT NULL,
    backend TEXT NOT NULL,
    versions TEXT NOT NULL,
    seed INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    wall_seconds REAL,
    simulated_seconds REAL,
    timings TEXT NOT NULL DEFAULT '{}',
    artefacts TEXT NOT NULL DEFAULT '',
    started TEXT NOT NULL DEFAULT '',
    error TEXT,
    places TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS entries_key ON entries (scenario, profile, id);
CREATE INDEX IF NOT EXISTS entries_suite ON entries (suite, id);
"""


def default_db() -> Path:
    """``$EDEN_HISTORY`` or ``reports/history.db``."""
    env = os.environ.get(HISTORY_ENV)
    return Path(env) if env else DEFAULT_DB


@contextmanager
def connect(db: Path, *, create: bool = True) -> Iterator[sqlite3.Connection]:
    """A connection with the schema in place (WAL mode, foreign keys on); commits on success."""
    db = Path(db)
    if create:
        db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(_SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
        if "places" not in columns:  # a version-1 database: entries had no places
            conn.execute("ALTER TABLE entries ADD COLUMN places TEXT NOT NULL DEFAULT '{}'")
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema' AND CAST(value AS INTEGER) < ?",
                     (str(SCHEMA_VERSION), SCHEMA_VERSION))
        yield conn
        conn.commit()
    finally:
        conn.close()


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def record(results: SuiteResults, out_dir: Path, db: Path) -> int:
    """Record one suite run and its entries; return the run's id."""
    out_dir = Path(out_dir).resolve()
    counts = results.counts()
    with connect(db) as conn:
        cur = conn.execute(
            "INSERT INTO suite_runs (suite, suite_file, backend, started, finished, wall_seconds, jobs, host,"
            " versions, verdict, passed, failed, broken, out_dir) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                results.suite,
                results.suite_file,
                results.backend,
                results.started,
                results.finished,
                results.wall_seconds,
                results.jobs,
                results.host,
                _json(results.versions),
                results.verdict,
                counts["passed"],
                counts["failed"],
                counts["broken"],
                str(out_dir),
            ),
        )
        run_id = int(cur.lastrowid or 0)
        conn.executemany(
            "INSERT INTO entries (run_id, entry_id, suite, scenario, profile, backend, versions, seed, replication,"
            " verdict, wall_seconds, simulated_seconds, timings, artefacts, started, error, places)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    run_id,
                    e.id,
                    results.suite,
                    e.scenario,
                    e.key[1],
                    e.backend,
                    _json(e.versions),
                    e.seed,
                    e.replication,
                    e.verdict,
                    e.wall_seconds,
                    e.simulated_seconds,
                    _json(e.timings),
                    str(out_dir / e.run_dir) if e.run_dir else "",
                    e.started or results.started,
                    e.error,
                    _json(e.places),
                )
                for e in results.entries
            ],
        )
    return run_id


def _rows(conn: sqlite3.Connection, suite: str | None) -> list[sqlite3.Row]:
    sql = "SELECT e.*, r.started AS run_started FROM entries e JOIN suite_runs r ON r.id = e.run_id"
    args: tuple[Any, ...] = ()
    if suite is not None:
        sql += " WHERE e.suite = ?"
        args = (suite,)
    return list(conn.execute(sql + " ORDER BY e.id", args))


def _by_key(db: Path, suite: str | None) -> dict[Key, list[sqlite3.Row]]:
    if not Path(db).exists():
        return {}
    with connect(db, create=False) as conn:
        rows = _rows(conn, suite)
    out: dict[Key, list[sqlite3.Row]] = {}
    for row in rows:
        out.setdefault((row["scenario"], row["profile"]), []).append(row)
    return out


def _item(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "started": row["started"] or row["run_started"],
        "verdict": row["verdict"],
        "timings": json.loads(row["timings"] or "{}"),
        "seed": row["seed"],
        "versions": json.loads(row["versions"] or "{}"),
        "replication": row["replication"],
        "backend": row["backend"],
        "suite": row["suite"],
        "run": row["run_id"],
        "wall_seconds": row["wall_seconds"],
        "artefacts": row["artefacts"],
        "places": json.loads(row["places"] or "{}"),
    }


def trends(db: Path, keys: Iterable[Key] | None = None, last: int = 10, *, suite: str | None = None) -> dict[Key, list[dict[str, Any]]]:
    """The last ``last`` recorded entries per (scenario, profile), oldest first.

    Items: ``{started, verdict, timings, seed, versions, replication, backend, suite, run, ...}``.
    ``keys`` limits the answer to those cells; a missing database gives ``{}``."""
    wanted = set(keys) if keys is not None else None
    out: dict[Key, list[dict[str, Any]]] = {}
    for key, rows in _by_key(db, suite).items():
        if wanted is not None and key not in wanted:
            continue
        out[key] = [_item(r) for r in rows[-last:]] if last > 0 else []
    return out


def same_inputs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items (from :func:`trends`) with the same inputs as the last one: backend, image versions
    and seed. A timing trend compares only these; another seed or image is another experiment."""
    if not items:
        return []
    last = items[-1]
    key = (last.get("backend"), last.get("versions"), last.get("seed"))
    return [i for i in items if (i.get("backend"), i.get("versions"), i.get("seed")) == key]


def totals(db: Path, *, suite: str | None = None) -> dict[Key, int]:
    """Number of recorded entries per (scenario, profile)."""
    return {key: len(rows) for key, rows in _by_key(db, suite).items()}


def flaky(db: Path, last: int = 20, *, suite: str | None = None) -> list[dict[str, Any]]:
    """Inputs with mixed verdicts (passed and failed/broken) among each cell's last ``last`` entries.

    Same scenario, profile, backend, versions and seed; on real backends across seeds too. Each
    item: ``{scenario, profile, backend, versions, seed (None across seeds), verdicts, passed,
    failed, broken}``."""
    found: list[dict[str, Any]] = []
    for (scenario, profile), rows in _by_key(db, suite).items():
        groups: dict[tuple[Any, ...], list[sqlite3.Row]] = {}
        for row in rows[-last:] if last > 0 else []:
            seed = row["seed"] if row["backend"] == "sim" else None
            groups.setdefault((row["backend"], row["versions"], seed), []).append(row)
        for (backend, versions, seed), members in groups.items():
            verdicts = [m["verdict"] for m in members]
            if "passed" in verdicts and any(v != "passed" for v in verdicts):
                found.append(
                    {
                        "scenario": scenario,
                        "profile": profile,
                        "backend": backend,
                        "versions": json.loads(versions),
                        "seed": seed,
                        "verdicts": verdicts,
                        "passed": verdicts.count("passed"),
                        "failed": verdicts.count("failed"),
                        "broken": verdicts.count("broken"),
                    }
                )
    return found


class PlaceRecord(TypedDict):
    """One lab place's entries in the history (:func:`place_stats`)."""

    entries: int
    passed: int
    failed: int
    broken: int
    verdicts: list[str]
    pass_rate: float | None


class FlakyBoard(TypedDict):
    scenario: str
    profile: str
    backend: str
    versions: dict[str, str]
    places: dict[str, list[str]]
    """Place -> its verdicts for these inputs, in run order."""
    place: str
    passed_on: list[str]


class FlakyScenario(TypedDict):
    scenario: str
    profile: str
    backend: str
    versions: dict[str, str]
    places: dict[str, list[str]]
    failed_on: list[str]


class FlakyPlaces(TypedDict):
    boards: list[FlakyBoard]
    scenarios: list[FlakyScenario]


def _place_rows(db: Path, suite: str | None, last: int) -> list[sqlite3.Row]:
    """The last ``last`` entries per (scenario, profile) that ran on lab places."""
    return [r for rows in _by_key(db, suite).values() for r in (rows[-last:] if last > 0 else [])
            if json.loads(r["places"] or "{}")]


def place_stats(db: Path, last: int = 50, *, suite: str | None = None) -> dict[str, PlaceRecord]:
    """Per lab place: entries run there (an entry with several devices counts for each of its
    places), passed / failed / broken, pass rate and the verdicts in run order."""
    verdicts: dict[str, list[str]] = {}
    for row in sorted(_place_rows(db, suite, last), key=lambda r: r["id"]):
        for place in sorted(set(json.loads(row["places"]).values())):
            verdicts.setdefault(place, []).append(str(row["verdict"]))
    return {place: place_record(v) for place, v in verdicts.items()}


def place_record(verdicts: list[str]) -> PlaceRecord:
    """Counts and pass rate of one place's verdicts (anything but passed/failed counts as broken)."""
    passed, failed = verdicts.count("passed"), verdicts.count("failed")
    return {"entries": len(verdicts), "passed": passed, "failed": failed, "broken": len(verdicts) - passed - failed,
            "verdicts": list(verdicts), "pass_rate": passed / len(verdicts) if verdicts else None}


def flaky_boards(db: Path, last: int = 50, *, suite: str | None = None) -> FlakyPlaces:
    """Failures told apart by where they happened, among entries with the same inputs (scenario,
    profile, backend, image versions; any seed: a board is never the same twice).

    ``boards``: a place that failed (or broke) inputs that at least one other place passed while
    no other place failed them; ``scenarios``: inputs that failed on two or more places. Items name
    the scenario, profile, versions and, per place, its verdicts."""
    groups: dict[tuple[str, str, str, str], dict[str, list[str]]] = {}
    for row in _place_rows(db, suite, last):
        key = (row["scenario"], row["profile"], row["backend"], row["versions"])
        for place in set(json.loads(row["places"]).values()):
            groups.setdefault(key, {}).setdefault(place, []).append(row["verdict"])
    boards: list[FlakyBoard] = []
    scenarios: list[FlakyScenario] = []
    for (scenario, profile, backend, versions), by_place in sorted(groups.items()):
        failing = sorted(p for p, v in by_place.items() if any(x != "passed" for x in v))
        passing = sorted(p for p, v in by_place.items() if "passed" in v and all(x == "passed" for x in v))
        places = {p: by_place[p] for p in sorted(by_place)}
        if len(failing) == 1 and passing:
            boards.append({"scenario": scenario, "profile": profile, "backend": backend, "versions": json.loads(versions),
                           "places": places, "place": failing[0], "passed_on": passing})
        elif len(failing) >= 2:
            scenarios.append({"scenario": scenario, "profile": profile, "backend": backend, "versions": json.loads(versions),
                              "places": places, "failed_on": failing})
    return {"boards": boards, "scenarios": scenarios}
