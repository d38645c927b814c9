"""A serial console: captured raw, shown as lines, and searched by an expect engine.

The console reads from a :class:`ByteSource`, anything that opens a byte stream:

* :class:`UnixSocketSource`: QEMU serves a VM's serial port on a unix socket
  (``-chardev socket,server=on,wait=off``); the machine starts QEMU paused (``-S``) and connects
  the console before the guest runs, so no byte is lost;
* :class:`TcpSource`: a serial server (``ser2net`` in raw mode, a board's BMC) serves a physical
  serial port as a raw TCP stream.

* ``console.raw`` keeps every byte exactly as received (binary noise included);
* ``console.log`` is the decoded view, one line per guest line (``\\r`` dropped, bad UTF-8 replaced),
  and each line also goes to an ``on_line`` callback (the backend's event timeline);
* :meth:`Console.expect` waits for a literal marker or a regex with a
  :class:`~eden.runtime.deadline.Deadline`. Matches are found in stream order: each match consumes
  the stream up to its end, so two expects for the same marker need two occurrences.

Losing the console while the machine is supposed to run is an infrastructure error, never a product failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Protocol

from eden.runtime.deadline import Deadline
from eden.errors import InfrastructureError

Pattern = str | bytes | re.Pattern[str] | re.Pattern[bytes]


class ConsoleReader(Protocol):
    """The reading half the console needs (an ``asyncio.StreamReader`` is one)."""

    async def read(self, n: int = -1) -> bytes: ...


class ConsoleWriter(Protocol):
    """The writing half the console needs (an ``asyncio.StreamWriter`` is one)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


Stream = tuple[ConsoleReader, ConsoleWriter]

#: Unmatched output kept for searching; older bytes are dropped (they stay in console.raw).
#: Markers longer than this cannot be matched across the cut.
SEARCH_WINDOW = 1 << 20


class ByteSource(Protocol):
    """Where console bytes come from; :meth:`open` raises ``OSError`` while the source is not ready yet."""

    @property
    def name(self) -> str: ...

    async def open(self) -> Stream: ...


class UnixSocketSource:
    """A unix stream socket, as QEMU's ``-chardev socket`` serves a serial port."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def name(self) -> str:
        return f"console socket {self.path}"

    async def open(self) -> Stream:
        return await asyncio.open_unix_connection(str(self.path))


class TcpSource:
    """A raw TCP stream, as a serial server (``ser2net`` raw mode) serves a physical port."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    @property
    def name(self) -> str:
        return f"console server {self.host}:{self.port}"

    async def open(self) -> Stream:
        return await asyncio.open_connection(self.host, self.port)


class ExpectTimeout(Exception):
    """The pattern did not appear before the deadline (an observation about the guest)."""

    def __init__(self, what: str, tail: str) -> None:
        super().__init__(f"console: {what} did not appear in time; last output:\n{tail}")
        self.what = what
        self.tail = tail


@dataclass(frozen=True)
class ConsoleMatch:
    """One match: the matched bytes, regex groups, stream offsets and when its last byte arrived."""

    data: bytes
    groups: tuple[bytes | None, ...]
    start: int
    end: int
    at: float  # time.monotonic() when the chunk completing the match was received

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")

    def group(self, i: int) -> str | None:
        g = self.data if i == 0 else self.groups[i - 1]
        return None if g is None else g.decode(errors="replace")


def compile_pattern(pattern: Pattern) -> re.Pattern[bytes]:
    """A literal (str/bytes) becomes an escaped bytes regex; a compiled str regex is re-encoded."""
    if isinstance(pattern, re.Pattern):
        if isinstance(pattern.pattern, bytes):
            return pattern  # type: ignore[return-value]
        return re.compile(pattern.pattern.encode(), pattern.flags & ~re.UNICODE)
    raw = pattern.encode() if isinstance(pattern, str) else pattern
    return re.compile(re.escape(raw))


def describe(pattern: Pattern) -> str:
    return repr(pattern.pattern if isinstance(pattern, re.Pattern) else pattern)


class ConsoleBuffer:
    """The sans-I/O core: bytes in, lines and matches out (property-tested against garbage)."""

    def __init__(self, on_line: Callable[[str], None] | None = None) -> None:
        self.on_line = on_line
        self.buf = bytearray()  # unconsumed output, starting at stream offset `base`
        self.base = 0
        self.total = 0
        self.line = bytearray()
        self.last_at = 0.0

    def feed(self, data: bytes, at: float | None = None) -> list[str]:
        """Add received bytes; returns (and hands to on_line) the lines they complete."""
        self.last_at = time.monotonic() if at is None else at
        self.buf += data
        self.total += len(data)
        if len(self.buf) > SEARCH_WINDOW:
            cut = len(self.buf) - SEARCH_WINDOW
            del self.buf[:cut]
            self.base += cut
        lines: list[str] = []
        self.line += data
        while (nl := self.line.find(b"\n")) >= 0:
            lines.append(decode_line(bytes(self.line[:nl])))
            del self.line[: nl + 1]
        if len(self.line) > 64 * 1024:  # a "line" that never ends: flush it anyway
            lines.append(decode_line(bytes(self.line)))
            self.line.clear()
        if self.on_line is not None:
            for text in lines:
                self.on_line(text)
        return lines

    def search(self, regex: re.Pattern[bytes]) -> ConsoleMatch | None:
        """The first match in the unconsumed output; consumes the stream up to its end."""
        m = regex.search(self.buf)
        if m is None:
            return None
        found = ConsoleMatch(bytes(m.group(0)), tuple(m.groups()), self.base + m.start(), self.base + m.end(),
                             self.last_at)
        del self.buf[: m.end()]
        self.base += m.end()
        return found

    def tail(self, n: int = 2000) -> str:
        return bytes(self.buf[-n:]).decode(errors="replace")


