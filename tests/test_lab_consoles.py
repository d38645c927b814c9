"""Board consoles over real ptys: read locally with pyserial and through a real ser2net (raw and RFC 2217),
with paced writes, 0xFF intact, and re-attach after the device vanishes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eden.errors import InfrastructureError
from eden.lab.consoles import LocalSerialSource, NetworkSerialSource, ReattachingConsole, TelnetCodec
from eden.runtime.console import ByteSource
from eden.runtime.deadline import Deadline
from labtools import Pty, Ser2net, open_fds


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[Pty]:
    p = Pty(tmp_path / "usb-FTDI_FT232R_A1B2C3-if00-port0")
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def ser2net(tmp_path: Path, pty: Pty) -> Iterator[Ser2net]:
    server = Ser2net(tmp_path, {"raw": ("raw", str(pty.link)), "tel": ("rfc2217", str(pty.link))})
    try:
        yield server
    finally:
        server.stop()
    assert not server.leftovers()


async def _linked(con: ReattachingConsole, pty: Pty, tag: str = "ping") -> None:
    """Write on the board side until the console sees it: the server may open the device after our connect."""
    deadline = Deadline(10)
    n = 0
    while True:
        n += 1
        pty.write(f"{tag} {n}\n".encode())
        try:
            await con.expect(f"{tag} {n}\n", deadline.child(0.3))
            return
        except Exception:
            if deadline.expired():
                raise


def _console(source: ByteSource, tmp_path: Path, lines: list[str], events: list[tuple[str, dict[str, Any]]],
             reattach: float = 5.0) -> ReattachingConsole:
    return ReattachingConsole(source, tmp_path / "console", place="rpi-1", reattach=reattach, on_line=lines.append,
                              on_event=lambda kind, data: events.append((kind, data)))


@pytest.mark.parametrize("kind", ["raw", "tel"])
def test_ser2net_lines_writes_and_0xff_both_ways(tmp_path: Path, pty: Pty, ser2net: Ser2net, kind: str) -> None:
    lines: list[str] = []
    fds = open_fds()

    async def main() -> tuple[bytes, bytes, float]:
        con = _console(NetworkSerialSource(ser2net.urls[kind]), tmp_path, lines, [])
        try:
            await con.connect(Deadline(10))
            await _linked(con, pty)
            pty.write(b"U-Boot 2024.01\r\nbinary \xff\xfe\xff\xff end\r\n")
            await con.expect("end", Deadline(5))
            await con.write(b"raw \xff\xff\x00 bytes\n")
            typed = await asyncio.to_thread(pty.read_until, b"bytes\n")
            t0 = time.monotonic()
            await con.write("boot\n", char_delay_ms=40)
            paced = time.monotonic() - t0
            slow = await asyncio.to_thread(pty.read_until, b"boot\n")
            return typed, slow, paced
        finally:
            await con.close()

    typed, slow, paced = asyncio.run(main())
    assert typed.endswith(b"raw \xff\xff\x00 bytes\n"), typed
    assert slow.endswith(b"boot\n") and paced >= 5 * 0.040
    assert "U-Boot 2024.01" in lines
    raw = (tmp_path / "console" / "console.raw").read_bytes()
    assert b"binary \xff\xfe\xff\xff end\r\n" in raw, "0xFF arrives unchanged (no telnet doubling left in the data)"
    assert "U-Boot 2024.01" in (tmp_path / "console" / "console.log").read_text()
    assert open_fds() == fds


def test_telnet_codec_answers_each_option_once_and_strips_commands() -> None:
    codec = TelnetCodec()
    codec.hello()
    # what ser2net 4.3 sends at connect, a subnegotiation, an escaped 0xFF and data
    data, replies = codec.decode(bytes([255, 251, 3, 255, 253, 3, 255, 251, 1, 255, 254, 1, 255, 253, 0, 255, 251, 0,
                                        255, 253, 44, 255, 250, 44, 107, 0, 255, 240]) + b"a\xff\xffb")
    assert data == b"a\xffb"
    assert replies == bytes([255, 253, 3, 255, 251, 3, 255, 253, 1])  # DO SGA, WILL SGA, DO ECHO; rest already agreed
    assert codec.decode(bytes([255, 251, 3]))[1] == b"", "no answer to a repeated WILL"
    assert codec.decode(bytes([255, 253, 24]))[1] == bytes([255, 252, 24]), "WONT for an option we do not do"
    assert TelnetCodec.encode(b"\xffx\xff") == b"\xff\xffx\xff\xff"


def test_local_serial_reads_and_reattaches_after_reenumeration(tmp_path: Path, pty: Pty) -> None:
    lines: list[str] = []
    events: list[tuple[str, dict[str, Any]]] = []
    fds = open_fds()

    async def main() -> None:
        con = _console(LocalSerialSource(str(pty.link), 115200), tmp_path, lines, events)
        try:
            await con.connect(Deadline(5))
            await _linked(con, pty)
            pty.write(b"before unplug\r\n")
            await con.expect("before unplug", Deadline(5))
            pty.vanish()
            await asyncio.sleep(0.5)
            pty.replug()
            await _linked(con, pty, "again")
            pty.write(b"after replug\r\n")
            await con.expect("after replug", Deadline(5))
            await con.write("x\n")
            assert (await asyncio.to_thread(pty.read_until, b"x\n")).endswith(b"x\n")
        finally:
            await con.close()

    asyncio.run(main())
    kinds = [k for k, _ in events]
    assert kinds == ["console-detached", "console-reattached"], events
    assert events[1][1]["after_s"] >= 0.4
    raw = (tmp_path / "console" / "console.raw").read_bytes()
    assert raw.index(b"before unplug") < raw.index(b"after replug"), "one continuous capture"
    assert "before unplug" in lines and "after replug" in lines
    assert open_fds() == fds


@pytest.mark.parametrize("via", ["local", "ser2net"])
def test_a_console_that_never_comes_back_is_an_infrastructure_error(tmp_path: Path, via: str) -> None:
    pty = Pty(tmp_path / "usb-board")
    server = Ser2net(tmp_path, {"raw": ("raw", str(pty.link))}) if via == "ser2net" else None
    events: list[tuple[str, dict[str, Any]]] = []
    source: ByteSource = NetworkSerialSource(server.urls["raw"]) if server else LocalSerialSource(str(pty.link), 115200)

    async def main() -> float:
        con = _console(source, tmp_path, [], events, reattach=1.0)
        try:
            await con.connect(Deadline(10))
            await _linked(con, pty)
            pty.vanish()
            t0 = time.monotonic()
            with pytest.raises(InfrastructureError, match="the serial console of place rpi-1 vanished"):
                await con.expect("never", Deadline(30))
            with pytest.raises(InfrastructureError, match="vanished"):
                await con.write("x")
            return time.monotonic() - t0
        finally:
            await con.close()

    try:
        took = asyncio.run(main())
    finally:
        pty.close()
        if server:
            server.stop()
    assert 1.0 <= took < 2.5
    assert [k for k, _ in events] == ["console-detached", "console-vanished"]


def test_ser2net_reattach_after_the_device_vanishes(tmp_path: Path, pty: Pty, ser2net: Ser2net) -> None:
    lines: list[str] = []
    events: list[tuple[str, dict[str, Any]]] = []

    async def main() -> None:
        con = _console(NetworkSerialSource(ser2net.urls["tel"]), tmp_path, lines, events)
        try:
            await con.connect(Deadline(10))
            await _linked(con, pty)
            pty.write(b"first boot\r\n")
            await con.expect("first boot", Deadline(5))
            pty.vanish()  # ser2net drops the connection; reconnects get "Device open failure" until it is back
            await asyncio.sleep(1.0)
            pty.replug()
            await _linked(con, pty, "back")
            pty.write(b"second boot\r\n")
            await con.expect("second boot", Deadline(5))
        finally:
            await con.close()

    asyncio.run(main())
    assert [k for k, _ in events] == ["console-detached", "console-reattached"], events
    raw = (tmp_path / "console" / "console.raw").read_bytes()
    assert b"Device open failure" not in raw, "ser2net's refusal text is not taken for board output"
    assert raw.index(b"first boot") < raw.index(b"second boot")


def test_a_powered_off_board_may_keep_its_console_away(tmp_path: Path, pty: Pty) -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def main() -> None:
        con = _console(LocalSerialSource(str(pty.link), 115200), tmp_path, [], events, reattach=0.5)
        try:
            await con.connect(Deadline(5))
            con.expected_alive = False  # the backend powered the board off
            pty.vanish()
            await asyncio.sleep(1.2)  # longer than reattach: still no error while off
            assert not con.closed
            pty.replug()
            con.expected_alive = True
            await _linked(con, pty, "on again")
        finally:
            await con.close()

    asyncio.run(main())
    assert [k for k, _ in events] == ["console-detached", "console-reattached"]
