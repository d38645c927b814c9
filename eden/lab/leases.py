"""Who holds which board: leases on a lab's places, in one SQLite file every eden process shares.

A lease is exclusive and ends by itself ``ttl`` seconds after its last heartbeat, so a holder that
crashes (kill -9, a lost laptop) blocks a board for at most one TTL and never needs cleaning up.
Every write runs in ``BEGIN IMMEDIATE``: concurrent processes take the write lock in turn, so two
can never both see a place free. The WAL journal with ``synchronous=FULL`` keeps every committed
record through a crash of the writer.

Times are wall-clock epoch seconds (``time.time()``), not monotonic: a lease is read by other
processes and after reboots, and a monotonic clock means nothing outside the process (and the boot)
that read it. A wall-clock step moves every expiry by the step; with TTLs of minutes that is the
lesser harm.
"""

from __future__ import annotations

import getpass
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import TracebackType

from eden.errors import InfrastructureError
from eden.runtime.deadline import Deadline

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BUSY_TIMEOUT = 10.0
"""Seconds a write waits for another process's write lock; writes take milliseconds."""
LOG_KEEP = 10_000
"""Log rows kept; older ones are dropped so the file stays small on a lab that runs for years."""
HEALTH_STATES = ("unknown", "good", "bad")

_SCHEMA = """
CREATE TABLE leases (
    place TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    token TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE health (
    place TEXT PRIMARY KEY,
    health TEXT NOT NULL CHECK (health IN ('unknown', 'good', 'bad')),
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    by TEXT NOT NULL
);
CREATE TABLE log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    place TEXT NOT NULL,
    event TEXT NOT NULL,
    owner TEXT NOT NULL,
    token TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX log_place ON log (place, id);
"""


def when(epoch: float) -> str:
    """An epoch time as local ISO text, for messages."""
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def default_owner() -> str:
    """``user@host:pid``: enough to find who holds a board and which process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container uid without a passwd entry
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Lease:
    place: str
    owner: str
    token: str
    """Proof of holding: only the token's bearer may heartbeat or release the lease."""
    acquired_at: float
    expires_at: float

    def to_json(self) -> dict[str, str | float]:
        return {"place": self.place, "owner": self.owner, "token": self.token,
                "acquired_at": self.acquired_at, "expires_at": self.expires_at}


@dataclass(frozen=True)
class PlaceState:
    place: str
    lease: Lease | None
    """The live lease, or None when the place is free (an expired lease is free)."""
    health: str
    reason: str
    health_at: float | None
    checked_by: str


