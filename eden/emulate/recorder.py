"""Client-side request samples of an emulated fleet, and their summary.

One sample per device request, taken around ``Transport.send``: from before the body is encoded
and signed until the answer is verified and decoded, so it includes waiting for a pooled
connection, TLS (a handshake when a new connection is opened) and both signatures. Samples live
in ``array('d')`` columns (16 bytes a sample), so a long run at thousands of requests per second
stays small; the percentiles are computed with numpy over every sample in a window.
"""

from __future__ import annotations

import time
from array import array
from collections import Counter
from typing import Any

import numpy as np

ENDPOINTS = ("certs", "register", "uuid", "config", "info", "metrics", "attest", "logs")


def is_error(status: int) -> bool:
    """A failed exchange: no HTTP answer (transport error, status 0) or a server error (5xx).

    4xx answers are part of the protocol (config 304 is not even 4xx; register 409, attest 403 on a
    revoked token, 404 before a config exists) and are only counted by status."""
    return status == 0 or status >= 500


class EndpointSamples:
    __slots__ = ("t", "lat", "status", "errors")

    def __init__(self) -> None:
        self.t = array("d")  # send time (monotonic)
        self.lat = array("d")  # seconds
        self.status: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()  # transport error kinds (status 0)

    def add(self, t0: float, seconds: float, status: int, error: str | None) -> None:
        self.t.append(t0)
        self.lat.append(seconds)
        self.status[status] += 1
        if error is not None:
            self.errors[error] += 1

    def __len__(self) -> int:
        return len(self.t)


def percentiles_ms(lat: np.ndarray) -> dict[str, float | None]:
    if lat.size == 0:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    return {"p50_ms": round(float(p50) * 1e3, 3), "p95_ms": round(float(p95) * 1e3, 3),
            "p99_ms": round(float(p99) * 1e3, 3), "max_ms": round(float(lat.max()) * 1e3, 3)}


class Recorder:
    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.endpoints: dict[str, EndpointSamples] = {}

    def add(self, kind: str, t0: float, seconds: float, status: int, error: str | None) -> None:
        ep = self.endpoints.get(kind)
        if ep is None:
            ep = self.endpoints[kind] = EndpointSamples()
        ep.add(t0, seconds, status, error)

    def total(self) -> int:
        return sum(len(e) for e in self.endpoints.values())

    def errors(self) -> int:
        return sum(n for e in self.endpoints.values() for s, n in e.status.items() if is_error(s))

    def window(self, kind: str, start: float, end: float) -> np.ndarray:
        """Latencies (s) of the requests of ``kind`` sent in ``[start, end)``."""
        ep = self.endpoints.get(kind)
        if ep is None or not len(ep):
            return np.empty(0)
        t = np.frombuffer(ep.t, dtype=np.float64)
        lat = np.frombuffer(ep.lat, dtype=np.float64)
        return lat[(t >= start) & (t < end)]  # appended at completion, so not sorted by send time

    def summary(self, start: float, end: float) -> dict[str, Any]:
        """Per endpoint: totals over the run, and rate + percentiles over the window [start, end)."""
        span = max(end - start, 1e-9)
        out: dict[str, Any] = {}
        for kind in sorted(self.endpoints, key=lambda k: (ENDPOINTS.index(k) if k in ENDPOINTS else 99, k)):
            ep = self.endpoints[kind]
            lat = self.window(kind, start, end)
            out[kind] = {
                "requests": len(ep), "window_requests": int(lat.size), "rate_per_s": round(lat.size / span, 2),
                **percentiles_ms(lat),
                "status": {str(k): v for k, v in sorted(ep.status.items())},
                "errors": dict(sorted(ep.errors.items())),
            }
        return out
