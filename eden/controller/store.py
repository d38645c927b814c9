"""SQLite persistence (WAL): everything the controller acknowledges is committed before it answers.

``synchronous=NORMAL`` in WAL mode survives a killed process (SIGKILL) without an fsync per
commit; only a power loss can drop the last transactions.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Mapping

from eden.controller.admin_types import ContentRow, Event, JsonValue, StoredDevice, Template, TemplateStatus

BUSY_BACKOFF = 1.0  # s after a failed wait for the lock during which writes do not wait again

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (serial TEXT PRIMARY KEY, idx INTEGER NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT, serial TEXT NOT NULL, digest TEXT NOT NULL,
    pcrs TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL, UNIQUE (serial, digest));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, t REAL NOT NULL, kind TEXT NOT NULL,
    serial TEXT, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS content (
    name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    pcr13 TEXT, created REAL NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS firmware_pcrs (serial TEXT PRIMARY KEY, pcrs TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS last_payloads (
    serial TEXT NOT NULL, kind TEXT NOT NULL, t REAL NOT NULL, data BLOB NOT NULL, PRIMARY KEY (serial, kind));
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, serial TEXT NOT NULL, t REAL NOT NULL,
    path TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS logs_by_serial ON logs (serial, id);
CREATE INDEX IF NOT EXISTS events_by_serial ON events (serial, kind, id);
"""


