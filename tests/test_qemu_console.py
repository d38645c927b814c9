"""The console expect engine and capture, against garbage and a real unix socket; host checks."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eden.runtime.deadline import Deadline
from eden.errors import InfrastructureError
from eden.runtime.console import Console, ConsoleBuffer, ExpectTimeout, compile_pattern, decode_line
from eden.qemu.hostcheck import check_host
from eden.qemu.machine import parse_hostfwd

MARKERS = [b"EDEN-BOOT", b"login: ", b"EDEN-READY", b"\xe2\x9c\x93 done", b"EDEN-READY"]


def _no_marker(data: bytes) -> bytes:
    # noise must not itself contain a marker, or "found in order" would be ambiguous
    for m in MARKERS:
        data = data.replace(m, b"?")
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    noise=st.lists(st.binary(max_size=300), min_size=len(MARKERS) + 1, max_size=len(MARKERS) + 1),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=40),
)
def test_markers_survive_garbage_and_any_chunking(noise: list[bytes], cuts: list[int]) -> None:
    stream = bytearray()
    for i, marker in enumerate(MARKERS):
        stream += _no_marker(noise[i]) + marker
    stream += _no_marker(noise[-1])
    data = bytes(stream)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    lines: list[str] = []
    core = ConsoleBuffer(lines.append)
    found: list[bytes] = []
    pending = list(MARKERS)
    for a, b in zip(points, points[1:]):
        core.feed(data[a:b])
        while pending and (m := core.search(compile_pattern(pending[0]))) is not None:
            found.append(m.data)
            pending.pop(0)
    assert found == MARKERS
    assert core.total == len(data)
    assert all("\n" not in line and "\r" not in line for line in lines)
    assert len(lines) == data.count(b"\n")


def test_regex_groups_and_offsets() -> None:
    core = ConsoleBuffer()
    core.feed(b"\x00\xffjunk EDEN-BOOT uptime=1.65\r\nmore")
    m = core.search(compile_pattern(re.compile(r"uptime=([0-9.]+)")))
    assert m is not None and m.group(1) == "1.65" and m.text == "uptime=1.65"
    assert m.start == 17 and m.end == 28
    assert core.search(compile_pattern("EDEN-BOOT")) is None  # consumed: before the last match


def test_decoded_view_drops_control_bytes() -> None:
    assert decode_line(b"\x1b[0mok\t\xff\r") == "[0mok\t\ufffd"


async def _serve(path: Path, chunks: list[bytes], close: bool) -> tuple[asyncio.AbstractServer, asyncio.Event]:
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for c in chunks:
            writer.write(c)
            await writer.drain()
            await asyncio.sleep(0.01)
        if close:
            writer.close()
        else:
            await done.wait()
            writer.close()

    server = await asyncio.start_unix_server(handle, str(path))
    return server, done


def test_console_captures_raw_bytes_and_lines(tmp_path: Path) -> None:
    chunks = [b"\x00\x01boot", b"ing\r\nEDEN-", b"READY\n\xff\xfe tail"]
    seen: list[str] = []

    async def main() -> None:
        server, done = await _serve(tmp_path / "c.sock", chunks, close=False)
        con = Console(tmp_path / "c.sock", tmp_path / "out", seen.append)
        try:
            await con.connect(Deadline(5))
            m = await con.expect("EDEN-READY", Deadline(5))
            assert m.text == "EDEN-READY"
            with pytest.raises(ExpectTimeout) as info:
                await con.expect("never", Deadline(0.3))
            assert "tail" in info.value.tail
        finally:
            done.set()
            await con.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())
    assert (tmp_path / "out" / "console.raw").read_bytes() == b"".join(chunks)
    assert seen == ["booting", "EDEN-READY"]
    assert (tmp_path / "out" / "console.log").read_text() == "booting\nEDEN-READY\n"


def test_lost_console_is_an_infrastructure_error(tmp_path: Path) -> None:
    async def main() -> None:
        server, _ = await _serve(tmp_path / "c.sock", [b"EDEN-BOOT\n"], close=True)
        con = Console(tmp_path / "c.sock", tmp_path)
        try:
            await con.connect(Deadline(5))
            await con.expect("EDEN-BOOT", Deadline(5))
            with pytest.raises(InfrastructureError, match="console lost"):
                await con.expect("EDEN-READY", Deadline(10))
        finally:
            await con.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_console_connect_gives_up_at_the_deadline(tmp_path: Path) -> None:
    async def main() -> None:
        con = Console(tmp_path / "absent.sock", tmp_path)
        with pytest.raises(InfrastructureError, match="not ready in time"):
            await con.connect(Deadline(0.2))

    asyncio.run(main())


def test_host_check_names_every_missing_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    import eden.qemu.hostcheck as hc

    monkeypatch.setattr(hc, "_which", lambda name: None)
    with pytest.raises(InfrastructureError) as info:
        check_host(ovmf=tmp_path / "OVMF_CODE.fd", kernel=tmp_path / "vmlinuz")
    text = str(info.value)
    for item in ("qemu-system-x86_64 not found", "swtpm not found", "swtpm_setup not found",
                 "OVMF firmware file", "kernel image"):
        assert item in text
    assert len([line for line in text.splitlines() if line.startswith("  - ")]) == 5
    assert InfrastructureError.exit_code == 2


def test_parse_hostfwd() -> None:
    text = (
        "Hub -1 (net0):\r\n"
        "  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n"
        "  TCP[HOST_FORWARD]  13       127.0.0.1 40123       10.0.2.15    22     0     0\r\n"
        "  TCP[HOST_FORWARD]  14       127.0.0.1 40124       10.0.2.15  8080     0     0\r\n"
        "  UDP[236 sec]       15       10.0.2.15 68       10.0.2.2    67     0     0\r\n"
    )
    assert parse_hostfwd(text) == {22: 40123, 8080: 40124}
