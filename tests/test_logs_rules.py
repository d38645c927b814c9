"""Log upload (newlogd + loguploader) in the node model: spec §1 "newlogs upload timer", §2.1 "POST
newlogs"; EVE pkg/pillar/cmd/loguploader/loguploader.go and pkg/newlog/cmd/newlogd.go. The rules live
in eve/logs.py; the node drives them (tests through the Driver of test_node_rules)."""

from __future__ import annotations

import numpy as np
import pytest

from eve.logs import (
    LOGFILE_DELAY,
    LogPersist,
    LogUploader,
    backlog_interval,
    files_made,
)
from tests.test_node_rules import LAT, Driver, driver, online


def _logs_ok(drv: Driver, status: int = 201) -> None:
    drv.ctrl.override["logs"] = lambda send, now: (status, {}, LAT)


def _start(drv: Driver) -> float:
    assert drv.node.loguploader.uploader is not None
    return drv.node.loguploader.uploader.epoch


@pytest.mark.parametrize(
    ("left", "interval"),
    [(0, 90), (4, 90), (5, 45), (24, 45), (25, 30), (49, 30), (50, 15), (199, 15), (200, 8), (999, 8), (1000, 3), (50000, 3)],
)
def test_logs_interval_by_backlog_table(left: int, interval: int) -> None:
    """§1: 90/45/30/15/8/3 s for <5/<25/<50/<200/<1000/>=1000 files left (loguploader ``Run``)."""
    assert backlog_interval(left) == interval


def test_logs_files_made_every_300_s_vectorised() -> None:
    """newlogd closes a file at most every 300 s (``logfileDelay``); the engine uses the same function on arrays."""
    assert LOGFILE_DELAY == 300.0
    t = np.array([0.0, 299.9, 300.0, 899.0, 900.0])
    assert files_made(np.full(5, 2), np.zeros(5), t).tolist() == [2, 2, 3, 4, 5]
    assert int(files_made(0, 100.0, 50.0)) == 0  # before the epoch: nothing


def test_logs_upload_every_90_s_one_file_each() -> None:
    """Upload timer 90 s from start (no jitter before the first schedule at 1200 s); one file per
    fire, re-armed after the answer; a fire without a file sends nothing."""
    drv = driver()
    _logs_ok(drv)
    online(drv)
    start = _start(drv)
    drv.run(start + 1199.0)
    sends = [t for t, _s in drv.sent("logs")]
    assert len(sends) == 3  # files closed at 300, 600, 900 s
    # the first fire after each file close sends it
    assert sends[0] == pytest.approx(start + 360.0, abs=0.2)
    assert all(f * 300.0 <= t - start < f * 300.0 + 92 for f, t in zip((1, 2, 3), sends))
    gaps = [at - now for now, name, at in drv.timers_set if name == "logs" and now < start + 1199.0]
    assert all(g == pytest.approx(90.0) for g in gaps)
    assert drv.node.loguploader.uploader is not None and drv.node.loguploader.uploader.sent_total == 3
    assert drv.node.loguploader.uploader.failed_to_send is False  # 3 sent in a row clear FailedToSend


def test_logs_schedule_jitters_the_interval_after_20_minutes() -> None:
    """At the first schedule (1200 s) with < 5 files: 90 s +-20 % as an integer (rand.Intn(36) + 72)."""
    drv = driver(seed=3)
    _logs_ok(drv)
    online(drv)
    start = _start(drv)
    seen = set()
    for k in range(8):
        drv.run(start + 1300.0 + 1800.0 * k)
        assert drv.node.loguploader.uploader is not None
        seen.add(drv.node.loguploader.uploader.interval)
    assert all(72 <= v < 108 for v in seen)
    assert len(seen) > 1


def test_logs_outage_three_unavailable_then_random_3_to_15_min() -> None:
    """§1: 3 timeouts/503 in a row set FailedToSend; a schedule more than 1200 s later draws
    U[180, 900) s; after the outage the backlog floods back faster (by backlog table)."""
    drv = driver(seed=5)
    _logs_ok(drv)
    online(drv)
    start = _start(drv)
    drv.run(start + 1300.0)
    up = drv.node.loguploader.uploader
    assert up is not None and not up.failed_to_send
    drv.ctrl.override["logs"] = lambda send, now: (503, {}, LAT)
    drv.run(start + 1300.0 + 1200.0)
    assert up.failed_to_send and up.cont_fail >= 3
    drv.run(start + 1300.0 + 4 * 3600.0)
    assert 180 <= up.interval < 900
    backlog = up.backlog(drv.now)
    assert backlog >= 40  # 4 h of files (one per 300 s) wait
    failed_sends = len(drv.sent("logs"))
    _logs_ok(drv)
    t0 = drv.now
    drv.run(t0 + 3 * 3600.0)
    flood = [t for t, _s in drv.sent("logs", since=t0)]
    assert len(flood) > backlog  # the backlog drained (plus the new files)
    assert up.backlog(drv.now) <= 1
    assert not up.failed_to_send
    # once re-evaluated with 25-50 files left, uploads come every 30 s +-20 %
    gaps = np.diff(flood)
    assert (gaps < 40.0).sum() >= 10
    assert failed_sends > 0


def test_logs_4xx_retries_the_file_then_moves_it_aside() -> None:
    """§1/§2.1: 4xx -> the same file is retried; on its 11th 4xx in a row (max4xxRetries = 10)
    it goes to failedUpload and the next file is tried (``handle4xxlogfile``)."""
    drv = driver()
    drv.ctrl.override["logs"] = lambda send, now: (400, {}, LAT)
    online(drv)
    start = _start(drv)
    drv.run(start + 299.0)
    assert drv.sent("logs") == []
    drv.run_until(lambda: drv.node.persist.logs.moved_aside == 1, limit=3600)
    assert len(drv.sent("logs")) == 11
    assert drv.node.loguploader.uploader is not None and drv.node.loguploader.uploader.cont_fail == 0  # 4xx is not "unavailable"


