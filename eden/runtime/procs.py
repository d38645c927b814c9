"""Child processes of a real-time run: started, watched and always reaped.

Every process a backend starts (controller, device agents, QEMU, swtpm) goes through
:class:`ProcessGroup`, which guarantees the house rule "nothing is left behind":

* each child asks the kernel to SIGKILL it if the harness dies (``PR_SET_PDEATHSIG``), so even a
  ``kill -9`` of the harness leaks nothing. The request is made by util-linux ``setpriv
  --pdeathsig KILL`` exec'ing the child, not by Python code between fork and exec: a
  ``preexec_fn`` in a process with threads (the harness's admin-API threads) can deadlock in the
  forked child (dlopen/malloc locks held by another thread at fork), which froze whole runs on a
  loaded CI host. The request only counts while the harness is alive: a harness that dies between
  the fork and setpriv's ``prctl`` would leave the child orphaned and never signalled, so a
  ``/bin/sh`` between setpriv and the child compares its parent pid (read after the ``prctl``) with
  the harness's and exits if they differ, before the child is ever exec'd;
* each child runs in its own session, so a Ctrl-C in the terminal reaches the harness only and the
  harness decides the shutdown order (agents first, then the controller);
* :meth:`ProcessGroup.close` kills and reaps whatever is still running, on success, failure or
  cancellation.

Standard output is read line by line and handed to a callback (the agents' event lines);
standard error goes to a log file next to the run's outputs, for the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from typing import Callable

_SETPRIV = shutil.which("setpriv")
_SH = shutil.which("sh")
EXIT_ORPHANED = 125
"""Exit code of a child whose harness died before the parent-death signal was armed."""
_PARENT_CHECK = f'[ "$PPID" = "$0" ] || exit {EXIT_ORPHANED}; exec "$@"'


def with_parent_death_signal(argv: list[str], parent: int | None = None) -> list[str]:
    """``argv`` run so that the kernel SIGKILLs it when ``parent`` (default: this process, which must be
    the one that forks it) dies, with no window at the start (see the module docstring); unchanged
    where util-linux ``setpriv`` is missing (the cleanup in :meth:`ProcessGroup.close` stays)."""
    if not _SETPRIV:
        return list(argv)
    if not _SH:
        return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
    pid = os.getpid() if parent is None else parent
    # sh sets $PPID at start, i.e. after setpriv's prctl: a harness still alive then will signal us.
    return [_SETPRIV, "--pdeathsig", "KILL", "--", _SH, "-c", _PARENT_CHECK, str(pid), *argv]


class Managed:
    """One started child process."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, reader: asyncio.Task[None] | None) -> None:
        self.name = name
        self.proc = proc
        self.reader = reader

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    def kill(self) -> None:
        """SIGKILL: a power cut for an agent."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def terminate(self) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()

    async def wait(self, timeout: float | None = None) -> int:
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.reader, 5.0)
        return rc

    async def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; always reaped."""
        if self.running:
            self.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except asyncio.TimeoutError:
                self.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 10.0)
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader
        return self.proc.returncode


class ProcessGroup:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Managed] = []

    async def start(
        self,
        name: str,
        argv: list[str],
        *,
        on_line: Callable[[str], None] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Managed:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        err = open(self.log_dir / f"{name}.log", "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *with_parent_death_signal(argv),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if on_line is not None else asyncio.subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
                limit=1 << 20,
            )
        finally:
            err.close()
        reader = None
        if on_line is not None:
            assert proc.stdout is not None
            reader = asyncio.get_running_loop().create_task(_read_lines(proc.stdout, on_line))
        managed = Managed(name, proc, reader)
        self.procs.append(managed)
        self.procs = [p for p in self.procs if p.running or p is managed]
        return managed

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.log_dir / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def close(self) -> None:
        await asyncio.gather(*(p.stop(grace=3.0) for p in self.procs), return_exceptions=True)
        self.procs.clear()


async def _read_lines(stream: asyncio.StreamReader, on_line: Callable[[str], None]) -> None:
    while True:
        line = await stream.readline()
        if not line:
            return
        on_line(line.decode(errors="replace").rstrip("\n"))
