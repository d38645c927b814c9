"""Serial consoles of lab boards: byte sources for :class:`eden.runtime.console.Console`, and re-attach.

* :class:`NetworkSerialSource`: a serial port served over the network, as ``ser2net`` serves it:
  ``tcp://host:port`` (raw bytes) or ``rfc2217://host:port`` (telnet with the RFC 2217 COM-port
  option; a small telnet layer here answers the option negotiation, strips telnet commands from
  the data and doubles 0xFF on writes, so every byte passes intact both ways);
* :class:`LocalSerialSource`: a tty on this host (pyserial sets line speed and raw mode), best named
  by its ``/dev/serial/by-id/`` link, which udev points at the new device node after a USB
  re-enumeration; the link is resolved again at each open;
* :class:`ReattachingConsole`: a Console that, when its source ends while the board should be up
  (USB serial re-enumerated, ser2net dropped the connection), re-opens it for up to ``reattach``
  seconds, reporting each detach and re-attach through ``on_event``; the capture files stay the
  same. A console that does not come back is an :class:`~eden.errors.InfrastructureError`: the board
  is broken, the product is not judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import termios
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import serial

from eden.errors import InfrastructureError
from eden.runtime.console import ByteSource, Console, ConsoleReader, Stream
from eden.runtime.deadline import Deadline

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
BINARY, ECHO, SGA, COM_PORT_OPTION = 0, 1, 3, 44
_WE_DO = {BINARY, SGA, COM_PORT_OPTION}  # options we enable on our side when asked
_THEY_MAY = {BINARY, SGA, ECHO, COM_PORT_OPTION}  # options we let the server enable

#: What ser2net sends, then closes, when it cannot give the port: its device vanished or is not back
#: yet, or is still held by the connection it is closing.
SER2NET_REFUSALS = (b"Device open failure", b"Port's device already in use", b"Port already in use")


class TelnetCodec:
    """The sans-I/O telnet layer: server bytes in, (data, replies) out; data out, escaped bytes.

    Each option is answered once per change of state (RFC 854's rule against negotiation loops).
    """

    def __init__(self) -> None:
        self.state = "data"
        self.cmd = 0
        self.us: dict[int, bool] = {}
        self.them: dict[int, bool] = {}

    def hello(self) -> bytes:
        """What the client asks for at connect: binary both ways and the COM-port option."""
        self.us[BINARY] = self.them[BINARY] = self.us[COM_PORT_OPTION] = True
        return bytes([IAC, WILL, BINARY, IAC, DO, BINARY, IAC, WILL, COM_PORT_OPTION])

    def decode(self, chunk: bytes) -> tuple[bytes, bytes]:
        data, replies = bytearray(), bytearray()
        for b in chunk:
            if self.state == "data":
                if b == IAC:
                    self.state = "iac"
                else:
                    data.append(b)
            elif self.state == "iac":
                if b == IAC:
                    data.append(IAC)
                    self.state = "data"
                elif b in (DO, DONT, WILL, WONT):
                    self.cmd, self.state = b, "opt"
                elif b == SB:
                    self.state = "sb"
                else:  # NOP, GA, BRK, ...: no data
                    self.state = "data"
            elif self.state == "opt":
                replies += self._negotiate(self.cmd, b)
                self.state = "data"
            elif self.state == "sb":  # subnegotiation (COM-port notifications): dropped
                if b == IAC:
                    self.state = "sb-iac"
            elif self.state == "sb-iac":
                self.state = "data" if b == SE else "sb"
        return bytes(data), bytes(replies)

    def _negotiate(self, cmd: int, opt: int) -> bytes:
        if cmd in (DO, DONT):
            want = cmd == DO and opt in _WE_DO
            if self.us.get(opt, False) == want and (want or cmd == DONT):
                return b""
            self.us[opt] = want
            return bytes([IAC, WILL if want else WONT, opt])
        want = cmd == WILL and opt in _THEY_MAY
        if self.them.get(opt, False) == want and (want or cmd == WONT):
            return b""
        self.them[opt] = want
        return bytes([IAC, DO if want else DONT, opt])

    @staticmethod
    def encode(data: bytes) -> bytes:
        return data.replace(b"\xff", b"\xff\xff")


class _NetStream:
    """A TCP stream, optionally through the telnet layer, with bytes read ahead given back first."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, telnet: TelnetCodec | None) -> None:
        self.reader = reader
        self.writer = writer
        self.telnet = telnet
        self.ahead = b""

    async def read(self, n: int = -1) -> bytes:
        if self.ahead:
            data, self.ahead = self.ahead, b""
            return data
        while True:
            chunk = await self.reader.read(n if n > 0 else 65536)
            if not chunk or self.telnet is None:
                return chunk
            data, replies = self.telnet.decode(chunk)
            if replies:
                self.writer.write(replies)
            if data:
                return data

    def write(self, data: bytes) -> None:
        self.writer.write(self.telnet.encode(data) if self.telnet is not None else data)

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


class NetworkSerialSource:
    """``tcp://host:port`` (ser2net raw) or ``rfc2217://host:port`` (ser2net ``telnet(rfc2217)``).

    After connecting it watches the stream for ``probe`` seconds: ser2net accepts a connection even
    when it cannot give the port, sends a refusal (``Device open failure: ...``) and closes; such a
    text, or any close within the probe, counts as "not ready" (``ConnectionRefusedError``), so
    connect and re-attach keep trying instead of taking the refusal for board output. Bytes read
    meanwhile are handed to the console first.
    """

    def __init__(self, url: str, *, probe: float = 0.3) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("tcp", "rfc2217") or not parts.hostname or not parts.port:
            raise ValueError(f"network serial console {url!r}: expected tcp://HOST:PORT or rfc2217://HOST:PORT")
        self.url = url
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.probe = probe

    @property
    def name(self) -> str:
        return f"network serial console {self.url}"

    async def open(self) -> Stream:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        telnet = TelnetCodec() if self.scheme == "rfc2217" else None
        stream = _NetStream(reader, writer, telnet)
        try:
            if telnet is not None:
                writer.write(telnet.hello())
            ahead = b""
            end = time.monotonic() + self.probe
            while (left := end - time.monotonic()) > 0:
                try:
                    chunk = await asyncio.wait_for(stream.read(65536), left)
                except asyncio.TimeoutError:
                    break  # a quiet board, or one talking: connected
                if not chunk or ahead.startswith(SER2NET_REFUSALS) or (ahead + chunk).startswith(SER2NET_REFUSALS):
                    said = (ahead + chunk).decode(errors="replace").strip() or "closed at once"
                    raise ConnectionRefusedError(errno.ECONNREFUSED, f"{self.name}: the serial server says: {said}")
                ahead += chunk
        except BaseException:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            raise
        stream.ahead = ahead
        return stream, stream


class _SerialStream:
    """A non-blocking tty fd driven by the event loop (no thread), read and written as a stream."""

    def __init__(self, port: serial.Serial) -> None:
        self.port = port
        self.fd = port.fileno()
        self.loop = asyncio.get_running_loop()
        self.out = bytearray()
        self.closed = False
        self.waiters: set[asyncio.Future[None]] = set()

    async def _ready(self, writing: bool) -> None:
        waiter: asyncio.Future[None] = self.loop.create_future()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        add, remove = (self.loop.add_writer, self.loop.remove_writer) if writing else (self.loop.add_reader,
                                                                                      self.loop.remove_reader)
        add(self.fd, wake)
        self.waiters.add(waiter)
        try:
            await waiter
        finally:
            self.waiters.discard(waiter)
            if not self.closed:
                remove(self.fd)

    async def read(self, n: int = -1) -> bytes:
        while not self.closed:
            try:
                return os.read(self.fd, n if n > 0 else 65536)  # b"" at end of file
            except BlockingIOError:
                await self._ready(writing=False)
        return b""

    def write(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        while self.out:
            if self.closed:
                raise ConnectionResetError(errno.ECONNRESET, "serial port closed")
            try:
                sent = os.write(self.fd, self.out)
                del self.out[:sent]
            except BlockingIOError:
                await self._ready(writing=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.fd)
            self.loop.remove_writer(self.fd)
            self.port.close()
            for waiter in self.waiters:  # a pending read ends (b"") instead of waiting for a closed fd
                if not waiter.done():
                    waiter.set_result(None)

    async def wait_closed(self) -> None:
        return None


_NOT_THERE = {errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.EIO}


class LocalSerialSource:
    """A serial port of this host by path (a ``/dev/serial/by-id/`` link survives re-enumeration)."""

    def __init__(self, device: str, baud: int = 115200) -> None:
        self.device = device
        self.baud = baud

    @property
    def name(self) -> str:
        return f"serial port {self.device}"

    async def open(self) -> Stream:
        if not os.path.exists(self.device):  # also a dangling by-id link
            raise FileNotFoundError(errno.ENOENT, f"{self.name} is not there", self.device)
        try:
            port = serial.Serial(self.device, self.baud, timeout=0, exclusive=True)
        except serial.SerialException as exc:
            if exc.errno in _NOT_THERE:  # vanished between the check and the open
                raise FileNotFoundError(errno.ENOENT, f"{self.name}: {exc}", self.device) from None
            raise InfrastructureError(f"cannot open {self.name}: {exc} (permissions: the dialout group? "
                                      "in use: another program holds it?)") from None
        # pyserial's timeout=0 means VMIN=0: a read with no data then returns b"", which looks like
        # the end of the device. VMIN=1 on the non-blocking fd makes it EAGAIN; b"" is then a hang-up.
        attrs = termios.tcgetattr(port.fileno())
        attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
        termios.tcsetattr(port.fileno(), termios.TCSANOW, attrs)
        stream = _SerialStream(port)
        return stream, stream


class ReattachingConsole(Console):
    """A board's console that re-opens its source when it ends, for up to ``reattach`` seconds.

    While the board is meant to be off (``expected_alive`` False) the source may stay away for any
    time (an on-board USB serial chip loses power with the board); the ``reattach`` window starts
    when the board is meant to be up again. ``on_event(kind, data)`` gets ``console-detached``,
    ``console-reattached`` and ``console-vanished``, with the capture offset, for the run timeline.
    """

    def __init__(self, source: ByteSource, log_dir: Path, *, place: str, reattach: float = 30.0,
                 on_line: Callable[[str], None] | None = None,
                 on_event: Callable[[str, dict[str, object]], None] | None = None) -> None:
        super().__init__(source, log_dir, on_line)
        self.place = place
        self.reattach = reattach
        self.on_event = on_event
        self.detached_at: float | None = None
        self._stopping = False
        self._attached = asyncio.Event()

    def _emit(self, kind: str, data: dict[str, object]) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, {"source": self.source.name, "offset": self.core.total, **data})
            except Exception as exc:  # a broken consumer must not stop the capture
                self.error = self.error or exc

    async def connect(self, deadline: Deadline, alive: Callable[[], bool] = lambda: True) -> None:
        await super().connect(deadline, alive)
        self._attached.set()

    async def _reattach(self, lost: BaseException | None) -> ConsoleReader | None:
        if self._stopping:
            return None
        self._attached.clear()
        old, self._writer = self._writer, None
        if old is not None:
            old.close()
        self.detached_at = time.monotonic()
        self._emit("console-detached", {"reason": str(lost) if lost is not None else "end of stream"})
        window: Deadline | None = None
        while not self._stopping:
            if self.expected_alive:
                window = window or Deadline(self.reattach)
                if window.expired():
                    self.error = InfrastructureError(
                        f"the serial console of place {self.place} vanished: {self.source.name} did not come back "
                        f"within {self.reattach:g} s")
                    self._emit("console-vanished", {"after_s": round(time.monotonic() - self.detached_at, 3)})
                    return None
            else:
                window = None
            try:
                reader, writer = await asyncio.wait_for(self.source.open(), window.remaining() if window else 5.0)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.05)
                continue
            except InfrastructureError as exc:  # there, but cannot be used (permissions, held by another program)
                self.error = exc
                self._emit("console-vanished", {"reason": str(exc)})
                return None
            self._writer = writer
            self._emit("console-reattached", {"after_s": round(time.monotonic() - self.detached_at, 3)})
            self.detached_at = None
            self._attached.set()
            return reader
        return None

    async def write(self, data: bytes | str, char_delay_ms: float = 0.0) -> None:
        """As :meth:`Console.write`; while detached, waits (up to ``reattach`` s) for the re-attach."""
        if not self._attached.is_set() and not self.closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._attached.wait(), self.reattach)
        if self.closed and isinstance(self.error, InfrastructureError):
            raise self.error
        if not self._attached.is_set():
            raise InfrastructureError(f"the serial console of place {self.place} vanished: {self.source.name}")
        await super().write(data, char_delay_ms)

    async def close(self) -> None:
        self._stopping = True
        await super().close()
