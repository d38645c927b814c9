"""The HTTP transport layer of both APIs: connection caps, a request-head deadline, bounded TLS
buffers and rate-limited logs (docs/security.md "Limits"). Handlers never see any of it.

Each accepted connection's protocol (aiohttp's request handler) is wrapped in a
:class:`_Guarded` protocol that counts it per peer address and in total, closes it when over a
cap, and closes it when a request head does not complete within ``header_timeout``. The head
deadline needs to know when a request reached the application: the :func:`middleware` marks
that (and its end) on the connection.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ctypes
import ctypes.util
import logging
import time
from collections import Counter
from typing import Any, Awaitable, Callable

from aiohttp import web

from eden.controller.limits import Limits

log = logging.getLogger("eden.controller.transport")
_IDLE, _HEAD, _BUSY = 0, 1, 2
TRIM_AFTER = 256  # closed connections between two malloc_trim calls


def _libc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


_malloc_trim = _libc_trim()


class Gate:
    """Connection accounting for one listening socket."""

    def __init__(self, limits: Limits, name: str) -> None:
        self.limits = limits
        self.name = name
        self.total = 0
        self.per_client: Counter[str] = Counter()
        self.refused = 0
        self.timed_out = 0
        self.by_transport: dict[asyncio.BaseTransport, _Guarded] = {}
        self._closed_since_trim = 0

    def closed(self) -> None:
        """After many connections closed, hand the freed heap back to the system (glibc keeps it)."""
        self._closed_since_trim += 1
        if (self._closed_since_trim >= TRIM_AFTER or self.total == 0 and self._closed_since_trim >= 16) and _malloc_trim:
            self._closed_since_trim = 0
            _malloc_trim(0)

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, inner)

    def mark(self, transport: asyncio.BaseTransport | None, busy: bool) -> None:
        conn = self.by_transport.get(transport) if transport is not None else None
        if conn is not None:
            conn.set_busy(busy)


class _Guarded(asyncio.Protocol):
    """Delegates to aiohttp's protocol; adds the caps and the head deadline."""

    def __init__(self, gate: Gate, inner: Callable[[], asyncio.Protocol]) -> None:
        self.gate = gate
        self.inner = inner()
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.counted = False
        self.state = _IDLE
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        g, lim = self.gate, self.gate.limits
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self.transport = transport  # type: ignore[assignment]
        if g.total >= lim.max_connections or g.per_client[self.client] >= lim.max_connections_per_client:
            g.refused += 1
            log.warning("%s: connection from %s refused: %d open in total, %d from it (caps %d, %d per client)",
                        g.name, self.client, g.total, g.per_client[self.client], lim.max_connections,
                        lim.max_connections_per_client)
            transport.abort()  # type: ignore[attr-defined]
            return
        self.counted = True
        g.total += 1
        g.per_client[self.client] += 1
        g.by_transport[transport] = self
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.counted:
            return
        self.counted = False
        g = self.gate
        g.total -= 1
        g.per_client[self.client] -= 1
        if g.per_client[self.client] <= 0:
            del g.per_client[self.client]
        if self.transport is not None:
            g.by_transport.pop(self.transport, None)
        self._cancel()
        self.inner.connection_lost(exc)
        g.closed()

    def data_received(self, data: bytes) -> None:
        if not self.counted:
            return
        if self.state == _IDLE:  # the first byte of a request head: it must end in time
            self.state = _HEAD
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.gate.limits.header_timeout, self._head_expired)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.counted else None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def set_busy(self, busy: bool) -> None:
        self._cancel()
        self.state = _BUSY if busy else _IDLE

    def _cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _head_expired(self) -> None:
        self.timer = None
        if self.state == _HEAD and self.transport is not None:
            self.gate.timed_out += 1
            log.warning("%s: %s sent no complete request head within %.0f s: closed", self.gate.name, self.client,
                        self.gate.limits.header_timeout)
            self.transport.abort()


def middleware(gate: Gate) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Marks each request's connection busy while the application handles it (no head deadline)."""

    @web.middleware
    async def mark(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        gate.mark(request.transport, True)
        try:
            return await handler(request)
        finally:
            gate.mark(request.transport, False)

    return mark


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections pass through ``gate`` and whose TLS handshake has a deadline."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: Gate, **kw: Any) -> None:
        super().__init__(runner, host, port, **kw)
        self.gate = gate

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        extra = {"ssl_handshake_timeout": self.gate.limits.handshake_timeout} if self._ssl_context else {}
        self._server = await loop.create_server(self.gate.factory(server), self._host, self._port,
                                                ssl=self._ssl_context, backlog=self._backlog, **extra)


def bound_tls_buffers(limits: Limits) -> None:
    """The stdlib's TLS protocol allocates a 256 KiB read buffer per connection; TLS records are at
    most 16 KiB, so a smaller buffer costs nothing but bounds idle connections' memory. Process-wide:
    only the serve process calls this."""
    asyncio.sslproto.SSLProtocol.max_size = max(16 * 1024 + 256, limits.tls_read_buffer)


class RateLimit(logging.Filter):
    """At most ``burst`` lines of one message template (per logger) in each ``window`` seconds; the
    rest are counted and summarised in one line when the next window opens. Tracebacks of aiohttp's
    and asyncio's own connection errors are dropped: one line each."""

    def __init__(self, burst: int, window: float) -> None:
        super().__init__()
        self.burst, self.window = burst, window
        self.seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, count, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(("aiohttp", "asyncio")) and record.exc_info:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        key = (record.name, str(record.msg)[:200])
        now = time.monotonic()
        slot = self.seen.get(key)
        if slot is None or now - slot[0] >= self.window:
            suppressed = int(slot[2]) if slot else 0
            if len(self.seen) > 10_000:
                self.seen.clear()
            self.seen[key] = [now, 1, 0]
            if suppressed:
                record.msg = f"{record.getMessage()} (and {suppressed} similar lines suppressed in the last window)"
                record.args = None
            return True
        slot[1] += 1
        if slot[1] <= self.burst:
            return True
        slot[2] += 1
        return False


def body_guard(limits: Limits, *, read: bool = True) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Request bodies: no ``Content-Encoding`` (EVE sends none; a compressed body would be a
    decompression bomb) → 400; with ``read``, the whole body within ``body_timeout`` → else 408,
    over ``client_max_size`` → 413, a client gone mid-body → 400 (nobody reads it). Handlers then
    get the body from aiohttp's cache."""

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            return web.Response(status=400, text=f"Content-Encoding {encoding[:40]!r} is not accepted")
        if read and request.body_exists:
            try:
                await asyncio.wait_for(request.read(), limits.body_timeout)
            except asyncio.TimeoutError:
                log.warning("%s %s: body not received within %.0f s: 408", request.method, request.path, limits.body_timeout)
                return _closing(408, "request body not received in time")
            except web.HTTPRequestEntityTooLarge:
                return _closing(413, f"request body over {limits.max_body} bytes")
            except (ConnectionError, OSError, EOFError) as exc:
                return _closing(400, f"request body cut short: {type(exc).__name__}")
            except Exception as exc:  # aiohttp's payload errors (bad chunking, cut body): the client's fault
                return _closing(400, f"bad request body: {type(exc).__name__}")
        return await handler(request)

    return guard


def _closing(status: int, text: str) -> web.Response:
    """An error answer after which the connection is closed (the rest of the body is not read)."""
    response = web.Response(status=status, text=text)
    response.force_close()
    return response
