"""Stopping a run that holds real resources (VMs, swtpm, controllers, temp dirs) on request.

A stop request is a Ctrl-C (SIGINT) or a SIGTERM, as a CI system sends when it cancels a job. The
first request stops the run *gracefully*: the run's main task is cancelled, so every ``finally``
releases what it holds, and the run then ends with :class:`Interrupted`. A further SIGINT while
that stop is under way *forces* it (the user pressed Ctrl-C twice); a further SIGTERM never does,
because ``eden qualify`` forwards its own stop request to its workers as SIGTERM, and a worker that
got the terminal's Ctrl-C too must not take the forward for a second press.

:class:`StopOnSignal` does this for one asyncio loop (``eden.backends.live``); ``eden.qualify``
applies the same rule across its worker processes.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from types import TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by signal ``signum``."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def signame_of(exc: KeyboardInterrupt) -> str:
    """The stopping signal's name: a plain KeyboardInterrupt is Python's own SIGINT handler."""
    return signal.Signals(exc.signum).name if isinstance(exc, Interrupted) else "SIGINT"


def exit_code(signame: str) -> int:
    """The shell's exit code for a process stopped by ``signame``: 128 + its number (130, 143)."""
    return 128 + signal.Signals[signame]


def raise_interrupted(signum: int, _frame: Any = None) -> None:
    """A ``signal.signal`` handler: turn the signal into :class:`Interrupted` where Python runs."""
    raise Interrupted(signum)


class StopOnSignal:
    """Within ``with StopOnSignal(task):`` on the loop's thread, SIGINT/SIGTERM cancel ``task`` once.

    ``signum`` tells afterwards whether (and by which signal) the stop was requested. The previous
    handlers are put back on exit. Outside the main thread it does nothing (Python delivers signals
    to the main thread only), and the caller's own handling applies.
    """

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.signum: int | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is not threading.main_thread():
            return self
        loop = self.task.get_loop()
        for sig in STOP_SIGNALS:
            self._saved[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        loop = self.task.get_loop()
        for sig, handler in self._saved.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)
        self._saved.clear()

    def _on_signal(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            self.task.cancel()
        elif signum == signal.SIGINT:
            raise Interrupted(signum)  # a second Ctrl-C: out of the loop now, no more waiting