class PlaceBusy(InfrastructureError):
    """The place (or every candidate place) is held by someone else; the message names who, and until when."""

    def __init__(self, message: str, holder: Lease | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class LeaseLost(InfrastructureError):
    """The lease is not ours any more: it expired and was taken, or an admin broke it."""


def _busy_message(holder: Lease, now: float) -> str:
    return (f"place '{holder.place}' is held by {holder.owner} until {when(holder.expires_at)} "
            f"(in {max(0.0, holder.expires_at - now):.0f}s)")


def _lease(row: sqlite3.Row) -> Lease:
    return Lease(row["place"], row["owner"], row["token"], row["acquired_at"], row["expires_at"])


class LeaseStore:
    """The lease, health and log tables of one lab; safe to share between threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))  # 0600 before SQLite writes a byte
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise InfrastructureError(f"cannot open the lease store {self.path}: {exc}") from None
        self._db.row_factory = sqlite3.Row
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise InfrastructureError(f"{self.path} is not a lease store ({exc})") from None
        except InfrastructureError:
            self._db.close()
            raise

    def _setup(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        self._check_version(self._db.execute("PRAGMA user_version").fetchone()[0])
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(version)
            if version == 0:  # executescript would COMMIT the transaction: one statement at a time
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise InfrastructureError(
                f"the lease store {self.path} has schema version {version}, newer than this eden knows "
                f"({SCHEMA_VERSION}); it was written by a newer eden: upgrade eden, or point leases.db elsewhere")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the database's write lock from its first statement."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise InfrastructureError(f"lease store {self.path}: {exc}") from None
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def _log(self, db: sqlite3.Connection, at: float, place: str, event: str, owner: str,
             token: str | None = None, detail: str = "") -> None:
        cur = db.execute("INSERT INTO log (at, place, event, owner, token, detail) VALUES (?, ?, ?, ?, ?, ?)",
                         (at, place, event, owner, token, detail))
        if cur.lastrowid is not None and cur.lastrowid % 100 == 0:
            db.execute("DELETE FROM log WHERE id <= ?", (cur.lastrowid - LOG_KEEP,))
        log.info("lease %s: %s %s %s", event, place, owner, detail)

    def _held(self, db: sqlite3.Connection, place: str) -> Lease | None:
        row = db.execute("SELECT * FROM leases WHERE place = ?", (place,)).fetchone()
        return _lease(row) if row is not None else None

    def _try_take(self, db: sqlite3.Connection, place: str, owner: str, ttl: float, now: float) -> Lease | None:
        """Take ``place`` if it is free (or its lease expired); None if someone holds it."""
        held = self._held(db, place)
        if held is not None:
            if held.expires_at > now:
                return None
            db.execute("DELETE FROM leases WHERE place = ?", (place,))
            self._log(db, now, place, "expired", held.owner, held.token, f"expired at {when(held.expires_at)}")
        lease = Lease(place, owner, secrets.token_hex(16), now, now + ttl)
        db.execute("INSERT INTO leases VALUES (?, ?, ?, ?, ?)", (place, owner, lease.token, now, lease.expires_at))
        self._log(db, now, place, "reserved", owner, lease.token, f"ttl {ttl:g}s")
        return lease

    def reserve(self, place: str, owner: str, ttl: float, *, wait: Deadline | None = None, poll: float = 0.5) -> Lease:
        """An exclusive lease on ``place`` for ``ttl`` seconds.

        ``wait=None`` raises PlaceBusy at once when it is held; otherwise the place is tried every
        ``poll`` seconds until ``wait`` ends, then PlaceBusy."""
        return self.reserve_any([place], owner, ttl, wait=wait, healthy_only=False, poll=poll)

    def reserve_any(self, places: Sequence[str], owner: str, ttl: float, *, wait: Deadline | None = None,
                    healthy_only: bool = True, poll: float = 0.5) -> Lease:
        """A lease on the first free place of ``places`` (in order); places marked bad are skipped
        when ``healthy_only``. Waits like :meth:`reserve`."""
        if not places:
            raise ValueError("reserve_any needs at least one place")
        if not ttl > 0:
            raise ValueError(f"ttl must be more than 0, not {ttl}")
        while True:
            with self._write() as db:
                now = time.time()
                bad = self._bad(db, places) if healthy_only else {}
                for place in places:
                    if place not in bad:
                        lease = self._try_take(db, place, owner, ttl, now)
                        if lease is not None:
                            return lease
                holders = [h for p in places if p not in bad and (h := self._held(db, p)) is not None]
            if wait is None or wait.expired() or not holders:
                raise self._busy(places, holders, bad, now)
            time.sleep(max(0.0, min(poll, wait.remaining())))

    def _bad(self, db: sqlite3.Connection, places: Sequence[str]) -> dict[str, str]:
        marks = ",".join("?" * len(places))
        rows = db.execute(f"SELECT place, reason FROM health WHERE health = 'bad' AND place IN ({marks})", tuple(places))
        return {r["place"]: r["reason"] for r in rows}

    def _busy(self, places: Sequence[str], holders: list[Lease], bad: dict[str, str], now: float) -> PlaceBusy:
        if len(places) == 1 and holders:
            return PlaceBusy(_busy_message(holders[0], now), holders[0])
        parts = [_busy_message(h, now) for h in holders]
        parts += [f"place '{p}' is marked bad ({reason})" for p, reason in bad.items()]
        soonest = min(holders, key=lambda h: h.expires_at, default=None)
        return PlaceBusy(f"none of the places {', '.join(places)} is free: " + "; ".join(parts), soonest)

    def heartbeat(self, lease: Lease, ttl: float) -> Lease:
        """Extend our lease to ``ttl`` seconds from now; LeaseLost if another holds it or it was broken.

        A lease that expired but that nobody took is still ours: no one else can have used the place."""
        with self._write() as db:
            now = time.time()
            held = self._held(db, lease.place)
            if held is None or held.token != lease.token:
                raise LeaseLost(self._lost(lease, held, now))
            db.execute("UPDATE leases SET expires_at = ? WHERE place = ?", (now + ttl, lease.place))
            return replace(held, expires_at=now + ttl)

    def _lost(self, lease: Lease, held: Lease | None, now: float) -> str:
        what = f"the lease of {lease.owner} on place '{lease.place}' was lost"
        if held is None:
            return f"{what}: it expired or was broken, and the place is free now"
        return f"{what}: {_busy_message(held, now)}"

    def release(self, lease: Lease) -> None:
        """Give our lease back; releasing it twice is fine, LeaseLost if another holds the place now."""
        with self._write() as db:
            now = time.time()
            held = self._held(db, lease.place)
            if held is None:
                return
            if held.token != lease.token:
                raise LeaseLost(self._lost(lease, held, now))
            db.execute("DELETE FROM leases WHERE place = ?", (lease.place,))
            self._log(db, now, lease.place, "released", held.owner, held.token)

    def release_place(self, place: str, by: str) -> Lease | None:
        """Admin: break whatever lease ``place`` has (the log records who); returns the broken lease."""
        with self._write() as db:
            now = time.time()
            held = self._held(db, place)
            if held is not None:
                db.execute("DELETE FROM leases WHERE place = ?", (place,))
                self._log(db, now, place, "broken", held.owner, held.token, f"by {by}")
            return held

    def states(self, places: Sequence[str]) -> list[PlaceState]:
        """Lease and health of each place, in the order given."""
        with self._read() as db:
            now = time.time()
            leases = {r["place"]: _lease(r) for r in db.execute("SELECT * FROM leases")}
            health = {r["place"]: r for r in db.execute("SELECT * FROM health")}
        out = []
        for place in places:
            lease = leases.get(place)
            h = health.get(place)
            out.append(PlaceState(
                place, lease if lease is not None and lease.expires_at > now else None,
                h["health"] if h is not None else "unknown", h["reason"] if h is not None else "",
                h["at"] if h is not None else None, h["by"] if h is not None else ""))
        return out

    def set_health(self, place: str, health: str, reason: str, by: str) -> None:
        """Record a place's health (a health run's verdict, or an admin's)."""
        if health not in HEALTH_STATES:
            raise ValueError(f"health must be one of {', '.join(HEALTH_STATES)}, not {health!r}")
        with self._write() as db:
            now = time.time()
            db.execute("INSERT INTO health VALUES (?, ?, ?, ?, ?) ON CONFLICT (place) DO UPDATE SET "
                       "health = excluded.health, reason = excluded.reason, at = excluded.at, by = excluded.by",
                       (place, health, reason, now, by))
            self._log(db, now, place, "health", by, None, f"{health}: {reason}")

    def history(self, place: str | None = None, limit: int = 100) -> list[dict[str, str | float | None]]:
        """The last ``limit`` log events (of ``place``, or all), oldest first."""
        where, args = ("WHERE place = ?", (place,)) if place is not None else ("", ())
        with self._read() as db:
            rows = db.execute(f"SELECT * FROM log {where} ORDER BY id DESC LIMIT ?", (*args, max(0, limit))).fetchall()
        return [{k: r[k] for k in ("id", "at", "place", "event", "owner", "token", "detail")} for r in reversed(rows)]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> LeaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HeldLease:
    """A lease kept alive by a daemon thread for as long as the ``with`` block runs, released at its end.

    ``target`` is a place to reserve (waiting until ``wait``) or a Lease already taken. A heartbeat
    that finds the lease lost sets ``.lost`` (and ``.lost_error``) and stops: whoever drives the board
    must check it, since another holder may be using the board now."""

    def __init__(self, store: LeaseStore, target: str | Lease, *, ttl: float, heartbeat: float | None = None,
                 owner: str | None = None, wait: Deadline | None = None) -> None:
        every = heartbeat if heartbeat is not None else ttl / 3
        if not 0 < every < ttl:
            raise ValueError(f"heartbeat ({every}s) must be more than 0 and less than ttl ({ttl}s)")
        self.store = store
        self.target = target
        self.ttl = ttl
        self.every = every
        self.owner = owner or default_owner()
        self.wait = wait
        self.lost = False
        self.lost_error: LeaseLost | None = None
        self.errors: list[str] = []
        """Heartbeats that failed for another reason (the store was busy); the next one tries again."""
        self._lease: Lease | None = target if isinstance(target, Lease) else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lease(self) -> Lease:
        if self._lease is None:
            raise RuntimeError("HeldLease is not entered")
        return self._lease

    def __enter__(self) -> HeldLease:
        if self._lease is None:
            assert isinstance(self.target, str)
            self._lease = self.store.reserve(self.target, self.owner, self.ttl, wait=self.wait)
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self._lease.place}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self._lease = self.store.heartbeat(self.lease, self.ttl)
            except LeaseLost as exc:
                self.lost, self.lost_error = True, exc
                log.warning("%s", exc)
                return
            except (InfrastructureError, sqlite3.Error) as exc:
                self.errors.append(str(exc))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=BUSY_TIMEOUT + self.every)
        if self._lease is None or self.lost:
            return
        try:
            self.store.release(self._lease)
        except LeaseLost as lost:
            self.lost, self.lost_error = True, lost
