"""Fuzz every device endpoint of a running controller: no input may give a 5xx or stop it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eden.controller.setup import init
from eden.controller.testing import PREFIX, DeviceClient, ServeProcess, controller_signing_cert
from eden.wire import codec
from eden.wire.gen import auth_pb2, config_pb2

KINDS = ("register", "uuid", "config", "attest", "info", "metrics", "newlogs", "flowlog", "hardwarehealth")
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, DeviceClient, Any, list[bytes]]]:
    root = tmp_path_factory.mktemp("fuzz") / "c"
    init(root)
    with ServeProcess(root) as server:
        admin = server.admin()
        admin.preregister("FUZZ-1", config={"items": {"timer.config.interval": 5}})
        dev = DeviceClient(root, server.info["api_port"], "FUZZ-1")
        signer = controller_signing_cert(dev)
        dev.onboard_fully(signer)
        valid = [
            dev.seal(config_pb2.ConfigRequest(configHash="x").SerializeToString()),
            dev.seal(codec.encode_request("attest", {"type": "NONCE"})[0]),
            dev.seal(codec.encode_request("register", {"serial": "FUZZ-1", "cert": "x"}, device_cert_pem=b"")[0], dev.onboard, include_cert=True),
        ]
        try:
            yield server, dev, signer, valid
        finally:
            dev.close()
            log = (root / "serve.log").read_text()
            assert "Traceback" not in log, log[-3000:]


def _path(kind: str, uuid: str) -> str:
    if kind in ("register", "uuid"):
        return f"{PREFIX}/{kind}"
    return f"{PREFIX}/id/{uuid}/{kind}"


def _check(dev: DeviceClient, kind: str, body: bytes, uuid: str | None = None) -> None:
    status, _ = dev.raw("POST", _path(kind, uuid or dev.uuid or ""), body)
    assert status < 500, (kind, status, body[:80])


containers = st.builds(
    lambda payload, algo, digest, sig, cert, with_payload: _container(payload, algo, digest, sig, cert, with_payload),
    st.binary(max_size=200), st.integers(0, 5), st.binary(max_size=40), st.binary(max_size=80),
    st.binary(max_size=60), st.booleans(),
)


def _container(payload: bytes, algo: int, digest: bytes, sig: bytes, cert: bytes, with_payload: bool) -> bytes:
    c = auth_pb2.AuthContainer(algo=algo, senderCertHash=digest, signatureHash=sig, senderCert=cert)
    if with_payload:
        c.protectedPayload.payload = payload
    return c.SerializeToString()


@FUZZ
@given(kind=st.sampled_from(KINDS), body=st.binary(max_size=300))
def test_random_bytes(target: Any, kind: str, body: bytes) -> None:
    _check(target[1], kind, body)


@FUZZ
@given(kind=st.sampled_from(KINDS), body=containers)
def test_random_auth_containers(target: Any, kind: str, body: bytes) -> None:
    _check(target[1], kind, body)


@FUZZ
@given(kind=st.sampled_from(KINDS), which=st.integers(0, 2), data=st.data())
def test_mutated_valid_messages(target: Any, kind: str, which: int, data: st.DataObject) -> None:
    raw = bytearray(target[3][which])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    _check(target[1], kind, bytes(raw))


@FUZZ
@given(kind=st.sampled_from(KINDS), payload=st.binary(max_size=300), onboard=st.booleans(), uuid=st.sampled_from([None, "x", "../../x"]))
def test_signed_garbage_payloads(target: Any, kind: str, payload: bytes, onboard: bool, uuid: str | None) -> None:
    dev = target[1]
    body = dev.seal(payload, dev.onboard if onboard else None, include_cert=onboard)
    _check(dev, kind, body, uuid)


def test_fuzzing_reached_past_authentication(target: Any) -> None:
    """The fuzzers are only worth something if some inputs got past the signature check."""
    stats = target[0].admin().stats()
    codes = {code for s in stats.values() for code in s["status"]}
    assert {"400", "401"} <= codes and codes & {"403", "422"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
ADMIN_ROUTES = [
    ("POST", "/v1/devices"), ("PUT", "/v1/items"), ("PUT", "/v1/devices/{s}/items"), ("PUT", "/v1/devices/{s}/baseos"),
    ("POST", "/v1/devices/{s}/baseos/retry"), ("POST", "/v1/devices/{s}/reboot"), ("POST", "/v1/devices/{s}/shutdown"),
    ("PUT", "/v1/devices/{s}/apps/a1"), ("DELETE", "/v1/devices/{s}/apps/a1"), ("PUT", "/v1/devices/{s}/maintenance"),
    ("PUT", "/v1/devices/{s}/learn"), ("POST", "/v1/devices/{s}/attestation/revoke"), ("PUT", "/v1/settings/learn"),
    ("POST", "/v1/templates/{s}/approve"), ("GET", "/v1/events?since={s}&wait=0"), ("GET", "/v1/devices/{s}"),
    ("GET", "/v1/events?since=0&wait={s}"), ("GET", "/v1/templates?status={s}"),
    ("PUT", "/v1/settings/tofu"), ("PUT", "/v1/devices/{s}/tofu"), ("DELETE", "/v1/devices/{s}/tofu"),
    ("POST", "/v1/content"), ("GET", "/v1/content"),
    ("PUT", "/v1/devices/{s}/model"), ("GET", "/v1/devices/FUZZ-1/reports/{s}"),
]


@FUZZ
@given(route=st.sampled_from(ADMIN_ROUTES), serial=st.sampled_from(["FUZZ-1", "nope", "1", "x%20y", "nan", "-1", "1e400"]),
       body=json_values | st.dictionaries(st.sampled_from(["serial", "items", "image", "version", "enable", "learn",
                                                          "config", "images", "firmware", "memory", "cpus",
                                                          "tofu", "name", "path", "pcr13", "manufacturer",
                                                          "product_name"]),
                                          json_values, max_size=5))
def test_admin_api_random_json(target: Any, route: tuple[str, str], serial: str, body: Any) -> None:
    from eden.controller.client import AdminError

    method, path = route
    try:
        target[0].admin().request(method, path.format(s=serial), None if method in ("GET", "DELETE") else body, raw=True)
    except AdminError as exc:
        assert exc.status < 500, (route, body, str(exc))


def test_still_answers_after_fuzzing(target: Any) -> None:
    server, dev, signer, _ = target
    assert dev.raw("GET", f"{PREFIX}/ping")[0] == 200
    status, body = dev.post("config", config_pb2.ConfigRequest().SerializeToString())
    assert status == 200
    config_pb2.ConfigResponse.FromString(dev.open_reply(body, signer))
    stats = server.admin().stats()
    assert sum(s["status"].get("500", 0) for s in stats.values()) == 0
    assert server.proc is not None and server.proc.poll() is None
