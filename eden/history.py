"""The results history: every suite run recorded in a SQLite database (WAL mode).

Default location ``reports/history.db``; ``--history``/``--db`` or ``$EDEN_HISTORY`` override it.

Tables:

* ``suite_runs`` - one row per ``eden qualify``: suite, backend, start/finish, host, harness
  versions, counts, verdict, output folder.
* ``entries`` - one row per entry: suite, scenario, profile (``-`` for an own fleet), backend,
  image versions (JSON), seed, replication, verdict, wall and simulated seconds, key timings (JSON),
  artefact folder, start.

An entry is **flaky** when the same inputs gave mixed verdicts (passed and failed/broken): the same
scenario, profile, backend, image versions and seed; on real backends (not ``sim``) also across
seeds, since a real device is never the same twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eden.reports.model import SuiteResults

HISTORY_ENV = "EDEN_HISTORY"
DEFAULT_DB = Path("reports") / "history.db"
SCHEMA_VERSION = 1

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
    error TEXT
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
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
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
            " verdict, wall_seconds, simulated_seconds, timings, artefacts, started, error)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
