"""The lease store (eden/lab/leases.py) on real SQLite files, with real processes and real kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eden.errors import InfrastructureError
from eden.lab.leases import HeldLease, LeaseLost, LeaseStore, PlaceBusy
from eden.runtime.deadline import Deadline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LeaseStore]:
    s = LeaseStore(tmp_path / "sub" / "leases.sqlite")
    yield s
    s.close()


def child(code: str, *args: str) -> subprocess.Popen[str]:
    """A Python child running ``code`` against this checkout; its stdout is a pipe of lines."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def read_line(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    """The child's next stdout line (the child prints only after its write committed)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()
    assert line, f"child ended early (rc {proc.poll()}): {proc.stderr.read() if proc.stderr else ''}"
    assert time.monotonic() < deadline
    return line.strip()


def test_created_with_parent_dir_mode_0600_and_wal(store: LeaseStore) -> None:
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()


def test_exclusive_and_busy_names_the_holder(store: LeaseStore) -> None:
    lease = store.reserve("p1", "alice", 60)
    assert len(lease.token) == 32 and lease.expires_at == pytest.approx(time.time() + 60, abs=2)
    with pytest.raises(PlaceBusy, match=r"place 'p1' is held by alice until .* \(in (59|60)s\)") as exc:
        store.reserve("p1", "bob", 60)
    assert exc.value.holder == lease
    t0 = time.monotonic()
    with pytest.raises(PlaceBusy):
        store.reserve("p1", "bob", 60, wait=Deadline(0.6), poll=0.1)
    assert 0.5 < time.monotonic() - t0 < 3
    store.release(lease)
    store.release(lease)  # twice is fine
    assert store.reserve("p1", "bob", 60).owner == "bob"


def test_expires_after_ttl_and_is_logged(store: LeaseStore) -> None:
    first = store.reserve("p1", "alice", 1.5)
    with pytest.raises(PlaceBusy):
        store.reserve("p1", "bob", 10)
    second = store.reserve("p1", "bob", 10, wait=Deadline(5), poll=0.1)
    assert second.acquired_at >= first.expires_at
    events = [(e["event"], e["owner"]) for e in store.history("p1")]
    assert events == [("reserved", "alice"), ("expired", "alice"), ("reserved", "bob")]


def test_heartbeat_extends(store: LeaseStore) -> None:
    lease = store.reserve("p1", "alice", 2)
    for _ in range(4):
        time.sleep(0.5)
        lease = store.heartbeat(lease, 2)
    time.sleep(0.5)  # 2.5 s since the reservation: alive only because of the heartbeats
    with pytest.raises(PlaceBusy):
        store.reserve("p1", "bob", 10)
    assert store.states(["p1"])[0].lease == lease


def test_lost_lease_on_heartbeat_and_release(store: LeaseStore) -> None:
    mine = store.reserve("p1", "alice", 1)
    time.sleep(1.2)
    theirs = store.reserve("p1", "bob", 30)
    with pytest.raises(LeaseLost, match="held by bob"):
        store.heartbeat(mine, 30)
    with pytest.raises(LeaseLost, match="held by bob"):
        store.release(mine)
    assert store.states(["p1"])[0].lease == theirs  # bob's lease untouched
    broken = store.release_place("p1", by="admin")
    assert broken == theirs
    with pytest.raises(LeaseLost, match="free now"):
        store.heartbeat(theirs, 30)
    assert store.history("p1")[-1]["event"] == "broken" and store.history("p1")[-1]["detail"] == "by admin"


def test_reserve_any_skips_held_and_bad_places(store: LeaseStore) -> None:
    store.reserve("p1", "alice", 60)
    store.set_health("p2", "bad", "no boot", by="gate")
    assert store.reserve_any(["p1", "p2", "p3"], "bob", 60).place == "p3"
    with pytest.raises(PlaceBusy, match=r"p1' is held by alice.*p3' is held by bob.*p2' is marked bad \(no boot\)"):
        store.reserve_any(["p1", "p2", "p3"], "carol", 60)
    assert store.reserve_any(["p1", "p2", "p3"], "carol", 60, healthy_only=False).place == "p2"
    store.set_health("p4", "bad", "dead", by="gate")
    t0 = time.monotonic()
    with pytest.raises(PlaceBusy, match="marked bad"):  # only bad places: waiting cannot help
        store.reserve_any(["p4"], "dave", 60, wait=Deadline(10))
    assert time.monotonic() - t0 < 2
    store.set_health("p4", "good", "fixed the PSU", by="admin")
    state = store.states(["p4"])[0]
    assert (state.health, state.reason, state.checked_by) == ("good", "fixed the PSU", "admin")
    assert store.reserve_any(["p4"], "dave", 60).place == "p4"


def test_states_of_a_fresh_place(store: LeaseStore) -> None:
    state = store.states(["p9"])[0]
    assert (state.lease, state.health, state.reason, state.health_at) == (None, "unknown", "", None)
    with pytest.raises(ValueError):
        store.set_health("p9", "meh", "x", by="me")


