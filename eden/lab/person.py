"""Asking the person at the lab host's terminal to do something to a board, and waiting for Enter.

Used where a desk setup has no hardware for a step: manual power (:class:`eden.lab.power.ManualPower`)
and manual media (a person writes the image to the board's storage). Without a person (standard
input is not a terminal and no ``stdin`` was given) it fails at once instead of waiting for a key
nobody will press; the wait is bounded by the deadline, with no thread left blocked on the terminal.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from eden.errors import InfrastructureError
from eden.runtime.deadline import Deadline


async def ask_person(text: str, *, place: str, what: str, deadline: Deadline,
                     stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
    """Show ``text`` and wait for a line (Enter); :class:`InfrastructureError` naming ``place``
    and ``what`` when nobody is there, the input closes, or the deadline passes."""
    source = stdin if stdin is not None else sys.stdin
    if stdin is None and (source is None or not source.isatty()):
        raise InfrastructureError(f"place {place}: manual {what.split()[0]} needs a person at a terminal "
                                  "(standard input is not one)")
    out = stdout if stdout is not None else sys.stdout
    out.write(text + "\n")
    out.flush()
    if await _readline(source, deadline, place, what) == "":
        raise InfrastructureError(f"place {place}: nobody confirmed {what} (input closed)")


async def _readline(stdin: TextIO, deadline: Deadline, place: str, what: str) -> str:
    try:
        fd = stdin.fileno()
    except (OSError, ValueError, AttributeError):
        return stdin.readline()  # in-memory input: never blocks
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await asyncio.wait_for(ready, deadline.remaining())
    except asyncio.TimeoutError:
        raise InfrastructureError(f"place {place}: nobody confirmed {what} in time") from None
    finally:
        loop.remove_reader(fd)
    return stdin.readline()
