"""A finite controller's capacity: one FIFO queue, its latencies and its 503s.

Capacity is modelled as ``workers`` servers with a fixed ``service_time`` feeding one FIFO queue,
approximated by a single server that completes one request every ``service_time / workers``
(Lindley's recursion). A request that would find more than ``queue_limit`` requests waiting is
answered 503 at once. Bulk (vectorised) arrivals and single requests share that queue.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

RTT = 0.03  # seconds of network round trip added to every answered request
KINDS = ("certs", "register", "uuid", "config", "info", "metrics", "attest", "ping", "logs")
SERIES_KINDS = ("logs",)  # request kinds that also get their own per-minute series (plots)
_HIST_EDGES = np.concatenate([[0.0], np.logspace(-4, 4, 801)])  # 100 us .. 10^4 s, 100 bins/decade


def _bin_counts(lat: np.ndarray) -> np.ndarray:
    """Histogram over _HIST_EDGES without a binary search: the edges are log-spaced."""
    with np.errstate(divide="ignore"):
        idx = np.floor((np.log10(np.clip(lat, 1e-12, 1e4)) + 4.0) * 100.0).astype(np.int64) + 1
    idx = np.clip(idx, 0, len(_HIST_EDGES) - 2)
    idx[lat < _HIST_EDGES[1]] = 0
    return np.bincount(idx, minlength=len(_HIST_EDGES) - 1)


class LatencyStats:
    """Latency histogram and status counts for one request kind (constant memory at any scale).

    Latencies are buffered and folded into the histogram in chunks: one ``np.histogram`` call per
    request would cost more than simulating the request."""

    FLUSH = 200_000

    def __init__(self) -> None:
        self.hist = np.zeros(len(_HIST_EDGES) - 1, dtype=np.int64)
        self.count = 0
        self.rejected = 0
        self.sum = 0.0
        self.max = 0.0
        self.status: dict[int, int] = {}
        """HTTP status -> requests answered with it (503s included)."""
        self._chunks: list[np.ndarray] = []
        self._singles: list[float] = []
        self._pending = 0

    def add(self, latencies: np.ndarray) -> None:
        if latencies.size:
            self._chunks.append(latencies)
            self._pending += latencies.size
            if self._pending >= self.FLUSH:
                self.flush()

    def add_one(self, latency: float) -> None:
        self._singles.append(latency)
        self._pending += 1
        if self._pending >= self.FLUSH:
            self.flush()

    def flush(self) -> None:
        if self._singles:
            self._chunks.append(np.asarray(self._singles, dtype=float))
            self._singles = []
        if not self._chunks:
            return
        lat = np.concatenate(self._chunks)
        self._chunks = []
        self._pending = 0
        self.hist += _bin_counts(lat)
        self.count += int(lat.size)
        self.sum += float(lat.sum())
        self.max = max(self.max, float(lat.max()))

    def quantile(self, q: float) -> float:
        self.flush()
        if self.count == 0:
            return 0.0
        rank = q * self.count
        cum = np.cumsum(self.hist)
        idx = int(np.searchsorted(cum, rank, side="left"))
        return float(_HIST_EDGES[min(idx + 1, len(_HIST_EDGES) - 1)])


class Series:
    """Per-minute request counts and latency totals, accumulated with bincount in chunks."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.data: dict[str, np.ndarray] = {k: np.zeros(0) for k in ("requests", "rejected", "latency_sum", "latency_max")}
        self._t: list[np.ndarray] = []
        self._lat: list[np.ndarray] = []
        self._acc: list[np.ndarray] = []
        self._st: list[float] = []
        self._sl: list[float] = []
        self._sa: list[bool] = []
        self._pending = 0

    def add(self, t: np.ndarray, lat: np.ndarray, acc: np.ndarray) -> None:
        self._t.append(t)
        self._lat.append(lat)
        self._acc.append(acc)
        self._pending += t.size
        if self._pending >= LatencyStats.FLUSH:
            self.flush()

    def add_one(self, t: float, lat: float, acc: bool) -> None:
        self._st.append(t)
        self._sl.append(lat)
        self._sa.append(acc)
        self._pending += 1
        if self._pending >= LatencyStats.FLUSH:
            self.flush()

    def flush(self) -> None:
        if self._st:
            self._t.append(np.asarray(self._st))
            self._lat.append(np.asarray(self._sl))
            self._acc.append(np.asarray(self._sa, dtype=bool))
            self._st, self._sl, self._sa = [], [], []
        if not self._t:
            return
        t = np.concatenate(self._t)
        lat = np.concatenate(self._lat)
        acc = np.concatenate(self._acc)
        self._t, self._lat, self._acc = [], [], []
        self._pending = 0
        bins = (t // self.step).astype(np.int64)
        n = max(int(bins.max()) + 1, self.data["requests"].size)
        grow = {k: np.pad(v, (0, n - v.size)) for k, v in self.data.items()}
        grow["requests"] += np.bincount(bins, minlength=n)
        grow["rejected"] += np.bincount(bins, weights=(~acc).astype(float), minlength=n)
        grow["latency_sum"] += np.bincount(bins, weights=np.where(acc, lat, 0.0), minlength=n)
        np.maximum.at(grow["latency_max"], bins[acc], lat[acc])
        self.data = grow

    def as_lists(self) -> dict[str, list[float]]:
        self.flush()
        return {k: [round(float(x), 6) for x in v] for k, v in self.data.items()}


class Capacity:
    """The queue every request of a finite controller goes through, and what it recorded."""

    def __init__(self, *, workers: int, service_time: float, queue_limit: int, series_step: float = 60.0) -> None:
        self.service = service_time
        self.step = service_time / workers
        self.queue_limit = queue_limit
        self.free_at = 0.0
        self._win_end = np.zeros(0)
        self._win_arr_l: list[float] = []
        self._win_end_l: list[float] = []
        self._win_carry = 0.0
        self.mode = "up"  # up | down | 503 | hang
        self.stats = {k: LatencyStats() for k in KINDS}
        self.series = Series(series_step)
        self.kind_series = {k: Series(series_step) for k in SERIES_KINDS}

    def _backlog_end(self, t: float) -> float:
        """When the server would be free of the bulk requests that arrived up to ``t``."""
        j = bisect.bisect_right(self._win_arr_l, t) - 1
        return self._win_end_l[j] if j >= 0 else self._win_carry

    def _admit(self, t: float) -> tuple[bool, float]:
        free = max(self.free_at, self._backlog_end(t))
        waiting = (free - t) / self.step if free > t else 0.0
        if self.mode == "503" or waiting > self.queue_limit:
            return False, RTT
        start = max(t, free)
        self.free_at = start + self.step
        return True, start - t + self.service + RTT

    def admit_batch(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Admit a window of bulk arrivals (sorted, possibly ahead of the clock): (accepted, latency).

        The window's completion times are kept, so a single request arriving at ``t`` inside the
        window queues behind exactly the bulk requests that arrived before ``t`` (single requests
        do not delay the bulk ones already planned: a small, documented approximation)."""
        n = times.size
        if n == 0:
            return np.zeros(0, dtype=bool), np.zeros(0)
        if self.mode == "503":
            return np.zeros(n, dtype=bool), np.full(n, RTT)
        carry = max(self.free_at, float(self._win_end[-1]) if self._win_end.size else 0.0)
        k = np.arange(n) * self.step
        starts = k + np.maximum(carry, np.maximum.accumulate(times - k))
        waits = starts - times
        if waits.max() / self.step <= self.queue_limit:
            ok = np.ones(n, dtype=bool)
            ends = starts + self.step
            lat = waits + self.service + RTT
        else:  # overloaded: the exact recursion with rejections
            ok = np.zeros(n, dtype=bool)
            lat = np.full(n, RTT)
            ends = np.empty(n)
            free = carry
            for j in range(n):
                t = float(times[j])
                wait = max(0.0, free - t)
                if wait / self.step <= self.queue_limit:
                    ok[j] = True
                    free = t + wait + self.step
                    lat[j] = wait + self.service + RTT
                ends[j] = free
        self._win_carry = carry
        self._win_end = np.maximum.accumulate(ends)
        self._win_arr_l = times.tolist()
        self._win_end_l = self._win_end.tolist()
        return ok, lat

    def record(self, kind: str, t: float, latency: float, accepted: bool, status: int) -> None:
        """Account one request (single path) answered with HTTP ``status``."""
        st = self.stats[kind]
        st.status[status] = st.status.get(status, 0) + 1
        if accepted:
            st.add_one(latency)
        else:
            st.rejected += 1
        self.series.add_one(t, latency, accepted)
        if kind in self.kind_series:
            self.kind_series[kind].add_one(t, latency, accepted)

    def record_batch(self, kind: str, t: np.ndarray, latency: np.ndarray, status: int) -> None:
        """Account a batch of accepted bulk requests, all answered with HTTP ``status``."""
        st = self.stats[kind]
        st.status[status] = st.status.get(status, 0) + int(t.size)
        st.add(latency)
        self.series.add(t, latency, np.ones(t.size, dtype=bool))
        if kind in self.kind_series:
            self.kind_series[kind].add(t, latency, np.ones(t.size, dtype=bool))

    # -------------------------------------------------------------------------------- reports --
    def latency_summary(self) -> dict[str, Any]:
        total = LatencyStats()
        for st in self.stats.values():
            st.flush()
            total.hist += st.hist
            total.count += st.count
            total.rejected += st.rejected
            total.sum += st.sum
            total.max = max(total.max, st.max)
            for code, n in st.status.items():
                total.status[code] = total.status.get(code, 0) + n
        out: dict[str, Any] = {}
        for name, st in [("all", total), *self.stats.items()]:
            out[name] = {
                "requests": st.count + st.rejected,
                "rejected_503": st.rejected,
                "p50": st.quantile(0.50),
                "p95": st.quantile(0.95),
                "p99": st.quantile(0.99),
                "max": st.max,
                "mean": st.sum / st.count if st.count else 0.0,
                "status": {str(code): st.status[code] for code in sorted(st.status)},
            }
        return out
