"""A real-time backend driven step by step from Python (:class:`eden.fleet.Fleet`).

``eden run`` hands the whole runner to :meth:`LiveBackend.run`, which owns the event loop until
the scenario ends. A :class:`~eden.fleet.Fleet` instead drives the fleet from a test's own thread:
here the backend's event loop runs in a thread of its own, the controller and devices start on it,
and every call into the backend (an action, a view, a metric) is carried out on that loop, so the
backend's code stays single-threaded. Time is real: :meth:`LiveSession.run_until` sleeps, checking
that nothing broke meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from eden.backends.base import RunGen
from eden.backends.realtime import Driver
from eden.errors import InfrastructureError

if TYPE_CHECKING:
    from eden.backends.live import LiveBackend

T = TypeVar("T")
START_TIMEOUT = 300.0  # controller start plus every device's provisioning
CALL_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
TICK = 0.2


class LiveSession:
    def __init__(self, backend: LiveBackend[Any]) -> None:
        self.be = backend
        self.driver = Driver(backend.clock)
        self._workdir = backend.work_dir()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._main, name=f"eden-{backend.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            self._error = InfrastructureError(f"the {backend.name} fleet did not start within {START_TIMEOUT:.0f} s")
        if self._error is not None:
            error = self._error
            self.close()
            raise error if isinstance(error, InfrastructureError) else InfrastructureError(f"{type(error).__name__}: {error}")

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller's thread
            if self._error is None:
                self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self.be.start_fleet()
            self._ready.set()
            await self._stopping.wait()
        finally:
            await self.driver.cancel_all()
            await self.be.shutdown()

    # ------------------------------------------------------------------------------ clock --
    def now(self) -> float:
        return self.be.now()

    def check(self) -> None:
        """Raise what broke the fleet: its loop, one of its processes, a spawned activity."""
        if self._error is not None:
            raise InfrastructureError(f"the {self.be.name} fleet stopped: {self._error}")
        failure = self.be.failure()
        if failure is not None:
            raise InfrastructureError(failure)
        if self.driver.failure is not None:
            exc = self.driver.failure
            raise exc if isinstance(exc, InfrastructureError) else InfrastructureError(f"{type(exc).__name__}: {exc}")

    def run_until(self, t: float) -> None:
        while True:
            self.check()
            left = t - self.now()
            if left <= 0:
                return
            time.sleep(min(TICK, left))

    def spawn(self, gen: RunGen) -> None:
        self.call(lambda: self.driver.spawn(gen))

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the backend's loop, its result or exception here."""
        self.check()
        assert self._loop is not None

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(CALL_TIMEOUT)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
        self._thread.join(STOP_TIMEOUT)
        self.be.finish(self._workdir)
