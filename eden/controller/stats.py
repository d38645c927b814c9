"""Per-endpoint request counts and latency percentiles, in memory."""

from __future__ import annotations

from collections import Counter, deque

from eden.controller.admin_types import EndpointSummary

WINDOW = 20_000  # latest latencies kept per endpoint for the percentiles


class EndpointStats:
    def __init__(self) -> None:
        self.count = 0
        self.status: Counter[int] = Counter()
        self.latencies: deque[float] = deque(maxlen=WINDOW)

    def add(self, status: int, seconds: float) -> None:
        self.count += 1
        self.status[status] += 1
        self.latencies.append(seconds)

    def summary(self) -> EndpointSummary:
        lat = sorted(self.latencies)

        def q(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else 0.0

        return {"requests": self.count, "status": {str(k): v for k, v in sorted(self.status.items())},
                "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99), "window": len(lat)}


class Stats:
    def __init__(self) -> None:
        self.endpoints: dict[str, EndpointStats] = {}

    def add(self, endpoint: str, status: int, seconds: float) -> None:
        st = self.endpoints.get(endpoint)
        if st is None:
            st = self.endpoints[endpoint] = EndpointStats()
        st.add(status, seconds)

    def summary(self) -> dict[str, EndpointSummary]:
        return {name: st.summary() for name, st in sorted(self.endpoints.items())}
