"""labgrid places (eden/lab/labgrid.py) against a real labgrid coordinator and exporter on loopback.

The exporter publishes, as a lab's would, a real ser2net port (a pty plays the board's UART) as a
``NetworkSerialPort`` and an outlet of a real PDUDaemon (its ``localcmdline`` PDU writes a state
file) as a ``PDUDaemonPort``; the places and their matches are made with ``labgrid-client create``
and ``add-match``. eden then locks the place in labgrid, reads its resources, and its own drivers
built from them switch the outlet and read the console. A missing labgrid fails, never skips."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from eden.errors import InfrastructureError, InvalidInput
from eden.lab.drivers import console_for, power_for
from eden.lab.labgrid import LabgridBusy, LabgridClient, LabgridLease, LabgridResources, PduDaemonTarget, parse_env
from eden.lab.load import load_lab
from eden.lab.model import place_drivers, place_methods
from eden.runtime.deadline import Deadline
from labtools import LabgridCoordinator, LabgridExporter, PduDaemon, Pty, Ser2net, free_port

EXPORTER = "bench-host"


@dataclass
class Bench:
    coordinator: LabgridCoordinator
    exporter: LabgridExporter
    ser2net: Ser2net
    pdu: PduDaemon
    pty: Pty
    tmp: Path


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    tmp = tmp_path_factory.mktemp("labgrid")
    started: list[LabgridCoordinator | LabgridExporter | Ser2net | PduDaemon] = []
    pty = Pty(tmp / "usb-FTDI_board1-if00-port0")
    try:
        coordinator = LabgridCoordinator(tmp)
        started.append(coordinator)
        ser2net = Ser2net(tmp, {"tel": ("rfc2217", str(pty.link))})
        started.append(ser2net)
        pdu = PduDaemon(tmp)
        started.append(pdu)
        exporter = LabgridExporter(tmp, coordinator, EXPORTER, {
            "board1": {"NetworkSerialPort": {"host": "127.0.0.1", "port": ser2net.ports["tel"], "protocol": "rfc2217"},
                       "PDUDaemonPort": {"host": f"127.0.0.1:{pdu.port}", "pdu": PduDaemon.PDU, "index": 3}},
            "board2": {"NetworkSerialPort": {"host": "127.0.0.1", "port": free_port(), "protocol": "raw"}},
        })
        started.append(exporter)
        for place, group in (("lg-board1", "board1"), ("lg-board2", "board2")):
            coordinator.client("-p", place, "create")
            coordinator.client("-p", place, "add-match", f"{EXPORTER}/{group}/*")
        yield Bench(coordinator, exporter, ser2net, pdu, pty, tmp)
    finally:
        for service in reversed(started):
            service.stop()
        pty.close()
    left = {type(s).__name__: s.leftovers() for s in started if s.leftovers()}
    assert not left, f"processes left behind: {left}"


def _client(bench: Bench, place: str = "lg-board1", user: str = "eden-a", timeout: float = 30) -> LabgridClient:
    return LabgridClient(bench.coordinator.address, place, name=place.removeprefix("lg-"), timeout=timeout, user=user)


def _holder(bench: Bench, place: str) -> str:
    out = bench.coordinator.client("-p", place, "show").stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("acquired:"))


def test_acquire_is_labgrids_lock_and_another_user_is_refused_until_release(bench: Bench) -> None:
    ours, theirs = _client(bench), _client(bench, user="eden-b")
    ours.acquire(Deadline(30))
    try:
        assert ours.acquired and not ours.adopted
        assert _holder(bench, "lg-board1").endswith("/eden-a")  # labgrid's own record: HOST/USER
        with pytest.raises(LabgridBusy) as busy:
            theirs.acquire(Deadline(30))
        assert busy.value.holder is not None and busy.value.holder.endswith("/eden-a")
        assert "board1" in str(busy.value) and "eden-a" in str(busy.value)
        assert isinstance(busy.value, InfrastructureError)
        with pytest.raises(LabgridBusy):  # not theirs to release: nothing is released
            theirs.release(Deadline(30))
        assert _holder(bench, "lg-board1").endswith("/eden-a")
    finally:
        ours.release(Deadline(30))
    assert not ours.acquired and _holder(bench, "lg-board1") == "None"
    ours.release(Deadline(30))  # idempotent
    theirs.acquire(Deadline(30))
    try:
        assert _holder(bench, "lg-board1").endswith("/eden-b")
    finally:
        theirs.release(Deadline(30))


def test_our_own_stale_lock_is_adopted(bench: Bench) -> None:
    bench.coordinator.client("-p", "lg-board1", "acquire", user="eden-a")  # a run of ours that died holding it
    client = _client(bench)
    client.acquire(Deadline(30))
    assert client.acquired and client.adopted
    client.release(Deadline(30))
    assert _holder(bench, "lg-board1") == "None"


def test_resources_become_eden_drivers_that_switch_the_outlet_and_read_the_console(bench: Bench) -> None:
    lab = load_lab(_lab_file(bench.tmp / "drivers", bench.coordinator.address))
    place = lab.place("board1")
    with LabgridLease(_client(bench), Deadline(60)) as res:
        assert res == LabgridResources(f"rfc2217://127.0.0.1:{bench.ser2net.ports['tel']}",
                                       PduDaemonTarget(bench.pdu.url, PduDaemon.PDU, 3))
        power = power_for("board1", place, res)
        lines: list[str] = []
        console = console_for("board1", place, lab, bench.tmp / "console", on_line=lines.append, resources=res)

        async def main() -> None:
            await power.on(Deadline(20))
            await _until(lambda: bench.pdu.state(3) == "on", Deadline(5))
            await power.off(Deadline(20))
            await _until(lambda: bench.pdu.state(3) == "off", Deadline(5))
            await console.connect(Deadline(10))
            try:
                deadline = Deadline(10)
                n = 0
                while True:  # ser2net may open the pty after our connect: write until it is seen
                    n += 1
                    bench.pty.write(f"U-Boot 2024.01 ({n})\r\n".encode())
                    try:
                        await console.expect(f"U-Boot 2024.01 ({n})", deadline.child(0.5))
                        break
                    except Exception:
                        if deadline.expired():
                            raise
            finally:
                await console.close()

        asyncio.run(main())
        assert any(line.startswith("U-Boot 2024.01") for line in lines)
        assert _holder(bench, "lg-board1").endswith("/eden-a")
    assert _holder(bench, "lg-board1") == "None"  # the block's end released it


def test_a_place_without_a_power_port_is_an_error_naming_it_and_the_lease_releases_on_errors(bench: Bench) -> None:
    lab = load_lab(_lab_file(bench.tmp / "nopower", bench.coordinator.address))
    with pytest.raises(InfrastructureError) as err:
        with LabgridLease(_client(bench, "lg-board2"), Deadline(60)) as res:
            assert res.power is None and res.console_url is not None and res.console_url.startswith("tcp://127.0.0.1:")
            power_for("board2", lab.place("board2"), res)
    assert "place board2" in str(err.value) and "exports no PDUDaemonPort" in str(err.value)
    assert _holder(bench, "lg-board2") == "None"


def test_resources_need_the_lock(bench: Bench) -> None:
    with pytest.raises(InfrastructureError, match="not acquired"):
        _client(bench).resources(Deadline(30))


def test_an_unknown_labgrid_place_is_an_infrastructure_error(bench: Bench) -> None:
    with pytest.raises(InfrastructureError, match="matches nothing") as err:
        _client(bench, "no-such-place").acquire(Deadline(30))
    assert not isinstance(err.value, LabgridBusy)


def test_a_missing_coordinator_fails_fast() -> None:
    client = LabgridClient(f"127.0.0.1:{free_port()}", "lg-board1", name="board1", timeout=20)
    t0 = time.monotonic()
    with pytest.raises(InfrastructureError) as err:
        client.acquire(Deadline(20))
    assert time.monotonic() - t0 < 10
    assert "place board1" in str(err.value) and "coordinator" in str(err.value).lower()


def test_a_hanging_client_is_killed_at_the_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "labgrid-client"
    fake.write_text("#!/bin/sh\necho connecting\nsleep 60 &\nsleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setenv("EDEN_LABGRID_CLIENT", str(fake))
    t0 = time.monotonic()
    with pytest.raises(InfrastructureError, match=r"did not finish in 1\.\d s \(killed\)") as err:
        LabgridClient("127.0.0.1:1", "p", timeout=30).acquire(Deadline(1.0))
    assert time.monotonic() - t0 < 5 and "connecting" in str(err.value)


def test_a_missing_client_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDEN_LABGRID_CLIENT", str(tmp_path / "nothing-here"))
    with pytest.raises(InfrastructureError, match="EDEN_LABGRID_CLIENT"):
        LabgridClient("127.0.0.1:1", "p").acquire()
    monkeypatch.delenv("EDEN_LABGRID_CLIENT")
    monkeypatch.setattr("eden.lab.labgrid.ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InfrastructureError, match="run scripts/install-system-deps"):
        LabgridClient("127.0.0.1:1", "p").acquire()


def test_env_output_is_read_as_labgrid_does() -> None:
    text = """targets:
  b1:
    resources:
    - NetworkPowerPort: {host: "http://x/{index}", index: 3, model: simplerest}
    - NetworkSerialPort: {host: "fd00::5", port: 4001, protocol: raw}
    - PDUDaemonPort: {host: pdu-host, index: 7, pdu: rack-pdu}