def test_held_lease_heartbeats_and_releases(store: LeaseStore) -> None:
    with HeldLease(store, "p1", ttl=2, heartbeat=0.5, owner="alice") as held:
        time.sleep(2.6)
        assert not held.lost
        assert store.states(["p1"])[0].lease is not None  # past the first TTL: heartbeats kept it
    assert store.states(["p1"])[0].lease is None
    with pytest.raises(RuntimeError), HeldLease(store, "p1", ttl=2, heartbeat=0.5):
        raise RuntimeError("the test inside failed")
    assert store.states(["p1"])[0].lease is None  # released on exception too


def test_held_lease_notices_when_broken(store: LeaseStore) -> None:
    with HeldLease(store, "p1", ttl=5, heartbeat=0.3) as held:
        store.release_place("p1", by="admin")
        time.sleep(1.0)
        assert held.lost and held.lost_error is not None
    assert store.history("p1")[-1]["event"] == "broken"


def test_two_processes_one_waits_and_gets_it_after_release(tmp_path: Path) -> None:
    db = tmp_path / "leases.sqlite"
    code = """
        import sys, time
        from pathlib import Path
        from eden.lab.leases import LeaseStore
        from eden.runtime.deadline import Deadline
        store = LeaseStore(Path(sys.argv[1]))
        lease = store.reserve("p1", sys.argv[2], 30, wait=Deadline(20), poll=0.1)
        print("got", time.time(), flush=True)
        time.sleep(float(sys.argv[3]))
        store.release(lease)
        print("released", time.time(), flush=True)
    """
    first = child(code, str(db), "first", "1.5")
    assert read_line(first).startswith("got")
    second = child(code, str(db), "second", "0")
    got, released = read_line(second), read_line(first)
    assert got.startswith("got") and released.startswith("released")
    assert float(got.split()[1]) >= float(released.split()[1])  # only after the first let go
    assert read_line(second).startswith("released")
    assert first.wait(10) == 0 and second.wait(10) == 0
    with LeaseStore(db) as store:
        assert [e["owner"] for e in store.history("p1") if e["event"] == "reserved"] == ["first", "second"]


def test_kill_9_of_a_holder_frees_the_place_after_its_ttl(tmp_path: Path) -> None:
    db = tmp_path / "leases.sqlite"
    holder = child("""
        import sys, time
        from pathlib import Path
        from eden.lab.leases import HeldLease, LeaseStore
        store = LeaseStore(Path(sys.argv[1]))
        with HeldLease(store, "p1", ttl=2, heartbeat=0.5, owner="doomed"):
            print("held", flush=True)
            time.sleep(600)
    """, str(db))
    try:
        assert read_line(holder) == "held"
        time.sleep(1.0)
        with LeaseStore(db) as store:
            with pytest.raises(PlaceBusy, match="doomed"):
                store.reserve("p1", "next", 10)
            holder.send_signal(signal.SIGKILL)
            assert holder.wait(10) == -signal.SIGKILL
            killed_at = time.time()
            lease = store.reserve("p1", "next", 10, wait=Deadline(6), poll=0.1)
            assert lease.owner == "next" and time.time() - killed_at < 3  # within one TTL of the last heartbeat
            assert [e["event"] for e in store.history("p1")][-2:] == ["expired", "reserved"]
    finally:
        holder.kill()
        holder.wait()


def test_kill_9_in_a_burst_of_writes_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "leases.sqlite"
    writer = child("""
        import sys
        from pathlib import Path
        from eden.lab.leases import LeaseStore
        store = LeaseStore(Path(sys.argv[1]))
        i = 0
        while True:
            store.reserve(f"p{i}", "writer", 600)
            store.set_health(f"p{i}", "good", str(i), by="writer")
            print(i, flush=True)
            i += 1
    """, str(db))
    committed: list[int] = []
    try:
        while len(committed) < 60:
            committed.append(int(read_line(writer)))
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        assert writer.stdout is not None
        committed += [int(x) for x in writer.stdout.read().split()]  # printed before the kill
    finally:
        writer.kill()
        writer.wait()
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    with LeaseStore(db) as store:
        places = [f"p{i}" for i in committed]
        states = store.states(places)
        assert all(s.lease is not None and s.lease.owner == "writer" for s in states)
        assert [s.reason for s in states] == [str(i) for i in committed]
        store.reserve("after", "me", 5)  # the store still takes writes: no lock left behind


def test_a_store_from_a_newer_eden_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "leases.sqlite"
    LeaseStore(db).close()
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA user_version = 7")
    raw.commit()
    raw.close()
    with pytest.raises(InfrastructureError, match=r"schema version 7, newer than this eden knows \(1\)"):
        LeaseStore(db)


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "leases.sqlite"
    db.write_bytes(b"this is not sqlite at all, just text" * 100)
    with pytest.raises(InfrastructureError, match="is not a lease store"):
        LeaseStore(db)