class Store:
    def __init__(self, path: Path, *, busy_ms: int = 5000) -> None:
        """``busy_ms``: how long a write waits for a lock another process holds. The server keeps it
        short (it waits on the event loop) and answers 503, which clients retry."""
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout=5000")  # opening and the schema may wait longer, once
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.busy_ms = int(busy_ms)
        self.db.execute(f"PRAGMA busy_timeout={self.busy_ms}")
        self._in_tx = False
        self._busy_until = 0.0  # monotonic time until which a write does not wait for the lock

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ transactions --
    def begin(self) -> None:
        """Take the write lock. Waits up to ``busy_ms`` for another process; after such a wait
        failed, writes in the next second fail at once, so a lock held for long costs the caller's
        thread (the server's event loop) at most ``busy_ms`` per second."""
        if self._in_tx:
            return
        fast = time.monotonic() < self._busy_until
        try:
            if fast:
                self.db.execute("PRAGMA busy_timeout=0")
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                self._busy_until = time.monotonic() + BUSY_BACKOFF
            raise
        finally:
            if fast:
                self.db.execute(f"PRAGMA busy_timeout={self.busy_ms}")
        self._in_tx = True

    def commit(self) -> None:
        if self._in_tx:
            self.db.execute("COMMIT")
            self._in_tx = False

    def rollback(self) -> None:
        if self._in_tx:
            self._in_tx = False
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")

    def forget_tx(self) -> None:
        self._in_tx = False

    # ------------------------------------------------------------------------- rows --
    def get_meta(self, key: str, default: JsonValue = None) -> JsonValue:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def put_meta(self, key: str, value: JsonValue) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def put_device(self, serial: str, idx: int, state: StoredDevice) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO devices(serial, idx, state) VALUES (?, ?, ?)",
            (serial, idx, json.dumps(state, default=str)),
        )

    def device(self, serial: str) -> StoredDevice | None:
        row = self.db.execute("SELECT state FROM devices WHERE serial=?", (serial,)).fetchone()
        return json.loads(row[0]) if row else None

    def devices(self) -> list[tuple[str, int, StoredDevice]]:
        rows = self.db.execute("SELECT serial, idx, state FROM devices ORDER BY idx").fetchall()
        return [(s, i, json.loads(st)) for s, i, st in rows]

    def add_template(self, serial: str, digest: str, pcrs: dict[str, str], status: TemplateStatus) -> int:
        cur = self.db.execute(
            "INSERT OR IGNORE INTO templates(serial, digest, pcrs, status, created) VALUES (?, ?, ?, ?, ?)",
            (serial, digest, json.dumps(pcrs), status, time.time()),
        )
        if cur.rowcount:
            return int(cur.lastrowid or 0)
        row = self.db.execute("SELECT id FROM templates WHERE serial=? AND digest=?", (serial, digest)).fetchone()
        return int(row[0])

    def set_template_status(self, tid: int, status: TemplateStatus) -> None:
        self.db.execute("UPDATE templates SET status=? WHERE id=?", (status, tid))

    def templates(self) -> list[Template]:
        rows = self.db.execute("SELECT id, serial, digest, pcrs, status, created FROM templates ORDER BY id").fetchall()
        return [
            {"id": r[0], "serial": r[1], "digest": r[2], "pcrs": json.loads(r[3]), "status": r[4], "created": r[5]}
            for r in rows
        ]

    def put_content(self, name: str, version: str, sha256: str, size: int, pcr13: str | None) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO content(name, version, sha256, size, pcr13, created) VALUES (?, ?, ?, ?, ?, ?)",
            (name, version, sha256, size, pcr13, time.time()),
        )

    def content(self) -> list[ContentRow]:
        rows = self.db.execute("SELECT name, version, sha256, size, pcr13, created FROM content ORDER BY created, name").fetchall()
        return [{"name": r[0], "version": r[1], "sha256": r[2], "size": r[3], "pcr13": r[4], "created": r[5]} for r in rows]

    def put_firmware_pcrs(self, serial: str, pcrs: dict[str, str]) -> None:
        """The trust-on-first-use PCR values (all quoted PCRs but 13) learned for a device."""
        self.db.execute("INSERT OR REPLACE INTO firmware_pcrs(serial, pcrs, created) VALUES (?, ?, ?)",
                        (serial, json.dumps(pcrs), time.time()))

    def forget_firmware_pcrs(self, serial: str) -> None:
        self.db.execute("DELETE FROM firmware_pcrs WHERE serial=?", (serial,))

    def firmware_pcrs(self) -> dict[str, dict[str, str]]:
        return {r[0]: json.loads(r[1]) for r in self.db.execute("SELECT serial, pcrs FROM firmware_pcrs")}

    def add_event(self, kind: str, serial: str | None, data: Mapping[str, object]) -> int:
        cur = self.db.execute(
            "INSERT INTO events(t, kind, serial, data) VALUES (?, ?, ?, ?)",
            (time.time(), kind, serial, json.dumps(data, default=str)),
        )
        return int(cur.lastrowid or 0)

    def events_after(self, since: int, limit: int = 1000) -> list[Event]:
        rows = self.db.execute(
            "SELECT id, t, kind, serial, data FROM events WHERE id > ? ORDER BY id LIMIT ?", (since, limit)
        ).fetchall()
        return [{"id": r[0], "t": r[1], "kind": r[2], "serial": r[3], "data": json.loads(r[4])} for r in rows]

    def trim_events(self, kind: str, serial: str, keep: int) -> None:
        """Delete the device's events of ``kind`` but the newest ``keep``."""
        self.db.execute(
            "DELETE FROM events WHERE serial=? AND kind=? AND id < (SELECT id FROM events WHERE serial=? AND kind=? "
            "ORDER BY id DESC LIMIT 1 OFFSET ?)", (serial, kind, serial, kind, keep - 1))

    def last_event_id(self) -> int:
        row = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        return int(row[0])

    def add_log(self, serial: str, path: str, data: bytes) -> None:
        self.db.execute("INSERT INTO logs(serial, t, path, data) VALUES (?, ?, ?, ?)", (serial, time.time(), path, data))

    def put_last_payload(self, serial: str, kind: str, data: bytes) -> None:
        """The last report of one kind eden does not model (one row per device and kind: bounded)."""
        self.db.execute("INSERT OR REPLACE INTO last_payloads(serial, kind, t, data) VALUES (?, ?, ?, ?)",
                        (serial, kind, time.time(), data))

    def last_payload(self, serial: str, kind: str) -> tuple[float, bytes] | None:
        row = self.db.execute("SELECT t, data FROM last_payloads WHERE serial=? AND kind=?", (serial, kind)).fetchone()
        return (float(row[0]), bytes(row[1])) if row else None

    def log_bytes(self, serial: str) -> int:
        return int(self.db.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM logs WHERE serial=?", (serial,)).fetchone()[0])

    def trim_logs(self, serial: str, drop: int) -> int:
        """Delete the device's oldest log rows until at least ``drop`` bytes are gone: bytes deleted."""
        gone, ids = 0, []
        for row_id, size in self.db.execute("SELECT id, LENGTH(data) FROM logs WHERE serial=? ORDER BY id", (serial,)):
            if gone >= drop:
                break
            ids.append((row_id,))
            gone += int(size)
        self.db.executemany("DELETE FROM logs WHERE id=?", ids)
        return gone

    def executemany(self, sql: str, rows: Iterable[tuple[object, ...]]) -> None:
        self.db.executemany(sql, rows)


def is_busy(exc: BaseException) -> bool:
    """A write refused because another process holds the database lock (answer 503, retry)."""
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))