"""
    res = parse_env(text, "b1")
    assert res.console_url == "tcp://[fd00::5]:4001"
    assert res.power == PduDaemonTarget("http://pdu-host:16421", "rack-pdu", 7)  # labgrid's default port
    assert res.others == ("NetworkPowerPort model simplerest",)
    rfc = parse_env("targets:\n  b1:\n    resources:\n    - NetworkSerialPort: {host: h, port: 1}\n", "b1")
    assert rfc.console_url == "rfc2217://h:1" and rfc.power is None  # labgrid's default protocol
    with pytest.raises(ValueError, match="2 NetworkSerialPorts"):
        parse_env("targets:\n  b1:\n    resources:\n    - NetworkSerialPort: {host: h, port: 1}\n"
                  "    - NetworkSerialPort: {host: h, port: 2}\n", "b1")


LAB = """\
lab: multi
controller:
  listen: 127.0.0.1:0
places:
  board1:
    profile: rpi4-class
    labgrid: {{coordinator: "{coordinator}", place: lg-board1, timeout: 20}}
  board2:
    profile: rpi4-class
    labgrid: {{coordinator: "{coordinator}", place: lg-board2}}
"""


def _lab_file(directory: Path, coordinator: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "lab.yaml"
    path.write_text(LAB.format(coordinator=coordinator))
    return path


def test_lab_file_labgrid_places(tmp_path: Path) -> None:
    lab = load_lab(_lab_file(tmp_path, "127.0.0.1:20408"))
    place = lab.place("board1")
    assert place.labgrid is not None and place.labgrid.timeout == 20 and lab.place("board2").labgrid.timeout == 30
    assert place_methods(place) == {"power_on", "power_off", "power_cycle"}
    assert place_drivers(place) == {"labgrid": "lg-board1@127.0.0.1:20408", "power": "labgrid", "console": "labgrid"}
    client = LabgridClient.for_place("board1", place.labgrid)
    assert (client.coordinator, client.place, client.timeout) == ("127.0.0.1:20408", "lg-board1", 20)
    with pytest.raises(InfrastructureError, match="acquire it first"):
        power_for("board1", place)


def test_lab_file_power_beside_labgrid_is_an_error_at_the_labgrid_key(tmp_path: Path) -> None:
    text = LAB.format(coordinator="127.0.0.1:20408").replace(
        "    labgrid: {coordinator: \"127.0.0.1:20408\", place: lg-board2}",
        "    power: {manual: {}}\n    console: {network: {url: \"tcp://h:1\"}}\n"
        "    labgrid: {coordinator: \"127.0.0.1:20408\", place: lg-board2}")
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as err:
        load_lab(path)
    (issue,) = err.value.issues
    assert (issue.line, issue.col) == (12, 5)  # the 'labgrid' key
    assert "'power' and 'console' cannot be beside 'labgrid'" in issue.message and issue.hint
    assert str(err.value).startswith(f"{path}:12:5: error:")


@pytest.mark.parametrize("coordinator, message", [("nohost", "is not HOST:PORT"), ("h:0", "real port"),
                                                   ("fd00::1:20408", "brackets")])
def test_lab_file_bad_coordinator(tmp_path: Path, coordinator: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as err:
        load_lab(_lab_file(tmp_path, coordinator))
    assert err.value.issues[0].line == 7


async def _until(check: object, deadline: Deadline) -> None:
    assert callable(check)
    while not check():
        assert not deadline.expired(), "condition not reached in time"
        await asyncio.sleep(0.02)
