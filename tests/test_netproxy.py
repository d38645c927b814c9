"""The per-port relay the emulated backend uses for network and controller faults."""

from __future__ import annotations

import asyncio

import pytest

from eden.backends.netproxy import PortProxy


async def _echo_server() -> asyncio.base_events.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            if data.startswith(b"slow"):
                await asyncio.sleep(0.5)  # a request the controller takes a while to answer
            writer.write(data.upper())
            await writer.drain()
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def _roundtrip(port: int, payload: bytes, timeout: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
    finally:
        writer.close()


def test_relay_link_cut_and_controller_outage() -> None:
    async def scenario() -> None:
        server = await _echo_server()
        upstream = server.sockets[0].getsockname()[:2]
        proxy = PortProxy(upstream)
        port = await proxy.start()
        try:
            assert await _roundtrip(port, b"hello") == b"HELLO"

            # an idle connection is reset when the path dies (EVE never reuses one: each request
            # dials anew), a connection with a request in flight freezes (it waits for its timeout)
            idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
            idle_writer.write(b"a")
            assert await asyncio.wait_for(idle_reader.readexactly(1), 2) == b"A"
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"slow")
            await asyncio.sleep(0.1)
            proxy.set_link(False)
            await asyncio.sleep(0.05)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.readexactly(4), 1.0)  # the answer never comes through
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await asyncio.wait_for(idle_reader.readexactly(1), 1.0)
            idle_writer.close()
            # new connections are accepted but never answered: a timeout, not a refusal
            with pytest.raises(asyncio.TimeoutError):
                await _roundtrip(port, b"x", timeout=0.5)

            proxy.set_link(True)
            # the frozen connection is reset once the link is back
            data = await asyncio.wait_for(reader.read(10), 2)
            assert data == b""
            writer.close()
            assert await _roundtrip(port, b"again") == b"AGAIN"

            # controller down: connecting is refused at once
            await proxy.set_upstream(None)
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", port)
            await proxy.set_upstream(upstream)
            assert proxy.port == port
            assert await _roundtrip(port, b"back") == b"BACK"

            # a pulled link stays a dead path while the controller is down: no refusal, a
            # timeout (the device cannot tell the controller is down); with the link back, refused
            proxy.set_link(False)
            await proxy.set_upstream(None)
            with pytest.raises(asyncio.TimeoutError):
                await _roundtrip(port, b"x", timeout=0.5)
            proxy.set_link(True)
            await asyncio.sleep(0.1)
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", port)
            # the controller down first, then the link pulled: the refusing port becomes a black hole
            proxy.set_link(False)
            await asyncio.sleep(0.1)
            with pytest.raises(asyncio.TimeoutError):
                await _roundtrip(port, b"x", timeout=0.5)
            proxy.set_link(True)
            await proxy.set_upstream(upstream)
            assert await _roundtrip(port, b"up") == b"UP"
        finally:
            await proxy.close()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
