"""Driving the clock-neutral runner in real time, on asyncio.

The runner (:mod:`eden.runner`) yields :class:`~eden.backends.base.Sleep` and
:class:`~eden.backends.base.Spawn`; the simulator turns them into SimPy timeouts and processes.
Here they become ``asyncio.sleep`` and tasks, so the same scenario code runs against real
processes. Every real-time backend (emulated agents, QEMU VMs, boards) shares this driver.

Time on a real backend is "seconds since the run started" on the monotonic clock, so a wall-clock
step (NTP) never moves a deadline. Devices stamp their events with epoch seconds;
:meth:`RunClock.from_epoch` maps those onto the run's axis.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from eden.backends.base import RunGen, Sleep, Spawn


class RunClock:
    """Seconds since the start of the run (monotonic), plus the epoch at that instant."""

    def __init__(self) -> None:
        self.mono0 = time.monotonic()
        self.epoch0 = time.time()

    def now(self) -> float:
        return time.monotonic() - self.mono0

    def from_epoch(self, epoch: float) -> float:
        """An epoch timestamp from a device or the controller, on the run's time axis."""
        return epoch - self.epoch0


class Deadline:
    """One monotonic deadline passed down instead of ad-hoc timeouts."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def sub(self, seconds: float) -> "Deadline":
        """A deadline no later than this one."""
        d = Deadline(seconds)
        d.at = min(d.at, self.at)
        return d


class Driver:
    """Runs runner generators as asyncio tasks; a failing spawned activity fails the run."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.failure: BaseException | None = None

    async def drive(self, gen: RunGen) -> Any:
        try:
            cmd = next(gen)
            while True:
                if isinstance(cmd, Sleep):
                    await asyncio.sleep(max(0.0, cmd.seconds))
                elif isinstance(cmd, Spawn):
                    self.spawn(cmd.gen, cmd.name)
                cmd = gen.send(None)
        except StopIteration as stop:
            return stop.value

    def spawn(self, gen: RunGen, name: str = "") -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(self.drive(gen), name=name or None)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()

    async def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
