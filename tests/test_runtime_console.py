"""The console over a TCP byte source, against a real local TCP server (as ser2net serves a serial port)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eden.errors import InfrastructureError
from eden.runtime.console import Console, TcpSource, UnixSocketSource
from eden.runtime.deadline import Deadline


async def _serve_tcp(chunks: list[bytes], typed: asyncio.Queue[bytes]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)
        typed.put_nowait(await reader.readline())
        writer.write(b"echo ok\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_console_reads_and_writes_a_tcp_serial_stream(tmp_path: Path) -> None:
    chunks = [b"U-Boot\r\n\x00", b"EDEN-", b"BOOT\nlogin: "]
    seen: list[str] = []

    async def main() -> bytes:
        typed: asyncio.Queue[bytes] = asyncio.Queue()
        server = await _serve_tcp(chunks, typed)
        port = server.sockets[0].getsockname()[1]
        con = Console(TcpSource("127.0.0.1", port), tmp_path, seen.append)
        try:
            await con.connect(Deadline(5))
            await con.expect("EDEN-BOOT", Deadline(5))
            await con.expect("login: ", Deadline(5))
            await con.write("root\n")
            await con.expect("echo ok", Deadline(5))
            return await asyncio.wait_for(typed.get(), 5)
        finally:
            await con.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(main()) == b"root\n"
    assert seen == ["U-Boot", "EDEN-BOOT", "login: echo ok"]
    assert (tmp_path / "console.raw").read_bytes().startswith(b"".join(chunks))


def test_tcp_console_connect_gives_up_at_the_deadline(tmp_path: Path) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        con = Console(TcpSource("127.0.0.1", port), tmp_path)
        with pytest.raises(InfrastructureError, match=f"console server 127.0.0.1:{port} not ready in time"):
            await con.connect(Deadline(0.2))

    asyncio.run(main())


def test_a_path_is_a_unix_socket_source(tmp_path: Path) -> None:
    con = Console(tmp_path / "c.sock", tmp_path)
    assert isinstance(con.source, UnixSocketSource) and con.source.path == tmp_path / "c.sock"
