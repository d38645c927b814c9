"""Both clocks offer "now" and "wake me later": SimPy time for the simulator, the monotonic wall for real runs."""

from __future__ import annotations

import asyncio
import time

import simpy

from eden.runtime.clock import Clock, RunClock, SimClock


def test_sim_clock_sleeps_in_simulated_time() -> None:
    env = simpy.Environment()
    clock: Clock = SimClock(env)
    woke: list[float] = []

    def sleeper() -> object:
        yield clock.sleep(30.0)
        woke.append(clock.now())
        yield clock.sleep(-1.0)
        woke.append(clock.now())

    env.process(sleeper())
    env.run()
    assert woke == [30.0, 30.0]


def test_run_clock_counts_from_its_restart_and_maps_epochs() -> None:
    clock = RunClock()
    time.sleep(0.02)
    assert clock.now() >= 0.02
    clock.restart()
    assert clock.now() < 0.02
    assert abs(clock.from_epoch(time.time()) - clock.now()) < 0.05

    async def nap() -> float:
        before = clock.now()
        await clock.sleep(0.05)
        return clock.now() - before

    assert asyncio.run(nap()) >= 0.05
