"""Driving the clock-neutral runner in real time, on asyncio.

The runner (:mod:`eden.runner`) yields :class:`~eden.backends.base.Sleep` and
:class:`~eden.backends.base.Spawn`; the simulator turns them into SimPy timeouts and processes.
Here they become ``asyncio.sleep`` and tasks, so the same scenario code runs against real
processes. Every real-time backend (emulated agents, QEMU VMs, boards) shares this driver; its
clock and deadlines live in :mod:`eden.runtime`.
"""

from __future__ import annotations

import asyncio

from eden.backends.base import RunGen, Sleep, Spawn
from eden.runtime.clock import Clock


class Driver:
    """Runs runner generators as asyncio tasks; a failing spawned activity fails the run."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.tasks: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None

    async def drive(self, gen: RunGen) -> None:
        try:
            cmd = next(gen)
            while True:
                if isinstance(cmd, Sleep):
                    await self.clock.sleep(cmd.seconds)
                elif isinstance(cmd, Spawn):
                    self.spawn(cmd.gen, cmd.name)
                cmd = gen.send(None)
        except StopIteration as stop:
            return stop.value

    def spawn(self, gen: RunGen, name: str = "") -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self.drive(gen), name=name or None)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()

    async def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
