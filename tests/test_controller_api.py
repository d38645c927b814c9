"""The controller's device API over real HTTPS against a real `eden controller serve` subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from eden.controller.client import AdminClient, AdminError
from eden.controller.setup import init
from eden.controller.testing import PREFIX, DeviceClient, ServeProcess, controller_signing_cert
from eden.wire import codec, pki, signing
from eden.wire.gen import attest_pb2, auth_pb2, config_pb2, info_pb2, metrics_pb2
from eve.measured_boot import expected_pcrs


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("ctl") / "c"
    init(root)
    with ServeProcess(root) as proc:
        yield proc


@pytest.fixture()
def admin(server: ServeProcess) -> AdminClient:
    return server.admin()


_n = 0


def _serial() -> str:
    global _n
    _n += 1
    return f"SER-{_n:04d}"


def _device(server: ServeProcess, serial: str | None = None, **kw: Any) -> DeviceClient:
    return DeviceClient(server.layout.root, server.info["api_port"], serial or _serial(), **kw)


@pytest.fixture()
def onboarded(server: ServeProcess, admin: AdminClient) -> Iterator[tuple[DeviceClient, Any]]:
    dev = _device(server)
    admin.preregister(dev.serial, config={"items": {"timer.config.interval": 10}})
    signer = controller_signing_cert(dev)
    dev.onboard_fully(signer)
    yield dev, signer
    dev.close()


def _config(dev: DeviceClient, hash_: str = "", token: str | None = None) -> tuple[int, bytes]:
    req = config_pb2.ConfigRequest(configHash=hash_, integrity_token=(token or "").encode())
    return dev.post("config", req.SerializeToString())


# ---------------------------------------------------------------------------- onboarding --
def test_register_codes_201_200_409_403(server: ServeProcess, admin: AdminClient) -> None:
    dev = _device(server)
    try:
        assert dev.register() == 403  # not pre-registered
        admin.preregister(dev.serial)
        assert dev.register() == 201
        assert dev.register() == 200  # same device cert again
        other = _device(server, dev.serial)
        try:
            assert other.register() == 409  # a different device cert for the same serial
        finally:
            other.close()
        signer = controller_signing_cert(dev)
        uuid = dev.fetch_uuid(signer)
        view = admin.device(dev.serial)
        assert view["uuid"] == uuid and view["onboarded"] and view["registered"]
        kinds = [e["kind"] for e in admin.events() if e["serial"] == dev.serial]
        assert kinds[:2] == ["preregistered", "registered"] and "register_conflict" in kinds and "onboarded" in kinds
    finally:
        dev.close()


def test_register_signed_by_a_foreign_onboarding_cert_is_401(server: ServeProcess, admin: AdminClient) -> None:
    dev = _device(server)
    admin.preregister(dev.serial)
    dev.onboard = pki.create_onboarding("someone else's onboarding cert")
    try:
        assert dev.register() == 401
    finally:
        dev.close()


def test_certs_is_signed_by_a_signing_cert_chaining_to_the_root(server: ServeProcess) -> None:
    dev = _device(server)
    try:
        cert = controller_signing_cert(dev)  # raises unless signed and chained
        assert cert == pki.load_cert(server.layout.cert("signing"))
        assert dev.raw("GET", f"{PREFIX}/ping")[0] == 200
    finally:
        dev.close()


# --------------------------------------------------------------------------------- config --
def test_config_empty_until_configured_then_200_signed_then_304(server: ServeProcess, admin: AdminClient) -> None:
    dev = _device(server)
    try:
        admin.preregister(dev.serial)  # no config: the empty config with the uuid (APIv2), not a 404
        signer = controller_signing_cert(dev)
        dev.onboard_fully(signer)
        status, body = _config(dev)
        empty = config_pb2.ConfigResponse.FromString(dev.open_reply(body, signer))
        assert status == 200 and empty.config.id.uuid == dev.uuid
        assert not empty.config.configItems and not empty.config.apps and not empty.config.HasField("baseos")
        admin.set_items({"debug.enable.ssh": True}, dev.serial)
        status, body = _config(dev)
        assert status == 200
        resp = config_pb2.ConfigResponse.FromString(dev.open_reply(body, signer))
        assert resp.config.id.uuid == dev.uuid
        assert {i.key: i.value for i in resp.config.configItems}["debug.enable.ssh"] == "true"
        assert _config(dev, resp.configHash)[0] == 304
        admin.reboot(dev.serial)
        status, body = _config(dev, resp.configHash)
        again = config_pb2.ConfigResponse.FromString(dev.open_reply(body, signer))
        assert status == 200 and again.configHash != resp.configHash and again.config.reboot.counter == 1
        served = [e for e in admin.events() if e["serial"] == dev.serial and e["kind"] == "config_served"]
        assert [e["data"]["hash"] for e in served] == [empty.configHash, resp.configHash, again.configHash]
        assert admin.device(dev.serial)["served_hash"] == again.configHash
    finally:
        dev.close()


# ------------------------------------------------------------------------------- security --
def test_unsigned_unknown_and_wrong_signer_are_401(onboarded: tuple[DeviceClient, Any]) -> None:
    dev, _ = onboarded
    path = codec.request_path("config", dev.uuid)[1]
    payload = config_pb2.ConfigRequest().SerializeToString()
    unsigned = auth_pb2.AuthContainer(algo=signing.SHA256_32BYTES, senderCertHash=signing.cert_hash(dev.device.cert))
    unsigned.protectedPayload.payload = payload
    assert dev.raw("POST", path, unsigned.SerializeToString())[0] == 401
    assert dev.raw("POST", path, b"")[0] == 401  # no AuthContainer at all
    stranger = pki.create_device("stranger")
    assert dev.raw("POST", path, dev.seal(payload, stranger))[0] == 401  # unknown cert hash
    forged = auth_pb2.AuthContainer.FromString(dev.seal(payload, stranger))
    forged.senderCertHash = signing.cert_hash(dev.device.cert)  # claims to be the device
    assert dev.raw("POST", path, forged.SerializeToString())[0] == 401  # bad signature
    assert dev.raw("POST", path, dev.seal(payload, dev.onboard))[0] == 403  # onboarding cert, wrong place
    assert dev.raw("POST", path, b"\xff\xff\xff")[0] == 400  # not a protobuf
    register = codec.encode_request("register", {"serial": dev.serial}, device_cert_pem=pki.cert_pem(dev.device.cert))[0]
    assert dev.post("register", register, include_cert=True)[0] == 403  # device cert may not register
    assert dev.post("uuid", b"", signer=dev.onboard)[0] == 403  # onboarding cert may only register


def test_path_uuid_of_another_device_is_403(server: ServeProcess, admin: AdminClient, onboarded: tuple[DeviceClient, Any]) -> None:
    dev, signer = onboarded
    other = _device(server)
    try:
        admin.preregister(other.serial, config={})
        other.onboard_fully(signer)
        assert _config(dev)[0] == 200
        payload = config_pb2.ConfigRequest().SerializeToString()
        status, _ = dev.post("config", payload, uuid=other.uuid)
        assert status == 403
    finally:
        other.close()


def test_signed_malformed_payloads_are_400_or_422(onboarded: tuple[DeviceClient, Any]) -> None:
    dev, _ = onboarded
    for kind in ("config", "attest", "info", "metrics"):
        status, _ = dev.post(kind, b"\x0a\xff\xff\xff\x0f")
        assert status in (400, 422), kind
    bad_attest = attest_pb2.ZAttestReq(reqType=attest_pb2.ATTEST_REQ_TYPE_CERT)
    bad_attest.certs.add(type=1, cert=b"a controller cert type is not one a device posts")
    assert dev.post("attest", bad_attest.SerializeToString())[0] == 422


def test_admin_api_requires_the_token(server: ServeProcess) -> None:
    for token in ("", "wrong"):
        with pytest.raises(AdminError) as exc:
            AdminClient(server.info["admin_url"], token).devices()
        assert exc.value.status == 401


# -------------------------------------------------------------------------------- ingest --
def test_info_metrics_logs_are_stored(server: ServeProcess, admin: AdminClient, onboarded: tuple[DeviceClient, Any]) -> None:
    dev, _ = onboarded
    msg = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_DEVICE, devId=dev.uuid)
    msg.atTimeStamp.seconds = 1000
    msg.dinfo.state = 1
    msg.dinfo.restartCounter = 3
    assert dev.post("info", msg.SerializeToString())[0] == 201
    metrics = metrics_pb2.ZMetricMsg(devID=dev.uuid)
    metrics.atTimeStamp.seconds = 1001
    assert dev.post("metrics", metrics.SerializeToString())[0] == 201
    assert dev.raw("POST", f"{PREFIX}/id/{dev.uuid}/newlogs", dev.seal(b"\x1f\x8bgzip-bytes"))[0] == 201
    view = admin.device(dev.serial)
    assert view["info"]["state"] == "ONLINE" and view["info"]["restart_counter"] == 3
    assert view["metrics"] == {"at": 1001.0} and view["metrics_count"] == 1 and view["logs_count"] == 1
    assert view["last_seen"] > 0
    stats = admin.stats()
    assert stats["info"]["status"]["201"] >= 1 and stats["config"]["p99_ms"] >= stats["config"]["p50_ms"]


# --------------------------------------------------------------------------- attestation --
def _quote(dev: DeviceClient, pcrs: dict[int, bytes] | None) -> tuple[str, dict[str, Any]]:
    status, body = dev.send("attest", {"type": "NONCE"})
    assert status == 201
    signer = pki.load_cert(dev.layout.cert("signing"))
    nonce = codec.decode_response("attest", 201, dev.open_reply(body, signer))["nonce"]
    quote = dev.tpm_quote(nonce, pcrs) if pcrs is not None else {"type": "QUOTE", "nonce": nonce, "tpm": False}
    status, body = dev.send("attest", quote)
    assert status == 201
    return nonce, codec.decode_response("attest", 201, dev.open_reply(body, signer))


def _pcrs(serial: str, rootfs: str, firmware: str = "fw-1") -> dict[int, bytes]:
    return expected_pcrs(firmware=firmware, rootfs=rootfs, grub_cfg="grub.cfg:IMGA", config=f"config:{serial}")


def test_attestation_with_declared_images_token_and_escrow(server: ServeProcess, admin: AdminClient) -> None:
    dev = _device(server)
    try:
        admin.preregister(dev.serial, firmware="fw-1", images={"eve-1": {"version": "1.0", "measurement": "m-1"}}, config={})
        dev.onboard_fully(controller_signing_cert(dev))
        nonce1, bad = _quote(dev, _pcrs(dev.serial, "tampered"))
        assert bad["code"] == "QUOTE_FAILED"
        nonce2, good = _quote(dev, _pcrs(dev.serial, "m-1"))
        assert nonce1 != nonce2 and len(nonce2) >= 32
        assert good["code"] == "SUCCESS" and good["token"], str(admin.device(dev.serial)["attestation"]["last"])
        assert _config(dev)[0] == 403  # token required now
        assert _config(dev, token="not-the-token")[0] == 403
        assert _config(dev, token=good["token"])[0] == 200
        status, body = dev.send("attest", {"type": "STORE_KEYS", "token": good["token"], "key": "vault-key-1"})
        assert status == 201
        view = admin.device(dev.serial)
        assert view["attestation"]["escrowed"] and [r["code"] for r in view["attestation"]["results"]][-3:] == ["QUOTE_FAILED", "SUCCESS", "SUCCESS"]
        admin.revoke_token(dev.serial)
        assert _config(dev, token=good["token"])[0] == 403
        _n3, again = _quote(dev, _pcrs(dev.serial, "m-1"))
        assert again["code"] == "SUCCESS" and again["key"] == "vault-key-1"  # escrowed key returned
    finally:
        dev.close()


def test_device_without_tpm_is_accepted_with_an_empty_quote(server: ServeProcess, admin: AdminClient) -> None:
    dev = _device(server)
    try:
        admin.preregister(dev.serial, config={})
        dev.onboard_fully(controller_signing_cert(dev))
        _nonce, answer = _quote(dev, None)
        assert answer["code"] == "SUCCESS"
        assert _config(dev)[0] == 200  # no token required
    finally:
        dev.close()


def test_template_learning_pending_then_approved(server: ServeProcess, admin: AdminClient) -> None:
    dev = _device(server)
    try:
        admin.preregister(dev.serial, config={})
        dev.onboard_fully(controller_signing_cert(dev))
        pcrs = _pcrs(dev.serial, "unknown-build")
        _n1, first = _quote(dev, pcrs)
        assert first["code"] == "QUOTE_FAILED"
        pending = [t for t in admin.templates("pending") if t["serial"] == dev.serial]
        assert len(pending) == 1
        _n2, second = _quote(dev, pcrs)
        assert second["code"] == "QUOTE_FAILED"
        assert len([t for t in admin.templates("pending") if t["serial"] == dev.serial]) == 1  # stored once
        admin.approve(pending[0]["id"])
        _n3, third = _quote(dev, pcrs)
        assert third["code"] == "SUCCESS"
        kinds = [e["kind"] for e in admin.events() if e["serial"] == dev.serial]
        assert "template_pending" in kinds and "template_approved" in kinds
    finally:
        dev.close()


def test_learn_flag_auto_approves_the_first_template_only(server: ServeProcess, admin: AdminClient) -> None:
    dev = _device(server)
    try:
        admin.preregister(dev.serial, config={}, learn=True)
        dev.onboard_fully(controller_signing_cert(dev))
        _n1, first = _quote(dev, _pcrs(dev.serial, "build-a"))
        assert first["code"] == "SUCCESS"
        _n2, second = _quote(dev, _pcrs(dev.serial, "build-b"))
        assert second["code"] == "QUOTE_FAILED"  # only the first one is learned
        mine = {t["status"] for t in admin.templates() if t["serial"] == dev.serial}
        assert mine == {"approved", "pending"}
    finally:
        dev.close()


def test_event_stream_long_poll_wakes_on_a_new_event(server: ServeProcess, admin: AdminClient) -> None:
    import threading

    last = admin.events()[-1]["id"] if admin.events() else 0
    got: list[list[dict[str, Any]]] = []
    t = threading.Thread(target=lambda: got.append(admin.events(last, wait=20)))
    t.start()
    serial = _serial()
    admin.preregister(serial)
    t.join(timeout=20)
    assert not t.is_alive()
    assert got and got[0] and got[0][0]["kind"] == "preregistered" and got[0][0]["serial"] == serial
    assert admin.events(got[0][-1]["id"], wait=0.2) == []


def test_admin_rejects_bad_input(admin: AdminClient) -> None:
    with pytest.raises(AdminError) as exc:
        admin.preregister("")
    assert exc.value.status == 400
    with pytest.raises(AdminError) as exc:
        admin.device("no-such-serial")
    assert exc.value.status == 404
    serial = _serial()
    admin.preregister(serial)
    with pytest.raises(AdminError) as exc:
        admin.set_items({"x": {"nested": 1}}, serial)
    assert exc.value.status == 400
    with pytest.raises(AdminError) as exc:
        admin.set_app(serial, "app1", {"memory": "lots"})
    assert exc.value.status == 400


def test_controller_wide_learning_and_wait_event(server: ServeProcess, admin: AdminClient) -> None:
    since = admin.events()[-1]["id"]
    admin.set_learn(True)
    try:
        dev = _device(server)
        try:
            admin.preregister(dev.serial, config={})
            dev.onboard_fully(controller_signing_cert(dev))
            _n, answer = _quote(dev, _pcrs(dev.serial, "fresh-build"))
            assert answer["code"] == "SUCCESS"
            event = admin.wait_event("template_learned", dev.serial, since=since, timeout=10)
            assert event["data"]["id"] in [t["id"] for t in admin.templates("approved")]
        finally:
            dev.close()
    finally:
        admin.set_learn(False)
    with pytest.raises(TimeoutError):
        admin.wait_event("template_learned", "nobody", since=since, timeout=0.5)