def decode_line(raw: bytes) -> str:
    text = raw.decode(errors="replace").replace("\r", "")
    # keep tabs, drop other control characters (escape sequences, NULs) from the readable view
    return "".join(ch for ch in text if ch == "\t" or ch >= " ")


class Console:
    """A connected serial console of one machine; a bare path means a unix socket."""

    def __init__(self, source: ByteSource | Path, log_dir: Path, on_line: Callable[[str], None] | None = None,
                 on_bytes: Callable[[bytes], None] | None = None) -> None:
        self.source: ByteSource = UnixSocketSource(source) if isinstance(source, Path) else source
        self._on_bytes = on_bytes  # every byte as received (a stand-in board forwards them to its pty)
        self.log_dir = log_dir
        self.core = ConsoleBuffer(self._line)
        self._user_on_line = on_line
        self._raw: BinaryIO | None = None
        self._log: BinaryIO | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: ConsoleWriter | None = None
        self._changed = asyncio.Event()
        self.closed = False  # the socket reached EOF or failed
        self.expected_alive = True  # False while the machine powers off: EOF is then normal
        self.error: BaseException | None = None

    @property
    def raw_path(self) -> Path:
        return self.log_dir / "console.raw"

    @property
    def log_path(self) -> Path:
        return self.log_dir / "console.log"

    async def connect(self, deadline: Deadline, alive: Callable[[], bool] = lambda: True) -> None:
        """Connect to the source, retrying while it is not ready (and ``alive()``) until the deadline."""
        while True:
            try:
                reader, writer = await self.source.open()
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if not alive():
                    raise InfrastructureError(f"the console's machine exited before its {self.source.name} was ready"
                                              ) from None
                if deadline.expired():
                    raise InfrastructureError(f"{self.source.name} not ready in time") from None
                await asyncio.sleep(0.01)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._raw = open(self.raw_path, "ab")
        self._log = open(self.log_path, "ab")
        self._writer = writer
        self._reader = asyncio.get_running_loop().create_task(self._read(reader), name=self.source.name)

    def _line(self, text: str) -> None:
        if self._log is not None:
            self._log.write(text.encode() + b"\n")
        if self._user_on_line is not None:
            try:
                self._user_on_line(text)
            except Exception as exc:  # a broken consumer must not stop the capture
                self.error = self.error or exc

    async def _read(self, reader: ConsoleReader) -> None:
        try:
            while True:
                lost: BaseException | None = None
                try:
                    await self._pump(reader)
                except (ConnectionError, OSError) as exc:
                    lost = exc
                again = await self._reattach(lost)
                if again is None:
                    if lost is not None:
                        self.error = self.error or lost
                    break
                reader = again
        finally:
            self.closed = True
            self._changed.set()

    async def _pump(self, reader: ConsoleReader) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            assert self._raw is not None
            self._raw.write(data)
            self._raw.flush()
            if self._on_bytes is not None:
                self._on_bytes(data)
            self.core.feed(data)
            if self._log is not None:
                self._log.flush()
            self._changed.set()

    async def _reattach(self, lost: BaseException | None) -> ConsoleReader | None:
        """The stream ended (``lost`` says why, None for EOF): a new reader to go on with, or None to stop.

        A VM's console never comes back; :class:`eden.lab.consoles.ReattachingConsole` re-opens a
        board's serial port here, keeping the same capture files.
        """
        return None

    async def expect(self, pattern: Pattern, deadline: Deadline) -> ConsoleMatch:
        """Wait for ``pattern`` (literal str/bytes, or a compiled regex) in the output not yet consumed.

        Raises :class:`ExpectTimeout` at the deadline, :class:`InfrastructureError` if the console is
        lost while the machine should be running.
        """
        regex = compile_pattern(pattern)
        while True:
            found = self.core.search(regex)
            if found is not None:
                return found
            if self.closed:
                if self.expected_alive:
                    raise InfrastructureError(
                        f"console lost while waiting for {describe(pattern)}"
                        + (f" ({self.error})" if self.error else "")
                        + f"; last output:\n{self.core.tail(500)}"
                    )
                raise ExpectTimeout(describe(pattern), self.core.tail(500))
            if deadline.expired():
                raise ExpectTimeout(describe(pattern), self.core.tail(500))
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline.remaining())

    async def write(self, data: bytes | str, char_delay_ms: float = 0.0) -> None:
        """Type into the guest's serial console; ``char_delay_ms`` > 0 sends one character at a time,
        each followed by that pause (slow bootloaders drop bytes typed at line speed)."""
        if self._writer is None or self.closed:
            raise InfrastructureError("console is not connected")
        if char_delay_ms <= 0:
            chunks = [data.encode() if isinstance(data, str) else data]
        elif isinstance(data, str):
            chunks = [ch.encode() for ch in data]
        else:
            chunks = [data[i:i + 1] for i in range(len(data))]
        for chunk in chunks:
            writer = self._writer
            if writer is None:
                raise InfrastructureError("console is not connected")
            writer.write(chunk)
            try:
                await writer.drain()
            except (ConnectionError, OSError) as exc:
                raise InfrastructureError(f"console lost while writing: {exc}") from exc
            if char_delay_ms > 0:
                await asyncio.sleep(char_delay_ms / 1000)

    async def close(self) -> None:
        self.expected_alive = False
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._reader, 2.0)
            if not self._reader.done():
                self._reader.cancel()
                with contextlib.suppress(BaseException):
                    await self._reader
        for f in (self._raw, self._log):
            if f is not None:
                f.close()
        self._raw = self._log = None
        self.closed = True
