"""A lab's shell commands (power relays, link switches, SD-muxes), run so that nothing outlives them.

Each command runs under ``/bin/sh -c`` in its own session and process group with ``EDEN_PLACE``
in its environment. At its end, or at its timeout, the whole group is killed, so a command that
leaves helpers behind leaks nothing. A command that cannot start, fails or overruns is an
:class:`~eden.errors.InfrastructureError` naming the place: the lab, not the product, is at fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping

from eden.errors import InfrastructureError
from eden.runtime.deadline import Deadline
from eden.runtime.procs import with_parent_death_signal


def tail(output: bytes, lines: int = 10) -> str:
    text = output.decode(errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


async def run_shell(command: str, *, place: str, what: str, deadline: Deadline, timeout: float | None = None,
                    env: Mapping[str, str] | None = None) -> bytes:
    """Run ``command`` for ``place`` within ``deadline`` (and ``timeout``); its output on success.

    ``what`` names the command in errors ("the power on command", "link eth0 down")."""
    limit = deadline.remaining() if timeout is None else min(timeout, deadline.remaining())
    full_env = {**os.environ, **(env or {}), "EDEN_PLACE": place}
    try:
        proc = await asyncio.create_subprocess_exec(
            *with_parent_death_signal(["/bin/sh", "-c", command]),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=full_env, start_new_session=True)
    except OSError as exc:
        raise InfrastructureError(f"place {place}: cannot start {what}: {exc}") from None
    assert proc.stdout is not None
    output = asyncio.get_running_loop().create_task(proc.stdout.read())
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), max(0.0, limit))
    except asyncio.TimeoutError:
        timed_out = True
    finally:
        # the session's group: the shell and anything it started (also on cancellation)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), 5.0)
    try:
        out = await asyncio.wait_for(output, 2.0)
    except asyncio.TimeoutError:  # a grandchild outside the group still holds the pipe
        output.cancel()
        out = b""
    if timed_out:
        raise InfrastructureError(f"place {place}: {what} did not finish in {limit:.1f} s (killed): {command!r}; "
                                  f"last output:\n{tail(out)}")
    if proc.returncode != 0:
        raise InfrastructureError(f"place {place}: {what} failed (exit {proc.returncode}): {command!r}; "
                                  f"last output:\n{tail(out)}")
    return out
