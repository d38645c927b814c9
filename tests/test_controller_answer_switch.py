"""The real controller's fault switches (docs/controller.md): the answer switch that makes the
device API answer 503 or hold requests unanswered, and the per-device cert refusal. They are what
``controller_503``, ``controller_hang`` and ``refuse_device_certs`` do on ``--backend emulated``,
so a scenario file means the same there as on the simulator. Real ``eden controller serve``, real TLS."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from eden.agent.tpm import SoftTpm
from eden.controller.client import AdminClient, AdminError
from eden.controller.setup import init
from eden.controller.testing import DeviceClient, ServeProcess, controller_signing_cert
from eden.wire.gen import config_pb2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("switch") / "c"
    init(root)
    with ServeProcess(root, args=("--limit", "hang_hold=3")) as proc:
        yield proc
    assert "Traceback" not in (root / "serve.log").read_text()


_n = 0


def _onboarded(server: ServeProcess, admin: AdminClient) -> DeviceClient:
    global _n
    _n += 1
    dev = DeviceClient(server.layout.root, server.info["api_port"], f"SW-{_n:03d}")
    admin.preregister(dev.serial)
    dev.onboard_fully(controller_signing_cert(dev))
    return dev


def _poll(dev: DeviceClient) -> int:
    return dev.post("config", config_pb2.ConfigRequest(configHash="").SerializeToString())[0]


def test_503_answers_every_controller_request_at_once_and_normal_ends_it(server: ServeProcess) -> None:
    admin = server.admin()
    dev = _onboarded(server, admin)
    try:
        assert _poll(dev) == 200
        assert admin.set_answer_mode("503") == {"mode": "503"}
        assert admin.settings()["answer_mode"] == "503"
        start = time.monotonic()
        assert _poll(dev) == 503
        assert dev.raw("GET", "/api/v2/edgedevice/ping")[0] == 503
        assert time.monotonic() - start < 2.0
        admin.set_answer_mode("normal")
        assert _poll(dev) == 200
        kinds = [e["kind"] for e in admin.events()]
        assert kinds.count("admin_answer_mode") >= 2
    finally:
        admin.set_answer_mode("normal")
        dev.close()


def test_hang_holds_a_request_until_the_switch_changes_then_answers_it(server: ServeProcess) -> None:
    admin = server.admin()
    dev = _onboarded(server, admin)
    try:
        admin.set_answer_mode("hang")
        got: list[tuple[int, float]] = []

        def request() -> None:
            t0 = time.monotonic()
            got.append((_poll(dev), time.monotonic() - t0))

        worker = threading.Thread(target=request)
        worker.start()
        time.sleep(1.0)
        assert not got  # still held
        admin.set_answer_mode("normal")
        worker.join(10)
        assert got and got[0][0] == 200 and 0.9 < got[0][1] < 5.0  # answered once the switch changed
    finally:
        admin.set_answer_mode("normal")
        dev.close()


def test_a_hold_is_bounded_by_hang_hold_then_503(server: ServeProcess) -> None:
    admin = server.admin()
    dev = _onboarded(server, admin)
    try:
        admin.set_answer_mode("hang")
        start = time.monotonic()
        status = _poll(dev)
        held = time.monotonic() - start
        assert status == 503 and 2.5 < held < 8.0  # --limit hang_hold=3
    finally:
        admin.set_answer_mode("normal")
        dev.close()


def test_a_bad_mode_is_400_and_changes_nothing(server: ServeProcess) -> None:
    admin = server.admin()
    with pytest.raises(AdminError) as err:
        admin.set_answer_mode("slow")
    assert err.value.status == 400 and "normal, 503, hang" in str(err.value)
    assert admin.settings()["answer_mode"] == "normal"


def test_refused_certs_get_404_until_accepted_again_and_the_refusal_survives_a_restart(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("refuse") / "c"
    init(root)
    with ServeProcess(root) as proc:
        admin = proc.admin()
        dev = _onboarded(proc, admin)
        body = {"type": "CERT", "certs": SoftTpm().certs(dev.device)}  # ATTEST_REQ_CERT as EVE posts it
        changed = admin.refuse_certs(dev.serial, True)
        assert [d["serial"] for d in changed["changed"]] == [dev.serial]
        assert dev.send("attest", body)[0] == 404
        dev.close()
    with ServeProcess(root) as proc:  # the refusal is the device record's: kept in SQLite
        admin = proc.admin()
        dev = DeviceClient(root, proc.info["api_port"], dev.serial, device=dev.device)
        dev.uuid = admin.device(dev.serial)["uuid"]
        assert dev.send("attest", body)[0] == 404
        admin.refuse_certs(dev.serial, False)
        assert dev.send("attest", body)[0] == 201
        assert admin.device(dev.serial)["certs"]["posted"] == 1
        kinds = [e["kind"] for e in admin.events() if e["serial"] == dev.serial]
        assert kinds.count("admin_refuse_certs") == 2
        with pytest.raises(AdminError) as err:
            admin.request("PUT", f"/v1/devices/{dev.serial}/certs/refusal", {"enable": "yes"})
        assert err.value.status == 400
        dev.close()


def test_the_cli_sets_both_switches(server: ServeProcess, capsys: pytest.CaptureFixture[str]) -> None:
    from eden.cli import main

    admin = server.admin()
    root = str(server.layout.root)
    dev = _onboarded(server, admin)
    try:
        assert main(["controller", "answer", "503", "--dir", root]) == 0
        assert json.loads(capsys.readouterr().out) == {"mode": "503"}
        assert _poll(dev) == 503
        assert main(["controller", "answer", "normal", "--dir", root]) == 0
        assert _poll(dev) == 200
        assert main(["controller", "refuse-certs", dev.serial, "on", "--dir", root]) == 0
        assert admin.device(dev.serial)["certs"]["refused"] is True
        assert dev.send("attest", {"type": "CERT", "certs": SoftTpm().certs(dev.device)})[0] == 404
        assert main(["controller", "refuse-certs", dev.serial, "off", "--dir", root]) == 0
        assert dev.send("attest", {"type": "CERT", "certs": SoftTpm().certs(dev.device)})[0] == 201
        capsys.readouterr()
        with pytest.raises(SystemExit) as bad:
            main(["controller", "answer", "slow", "--dir", root])
        assert bad.value.code == 2
    finally:
        admin.set_answer_mode("normal")
        dev.close()
