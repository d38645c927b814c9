"""One network port of an emulated device: a TCP relay the harness can cut.

Each port of each emulated device (eth0, eth1, ...) reaches the controller through its own relay
on loopback, so a scenario's network faults act on real connections instead of on flags:

* **link down** (``network_down``): the path is dead. New connections are accepted but never
  answered, so the TLS handshake of a new request never completes and the device gives up after
  its dial timeout, as EVE does on a dead path (spec §1, §4; eve/send.py). A connection with a
  request in flight freezes (no bytes either way): that request waits for its send timeout. Idle
  keep-alive connections are reset instead, because EVE opens a new connection for every request
  (a new transport per ``SendOnIntf``) and so never waits on an old one; the agent's next request
  dials anew into the dead path. When the link comes back, the frozen connections are reset.
* **controller down** (``controller_outage``): the relay stops listening, so connecting fails at
  once with ECONNREFUSED, as it does when the controller host is up but its service is not. A
  port whose link is down stays a black hole meanwhile (it keeps listening and never answers):
  a dead path says nothing about the controller, so a device with its links cut during an outage
  sees timeouts, as on a real network, and falls back as the simulator says it does (spec §4).

TLS stays end to end between the device and the controller: the relay only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib


class PortProxy:
    def __init__(self, upstream: tuple[str, int], *, host: str = "127.0.0.1") -> None:
        self.upstream: tuple[str, int] | None = upstream
        self.host = host
        self.port = 0
        self.link_up = True
        self._server: asyncio.base_events.Server | None = None
        self._live: set[asyncio.Task[None]] = set()
        self._busy: dict[asyncio.Task[None], list[bool]] = {}  # a request sent and not yet answered
        self._frozen: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self._switching: asyncio.Task[None] | None = None  # (re)listening after a link change

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def set_upstream(self, upstream: tuple[str, int] | None) -> None:
        """Point at a (restarted) controller, or ``None``: the controller is down (refuse)."""
        if self._switching is not None:  # a link change's own switch first, then this one
            await asyncio.gather(self._switching, return_exceptions=True)
        self.upstream = upstream
        if upstream is None:
            self._reset_all()
        await self._listen_as_needed()

    async def _listen_as_needed(self) -> None:
        """Listen while there is a controller to relay to, or a dead link to black-hole (a dead
        path says nothing about the controller); refuse only when the link is up and it is down."""
        if self.upstream is not None or not self.link_up:
            if self._server is None:
                await self.start()
        else:
            await self._stop_listening()

    def set_link(self, up: bool) -> None:
        if up == self.link_up:
            return
        self.link_up = up
        if up:
            for writer in list(self._frozen):
                _abort(writer)
            self._frozen.clear()
        else:
            for task in list(self._live):
                task.cancel()  # the relay task freezes a busy connection and resets an idle one
        if self.upstream is None:
            previous = self._switching

            async def switch() -> None:
                if previous is not None:
                    await asyncio.gather(previous, return_exceptions=True)
                await self._listen_as_needed()
            self._switching = asyncio.get_running_loop().create_task(switch())

    async def close(self) -> None:
        if self._switching is not None:
            await asyncio.gather(self._switching, return_exceptions=True)
        await self._stop_listening()
        self._reset_all()
        for task in list(self._live):
            task.cancel()
        if self._live:
            await asyncio.gather(*self._live, return_exceptions=True)

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def _reset_all(self) -> None:
        for task in list(self._live):
            task.cancel()
        for writer in list(self._frozen):
            _abort(writer)
        self._frozen.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if not self.link_up:
            self._frozen.add(writer)  # black hole: never read, never answer
            return
        upstream = self.upstream
        if upstream is None:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*upstream)
        except OSError:
            _abort(writer)  # the controller is not there: the device sees the connection drop
            return
        task = asyncio.current_task()
        assert task is not None
        self._live.add(task)
        busy = self._busy[task] = [False]
        try:
            await asyncio.gather(_pipe(reader, up_writer, busy, True), _pipe(up_reader, writer, busy, False))
        except asyncio.CancelledError:
            if not self.link_up and busy[0]:
                self._frozen.add(writer)  # link pulled mid-request: the device's side hangs
                _abort(up_writer)
                return
            _abort(writer)
            _abort(up_writer)
        finally:
            self._live.discard(task)
            self._busy.pop(task, None)
        for w in (writer, up_writer):
            with contextlib.suppress(Exception):
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, busy: list[bool], request: bool) -> None:
    """Relay one direction; ``busy[0]`` is True from a device's bytes until the controller's next
    bytes (request/response traffic: a connection is idle once something came back)."""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            busy[0] = request
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    # Half-close only on a real end of stream; a cancelled relay (link pulled) must send nothing.
    with contextlib.suppress(Exception):
        writer.write_eof()


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if transport is not None and not transport.is_closing():
        transport.abort()
