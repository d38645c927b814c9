"""Per-device quotas for what a registered device may make the controller store (docs/security.md).

A token bucket per device and kind: ``logs`` counts bytes, ``info`` counts posts. Over the quota
the handler answers 429, which EVE retries later (spec §2.1: info retried on its timer, newlogs
"429 → slower uploads"). Stored logs are also kept to ``log_retention_bytes`` per device, oldest
dropped (:meth:`Store.trim_logs`).
"""

from __future__ import annotations

import time

from eden.controller.limits import Limits


class OverQuota(Exception):
    def __init__(self, kind: str, retry_after: float) -> None:
        super().__init__(f"{kind} quota exceeded for this device; retry in {retry_after:.0f} s")
        self.retry_after = retry_after


class Quotas:
    def __init__(self, limits: Limits) -> None:
        self.rates = {"logs": (limits.log_bytes_per_s, float(limits.log_burst_bytes)),
                      "info": (limits.info_per_s, float(limits.info_burst))}
        self.buckets: dict[tuple[int, str], tuple[float, float]] = {}  # (device, kind) -> (tokens, at)

    def charge(self, device: int, kind: str, amount: float = 1.0) -> None:
        """Take ``amount`` from the device's bucket, or raise :class:`OverQuota` (nothing taken)."""
        rate, burst = self.rates[kind]
        now = time.monotonic()
        tokens, at = self.buckets.get((device, kind), (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        if amount > tokens:
            self.buckets[(device, kind)] = (tokens, now)
            raise OverQuota(kind, max(1.0, (min(amount, burst) - tokens) / rate))
        self.buckets[(device, kind)] = (tokens - amount, now)
