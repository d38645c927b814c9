"""eden.runtime.deadline: one monotonic deadline, bounded by its parent."""

from __future__ import annotations

import asyncio
import time

import pytest

from eden.runtime.deadline import Deadline, DeadlineExpired, wait_for


def test_a_child_never_outlives_its_parent() -> None:
    run = Deadline(1.0)
    assert run.child(0.2).at < run.at
    assert run.child(100.0).at == run.at
    assert run.child(100.0).parent is run


def test_remaining_expired_and_check() -> None:
    d = Deadline(0.0)
    assert d.expired() and d.remaining() == 0.0
    with pytest.raises(DeadlineExpired):
        d.check("boot")
    live = Deadline(60.0)
    assert not live.expired() and 59.0 < live.remaining() <= 60.0
    live.check()


def test_expired_is_a_timeout_error() -> None:
    assert issubclass(DeadlineExpired, TimeoutError)


def test_wait_for_is_bounded_by_the_deadline() -> None:
    async def go() -> None:
        assert await wait_for(asyncio.sleep(0, result=7), Deadline(1.0)) == 7
        start = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await wait_for(asyncio.sleep(10), Deadline(5.0).child(0.05))
        assert time.monotonic() - start < 2.0

    asyncio.run(go())
