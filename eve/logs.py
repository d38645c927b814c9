"""EVE's log upload (newlogd + loguploader) as a sans-I/O rule set, driven by :class:`~eve.node.Node`.

Spec §1 "newlogs upload timer" and §2.1 "POST newlogs"; EVE: pkg/pillar/cmd/loguploader/loguploader.go
(``Run``, ``doFetchSend``, ``sendToCloud``, ``handle4xxlogfile``) and pkg/newlog/cmd/newlogd.go
(``logfileDelay``). What is modelled:

* newlogd closes a device log file at the latest every ``LOGFILE_DELAY`` (300 s) while the device
  runs; files live in /persist/newlog and survive reboots (only the device directory is modelled,
  not app logs).
* The upload timer starts at ``DEFAULT_INTERVAL`` (90 s) and is re-armed after each upload
  (``doFetchSend`` is synchronous). Each fire sends the oldest file, if any: one ``logs`` request.
* The interval is recomputed on the schedule timer: first ``FIRST_SCHEDULE`` (1200 s) after start,
  then every ``SCHEDULE`` (1800 s), and 1 s after a 429 back-off expires. Unreachable for more than
  1200 s (``FailedToSend``: 3 unavailable answers in a row; initially set at start) -> U[180, 900) s;
  else by the files left after the last upload 90/45/30/15/8/3 s (<5/<25/<50/<200/<1000/>=1000),
  doubled (min 10) within 2 h of a 429, never longer than the previous one while >= 5 files are
  left, then +-20 % integer jitter.
* 200/201 = sent (file removed; 3 in a row clear ``FailedToSend``). 503 or no answer = unavailable.
  Any 4xx: the same file is retried, and moved to failedUpload on its 11th 4xx in a row
  (``max4xxRetries`` = 10 retries). 429 also starts a 1 h back-off and doubles the interval (max
  300 s) unless the previous 429 was less than 300 s ago. 204/304/other codes: retried, no counter.

The simulator answers quiescent nodes' uploads in bulk (simulator/engine.py) with :func:`files_made`,
and runs their plain schedule evaluations (:func:`plain_at`, :func:`jittered`) there too; it writes
both back through :meth:`LogUploader.sent` / :meth:`LogUploader.evaluated` (Node.note_log_uploads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

LOGFILE_DELAY = 300.0  # newlogd.go logfileDelay: a log file is closed at most 5 min after it opened
DEFAULT_INTERVAL = 90  # loguploader.go defaultUploadIntv
FIRST_SCHEDULE = 1200.0  # initSched without newlog.allow.fastupload
SCHEDULE = 1800.0  # the schedule timer is re-armed for 30 min after each evaluation
OUTAGE_AFTER = 1200.0  # FailedToSend for longer than this -> random 3-15 min interval
BACKOFF = 3600.0  # backoffTimeout: 429 back-off lasts 1 h
BACKOFF_MAX = 300  # backoffMaxUploadIntv
RECENT_429 = 7200.0  # a 429 within 2 h doubles the computed interval
MAX_4XX_RETRIES = 10  # max4xxRetries


def files_made(base: Any, epoch: Any, t: Any) -> Any:
    """Files newlogd has closed by ``t``: ``base`` from earlier boots plus one per LOGFILE_DELAY since
    ``epoch`` (this boot's start). Works on numpy arrays (the engine's bulk path) and on floats."""
    return base + np.floor(np.maximum(np.asarray(t, dtype=float) - epoch, 0.0) / LOGFILE_DELAY).astype(np.int64)


def backlog_interval(left: int) -> int:
    """The upload interval for ``left`` files waiting (§1: 90/45/30/15/8/3 s)."""
    for bound, interval in ((5, 90), (25, 45), (50, 30), (200, 15), (1000, 8)):
        if left < bound:
            return interval
    return 3


def jittered(interval: Any, rng: np.random.Generator) -> Any:
    """+-20 % as loguploader draws it: ``rand.Intn((i - i*80/100) * 2) + i*80/100`` (integers, arrays too)."""
    interval = np.asarray(interval, dtype=np.int64)
    base = interval * 80 // 100
    spread = (interval - base) * 2
    return np.where(spread > 0, base + rng.integers(0, np.maximum(spread, 1)), interval)


def plain_at(failed: Any, backoff: Any, last_429: Any, left: Any, at: Any) -> Any:
    """True where a schedule evaluation at ``at`` is the plain case: not in outage mode, no 429
    back-off, no 429 within 2 h, fewer than 5 files left -> ``jittered(90)``. The engine's bulk
    path evaluates these in one call; every other case goes to :meth:`LogUploader._evaluate`."""
    return ~np.asarray(failed) & ~np.asarray(backoff) & (np.asarray(at) - last_429 >= RECENT_429) & (np.asarray(left) < 5)


@dataclass
class LogPersist:
    """/persist/newlog: files closed in earlier boots and files gone (sent or moved aside)."""

    made: int = 0
    done: int = 0
    moved_aside: int = 0


class LogUploader:
    """loguploader's state for one boot (its counters are in memory, files are in ``persist``)."""

    def __init__(self, persist: LogPersist, start: float) -> None:
        self.persist = persist
        self.epoch = start
        self.interval = DEFAULT_INTERVAL
        self.prev_interval = 0
        self.sched_at = start + FIRST_SCHEDULE
        self.failed_to_send = True  # loguploader starts assuming it cannot send
        self.fail_start = start
        self.cont_fail = 0
        self.cont_ok = 0
        self.left = 0  # files left after the last upload (numLeftFiles)
        self.backoff_until: float | None = None
        self.last_429 = -math.inf
        self.file_4xx = 0  # 4xx answers in a row for the oldest file
        self.sent_total = 0
        self.inflight = False

    # --------------------------------------------------------------------------------- files --
    def backlog(self, now: float) -> int:
        return int(files_made(self.persist.made, self.epoch, now)) - self.persist.done

    def stop(self, now: float) -> None:
        """The device goes down: the files closed so far stay on disk."""
        self.persist.made = int(files_made(self.persist.made, self.epoch, now))
        self.epoch = math.inf

    # -------------------------------------------------------------------------------- timers --
    def next_event(self) -> float:
        """The next schedule evaluation or back-off expiry (the bulk path stops short of it)."""
        return min(self.sched_at, self.backoff_until) if self.backoff_until is not None else self.sched_at

    def _advance(self, now: float, rng: np.random.Generator) -> None:
        """Run the schedule and back-off events due by ``now``, in time order. They only read
        state that changes at uploads, so evaluating them at the next upload fire is exact."""
        while True:
            if self.backoff_until is not None and self.backoff_until <= self.sched_at and self.backoff_until <= now:
                self.sched_at = self.backoff_until + 1.0  # backoffExprTimer: re-evaluate in 1 s
                self.backoff_until = None
                continue
            if self.sched_at > now:
                return
            self._evaluate(self.sched_at, rng)
            self.sched_at += SCHEDULE

    def _evaluate(self, at: float, rng: np.random.Generator) -> None:
        if self.backoff_until is not None:
            return  # controlled by the 429 back-off
        if self.failed_to_send and at - self.fail_start > OUTAGE_AFTER:
            self.interval = int(rng.integers(180, 900))
            return
        interval = backlog_interval(self.left)
        if at - self.last_429 < RECENT_429:
            interval = max(interval * 2, 10)
        if self.left >= 5 and self.prev_interval != 0 and self.prev_interval < interval:
            interval = self.prev_interval
        self.prev_interval = interval
        self.interval = int(jittered(interval, rng))

    def fire(self, now: float, rng: np.random.Generator) -> bool:
        """The upload timer fired: True when a file is to be sent (one ``logs`` request)."""
        self._advance(now, rng)
        n = self.backlog(now)
        if n <= 0:
            self.left = 0
            return False
        self.left = n - 1  # doFetchSend returns the files left whatever the answer
        self.inflight = True
        return True

    # ------------------------------------------------------------------------------- answers --
    def evaluated(self, interval: int, sched_at: float) -> None:
        """The engine's bulk path ran the plain schedule evaluation (:func:`plain_at`)."""
        self.interval = interval
        self.prev_interval = DEFAULT_INTERVAL
        self.sched_at = sched_at

    def sent(self, count: int, left: int | None = None) -> None:
        """``count`` files were accepted (200/201): the node's answer path and the engine's bulk path."""
        if count <= 0:
            return
        self.persist.done += count
        self.sent_total += count
        self.file_4xx = 0
        self.cont_fail = 0
        self.cont_ok += count
        if self.cont_ok >= 3:
            self.failed_to_send = False
        if left is not None:
            self.left = left

    def answer(self, status: int, now: float) -> None:
        """The controller's answer to one upload (§2.1 POST newlogs)."""
        self.inflight = False
        if status in (200, 201):
            self.sent(1)
            return
        if status == 503 or status == 0:
            self.cont_fail += 1
            self.cont_ok = 0
            if self.cont_fail >= 3 and not self.failed_to_send:
                self.failed_to_send = True
                self.fail_start = now
            return
        if 400 <= status < 500:
            if status == 429:
                previous, self.last_429 = self.last_429, now
                self.backoff_until = now + BACKOFF
                if now - previous > BACKOFF_MAX:
                    self.interval = min(self.interval * 2, BACKOFF_MAX)
            self.file_4xx += 1
            if self.file_4xx > MAX_4XX_RETRIES:
                self.file_4xx = 0
                self.persist.done += 1
                self.persist.moved_aside += 1
