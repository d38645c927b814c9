"""One monotonic deadline, passed down instead of ad-hoc timeouts.

A run creates one :class:`Deadline`; every operation inside it takes ``run_deadline.child(n)``,
which ends after ``n`` seconds or when the run's deadline ends, whichever is first. So no step
can outlive the run that started it. The monotonic clock is used so a wall-clock step (NTP)
never moves a deadline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, TypeVar

T = TypeVar("T")


class DeadlineExpired(TimeoutError):
    """A :class:`Deadline` ran out; a ``TimeoutError`` so existing handlers still catch it."""


class Deadline:
    """An instant on the monotonic clock, never later than its parent's."""

    def __init__(self, seconds: float, parent: Deadline | None = None) -> None:
        at: float = time.monotonic() + seconds
        self.parent = parent
        self.at: float = min(at, parent.at) if parent is not None else at

    def child(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now, bounded by this one's remaining time."""
        return Deadline(seconds, parent=self)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def check(self, what: str = "operation") -> None:
        """Raise :class:`DeadlineExpired` if the deadline has passed."""
        if self.expired():
            raise DeadlineExpired(f"{what}: deadline expired")


async def wait_for(aw: Awaitable[T], deadline: Deadline, *, floor: float = 0.0) -> T:
    """``asyncio.wait_for`` bounded by ``deadline``; ``floor`` gives a last chance when it has passed."""
    return await asyncio.wait_for(aw, max(floor, deadline.remaining()))