def test_logs_429_doubles_the_interval_and_holds_it_for_an_hour() -> None:
    """§1: 429 -> interval doubled (max 300 s), schedule evaluation suspended for 1 h; then a
    re-evaluation 1 s after expiry doubles the computed interval (min 10) within 2 h of the 429."""
    up = LogUploader(LogPersist(made=10), 0.0)
    rng = np.random.default_rng(1)
    up.failed_to_send = False
    assert up.interval == 90
    assert up.fire(100.0, rng)
    up.answer(429, 100.5)
    assert up.interval == 180 and up.backoff_until == pytest.approx(3700.5)
    assert up.fire(300.0, rng)
    up.answer(429, 300.5)  # within 300 s of the previous 429: not doubled again
    assert up.interval == 180
    assert up.fire(700.0, rng)
    up.answer(429, 700.5)
    assert up.interval == 300  # capped
    up.fire(2000.0, rng)  # the 1200 s schedule is suspended by the back-off
    assert up.interval == 300
    up.answer(201, 2000.5)
    up.fire(4400.0 + 2.0, rng)  # back-off expired at 4300.5 -> re-evaluated at 4301.5
    assert up.backoff_until is None
    assert up.sched_at == pytest.approx(4301.5 + 1800.0)
    # 15 files left at the 2000 s fire -> 45 s band, doubled to 90 s (429 < 2 h ago), +-20 %
    assert 72 <= up.interval < 108


def test_logs_files_survive_a_reboot() -> None:
    """Files live in /persist/newlog: a power cut keeps the backlog, the next boot sends it."""
    drv = driver()
    drv.ctrl.override["logs"] = lambda send, now: (0, {"error": "timeout"}, 10.0)
    online(drv)
    start = _start(drv)
    drv.run(start + 1000.0)
    waiting = drv.node.loguploader.uploader.backlog(drv.now) if drv.node.loguploader.uploader else -1
    assert waiting == 3
    drv.power_off()
    assert drv.node.loguploader.uploader is None and drv.node.persist.logs.made == 3
    _logs_ok(drv)
    online(drv)
    start2 = _start(drv)
    drv.run(start2 + 280.0)
    assert len(drv.sent("logs", since=start2)) == 3  # one per 90 s fire


def test_logs_files_survive_a_graceful_power_off() -> None:
    """The same for a power-off command (§7): the files closed before it stay on /persist. Until
    2026-12-07 the power-off forgot the files made during that uptime."""
    drv = driver()
    drv.ctrl.override["logs"] = lambda send, now: (0, {"error": "timeout"}, 10.0)
    online(drv)
    start = _start(drv)
    drv.run(start + 1000.0)
    drv.call("poweroff_cmd")
    drv.run_until(lambda: drv.node.phase == "off", limit=900)
    assert drv.has_note("powered_off")
    assert drv.node.persist.logs.made >= 3  # 300 s a file, over at least 1,060 s of uptime


def test_fleet_log_uploads_are_a_bulk_share_of_the_controller_load(tmp_path) -> None:
    """A settled fleet sends one upload per device per 300 s (one file each), answered through the
    engine's bulk path; the per-minute ``logs_requests`` series and ``controller.requests.logs`` agree."""
    from tests.test_engine_steady_state import run_fleet

    n = 300
    summary, run = run_fleet(tmp_path, n, 2.0)
    ctrl = summary["series"]["controller"]
    logs = ctrl["logs_requests"]
    assert len(logs) == len(ctrl["requests"])
    half = len(logs) // 2
    settled = logs[half:-1]
    per_second = sum(settled) / (len(settled) * ctrl["step"])
    assert per_second == pytest.approx(n / LOGFILE_DELAY, rel=0.05)
    stats = summary["metrics"]["controller"]["logs"]
    assert stats["requests"] == pytest.approx(sum(logs), abs=1)
    assert stats["rejected_503"] == 0
    # config + metrics + info + ping + logs; logs are the 300 s share
    assert sum(settled) < 0.1 * sum(ctrl["requests"][half:-1])
    assert run["bulk_requests"] > 0.9 * summary["metrics"]["controller"]["all"]["requests"]


def test_logs_plain_schedule_case_is_the_one_the_bulk_path_may_evaluate() -> None:
    """The engine evaluates a schedule in bulk only where ``plain_at`` holds; there the node's own
    evaluation gives the same law (90 s +-20 %: integers 72..107)."""
    from eve.logs import jittered, plain_at

    rng = np.random.default_rng(2)
    draws = jittered(np.full(5000, 90), rng)
    assert draws.min() == 72 and draws.max() == 107
    assert int(jittered(3, rng)) in (2, 3)  # 3 s band: base 2, spread 2
    at = np.full(5, 10000.0)
    mask = plain_at(
        np.array([False, True, False, False, False]),  # failed_to_send
        np.array([False, False, True, False, False]),  # 429 back-off running
        np.array([-np.inf, -np.inf, -np.inf, 9000.0, -np.inf]),  # last 429
        np.array([4, 0, 0, 0, 5]),  # files left
        at,
    )
    assert mask.tolist() == [True, False, False, False, False]
    up = LogUploader(LogPersist(), 0.0)
    up.failed_to_send = False
    up.left = 4
    seen = set()
    for _ in range(200):
        up._evaluate(5000.0, rng)
        seen.add(up.interval)
    assert min(seen) >= 72 and max(seen) <= 107 and len(seen) > 20
