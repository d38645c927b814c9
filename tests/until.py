"""Waiting inside a test's event loop for a condition, with a bound."""

from __future__ import annotations

import asyncio
import time
from typing import Callable


async def until(pred: Callable[[], bool], timeout: float) -> None:
    """Return once ``pred()`` holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
