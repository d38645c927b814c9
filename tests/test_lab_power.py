"""Power drivers against the real things: a PDUDaemon process, real shell commands, a manual prompt."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eden.errors import InfrastructureError
from eden.lab.power import CommandPower, ManualPower, PduDaemonPower, PowerDriver
from eden.runtime.deadline import Deadline
from labtools import PduDaemon, free_port, open_fds
from leakcheck import marked_processes


@pytest.fixture
def pdud(tmp_path: Path) -> Iterator[PduDaemon]:
    daemon = PduDaemon(tmp_path)
    try:
        yield daemon
    finally:
        daemon.stop()
    assert not daemon.leftovers()


async def _until(check, deadline: Deadline) -> None:  # type: ignore[no-untyped-def]
    while not check():
        assert not deadline.expired(), "condition not reached in time"
        await asyncio.sleep(0.02)


def test_pdudaemon_switches_the_port_and_cycle_ends_on(pdud: PduDaemon) -> None:
    power: PowerDriver = PduDaemonPower(pdud.url, PduDaemon.PDU, 3, place="rpi-1")
    fds = open_fds()

    async def main() -> float:
        await power.on(Deadline(20))
        await _until(lambda: pdud.state(3) == "on", Deadline(5))
        await power.off(Deadline(20))
        await _until(lambda: pdud.state(3) == "off", Deadline(5))
        t0 = time.monotonic()
        await power.cycle(0.2, Deadline(20))  # rounded up to PDUDaemon's whole second
        took = time.monotonic() - t0
        await _until(lambda: pdud.state(3) == "on", Deadline(5))
        return took

    took = asyncio.run(main())
    assert took >= 1.0, "reboot delay=1 means at least one second off"
    assert pdud.state(4) is None, "another port untouched"
    assert "pdu lab-pdu port 3" in power.describe()
    assert open_fds() == fds


def test_pdudaemon_unknown_pdu_is_an_infrastructure_error(pdud: PduDaemon) -> None:
    power = PduDaemonPower(pdud.url, "no-such-pdu", 1, place="rpi-2")
    with pytest.raises(InfrastructureError) as err:
        asyncio.run(power.on(Deadline(10)))
    assert "place rpi-2" in str(err.value) and "HTTP 500" in str(err.value) and pdud.url in str(err.value)


def test_unreachable_pdudaemon_is_an_infrastructure_error() -> None:
    url = f"http://user:secret@127.0.0.1:{free_port()}"
    power = PduDaemonPower(url, "lab-pdu", 1, place="rpi-3")
    t0 = time.monotonic()
    with pytest.raises(InfrastructureError) as err:
        asyncio.run(power.off(Deadline(5)))
    assert time.monotonic() - t0 < 5
    assert "place rpi-3" in str(err.value) and "127.0.0.1" in str(err.value)
    assert "secret" not in str(err.value) and "secret" not in power.describe()


def test_command_power_runs_on_off_and_cycle_with_the_place(tmp_path: Path) -> None:
    state = tmp_path / "relay"
    power = CommandPower(on=f'echo "on $EDEN_PLACE" >> {state}', off=f'echo "off $EDEN_PLACE" >> {state}',
                         place="nuc-1")

    async def main() -> float:
        await power.on(Deadline(10))
        await power.off(Deadline(10))
        t0 = time.monotonic()
        await power.cycle(0.3, Deadline(10))
        return time.monotonic() - t0

    assert asyncio.run(main()) >= 0.3
    assert state.read_text().splitlines() == ["on nuc-1", "off nuc-1", "off nuc-1", "on nuc-1"]
    own = CommandPower(on="true", off="true", cycle=f'echo "cycle $EDEN_OFF_FOR" > {state}', place="nuc-1")
    asyncio.run(own.cycle(2.5, Deadline(10)))
    assert state.read_text() == "cycle 2.5\n"


def test_command_power_failure_shows_the_last_output(tmp_path: Path) -> None:
    power = CommandPower(on="echo relay board not found >&2; exit 3", off="true", place="nuc-2")
    with pytest.raises(InfrastructureError) as err:
        asyncio.run(power.on(Deadline(10)))
    text = str(err.value)
    assert "place nuc-2" in text and "exit 3" in text and "relay board not found" in text


def test_hanging_command_is_killed_with_its_group(tmp_path: Path) -> None:
    mark = f"hang-{os.getpid()}-{time.monotonic_ns()}"
    power = CommandPower(on="sleep 300 & sleep 300", off="true", timeout=0.5, place="nuc-3",
                         env={"HANG_MARK": mark})
    t0 = time.monotonic()
    with pytest.raises(InfrastructureError) as err:
        asyncio.run(power.on(Deadline(10)))
    assert time.monotonic() - t0 < 4
    assert "did not finish" in str(err.value) and "place nuc-3" in str(err.value)
    assert marked_processes("HANG_MARK", mark) == set(), "the command's processes (also the background one) are gone"


def test_command_timeout_follows_the_deadline() -> None:
    power = CommandPower(on="sleep 30", off="true", timeout=30, place="nuc-4")
    t0 = time.monotonic()
    with pytest.raises(InfrastructureError):
        asyncio.run(power.on(Deadline(0.4)))
    assert time.monotonic() - t0 < 3


def test_manual_power_prompts_and_waits_for_enter() -> None:
    out = io.StringIO()
    power = ManualPower(place="desk-1", stdin=io.StringIO("\n\n\n"), stdout=out)
    asyncio.run(power.on(Deadline(5)))
    asyncio.run(power.cycle(0.05, Deadline(5)))
    assert out.getvalue().splitlines() == [
        "Place desk-1: switch the power ON, then press Enter",
        "Place desk-1: switch the power OFF, then press Enter",
        "Place desk-1: switch the power ON, then press Enter",
    ]
    with pytest.raises(InfrastructureError, match="nobody confirmed"):
        asyncio.run(power.off(Deadline(5)))  # input used up


def test_manual_power_without_a_terminal_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    r, w = os.pipe()
    try:
        with open(r, closefd=False) as not_a_tty:
            monkeypatch.setattr("sys.stdin", not_a_tty)
            t0 = time.monotonic()
            with pytest.raises(InfrastructureError, match="manual power needs a person at a terminal"):
                asyncio.run(ManualPower(place="desk-2", stdout=io.StringIO()).on(Deadline(30)))
            assert time.monotonic() - t0 < 1
    finally:
        os.close(r)
        os.close(w)


def test_manual_power_wait_is_bounded_by_the_deadline() -> None:
    r, w = os.pipe()
    try:
        with open(r, closefd=False) as pipe:  # a real fd nobody writes to
            power = ManualPower(place="desk-3", stdin=pipe, stdout=io.StringIO())
            t0 = time.monotonic()
            with pytest.raises(InfrastructureError, match="in time"):
                asyncio.run(power.on(Deadline(0.3)))
            assert time.monotonic() - t0 < 2
    finally:
        os.close(r)
        os.close(w)
