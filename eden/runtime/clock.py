"""Clocks: "now" and "wake me at t", on the SimPy engine or on the wall.

The runner (:mod:`eden.runner`) is clock-neutral; the simulator advances a SimPy environment and
the real-time backends advance asyncio. :class:`Clock` is what both offer: :meth:`~Clock.now` in
seconds since the run started, and :meth:`~Clock.sleep`, which yields something the caller's loop
waits on (a SimPy timeout event, or an awaitable).

Time on a real backend is "seconds since the run started" on the monotonic clock, so a wall-clock
step (NTP) never moves a deadline. Devices stamp their events with epoch seconds;
:meth:`RunClock.from_epoch` maps those onto the run's axis.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Protocol


class Clock(Protocol):
    """Seconds since the run started, and a way to wait until later."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> Any:
        """A thing the clock's loop waits on: ``yield`` it on SimPy, ``await`` it on asyncio."""
        ...


class SimClock:
    """Simulated time: a SimPy environment's ``now`` and ``timeout``."""

    def __init__(self, env: Any) -> None:
        self.env = env

    def now(self) -> float:
        return float(self.env.now)

    def sleep(self, seconds: float) -> Any:
        return self.env.timeout(max(0.0, seconds))


class RunClock:
    """Wall time for a real run: seconds since its start (monotonic), plus the epoch at that instant."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """Make this instant time 0 (the fleet is ready, as at the simulator's start)."""
        self.mono0 = time.monotonic()
        self.epoch0 = time.time()

    def now(self) -> float:
        return time.monotonic() - self.mono0

    def sleep(self, seconds: float) -> Awaitable[None]:
        return asyncio.sleep(max(0.0, seconds))

    def from_epoch(self, epoch: float) -> float:
        """An epoch timestamp from a device or the controller, on the run's time axis."""
        return epoch - self.epoch0
