"""eden.wire.codec: node bodies <-> API v2 protobuf, with bodies taken from real simulator runs."""

from __future__ import annotations

import base64
import copy
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eden.backends.sim import SimBackend
from eden.run import load_for_backend
from eden.runner import Runner, run_verdict
from eden.timeline import Timeline
from eden.wire import codec
from eden.wire.codec import CodecError
from eden.wire.gen import attest_pb2, config_pb2, info_pb2, register_pb2
from simulator.controller import ControllerModel
from eve.config_items import GlobalConfig
from eve.measured_boot import expected_pcrs

DEV = "3f2b8c1e-0d4a-4e59-9a6b-1c2d3e4f5a6b"
EPOCH = 1_764_000_000.0  # a wall-clock-sized offset: Timestamps round-trip such times exactly


@dataclass
class Captured:
    scenario: str
    reports: list[dict[str, Any]]
    configs: list[tuple[dict[str, Any], int]]  # (config_for(i), ver)
    images: dict[str, str]  # image name -> version


@pytest.fixture(scope="module")
def captured() -> list[Captured]:
    """Reports and configs as the simulator's controller holds them after real scenario runs."""
    out = []
    for name in ("baseos-update", "attestation-tamper", "app-deploy-resources"):
        loaded = load_for_backend(f"scenarios/{name}.yaml", "sim")
        backend = SimBackend(loaded, seed=loaded.scenario.seed, timeline=Timeline())
        runner = Runner(loaded, backend, seed=loaded.scenario.seed)
        backend.run(runner.main(), duration=loaded.scenario.duration)
        runner.finish()
        assert run_verdict(runner) == "passed", name
        ctrl = backend.ctrl
        reports = [copy.deepcopy(d.info) for d in ctrl.devices if d.info is not None]
        configs = [(copy.deepcopy(ctrl.config_for(i)), d.ver) for i, d in enumerate(ctrl.devices)]
        images = {k: v.version for k, v in loaded.scenario.images.items()}
        out.append(Captured(name, reports, configs, images))
    return out


def _all_reports(captured: list[Captured]) -> list[tuple[dict[str, Any], dict[str, str]]]:
    return [(r, {v: k for k, v in c.images.items()}) for c in captured for r in c.reports]


def _roundtrip_info(report: dict[str, Any], image_of_version: dict[str, str] | None = None) -> dict[str, Any]:
    merged = None
    for payload in codec.encode_request("info", report, device_uuid=DEV):
        merged = codec.merge_info(merged, codec.decode_request("info", payload, image_of_version=image_of_version,
                                                               baseos_version=report["baseos"]["version"]))
    assert merged is not None
    return merged


def _shift(report: dict[str, Any], by: float) -> dict[str, Any]:
    out = copy.deepcopy(report)
    out["at"] += by
    if out["boot_time"] is not None:
        out["boot_time"] += by
    return out


# ------------------------------------------------------------------------------------- paths --
@pytest.mark.parametrize(
    ("kind", "method", "path"),
    [
        ("certs", "GET", "/api/v2/edgedevice/certs"),
        ("ping", "GET", "/api/v2/edgedevice/ping"),
        ("register", "POST", "/api/v2/edgedevice/register"),
        ("uuid", "POST", "/api/v2/edgedevice/uuid"),
        ("config", "POST", f"/api/v2/edgedevice/id/{DEV}/config"),
        ("info", "POST", f"/api/v2/edgedevice/id/{DEV}/info"),
        ("metrics", "POST", f"/api/v2/edgedevice/id/{DEV}/metrics"),
        ("attest", "POST", f"/api/v2/edgedevice/id/{DEV}/attest"),
        ("logs", "POST", f"/api/v2/edgedevice/id/{DEV}/newlogs"),
    ],
)
def test_request_paths(kind: str, method: str, path: str) -> None:
    assert codec.request_path(kind, DEV) == (method, path)


def test_request_path_errors() -> None:
    with pytest.raises(CodecError, match="uuid"):
        codec.request_path("config", None)
    with pytest.raises(CodecError, match="unknown request kind"):
        codec.request_path("flowlog", DEV)


def test_image_and_app_uuids_are_stable_uuid5() -> None:
    u = codec.image_uuid("next")
    assert uuid.UUID(u).version == 5 and u == codec.image_uuid("next") != codec.image_uuid("base")
    assert codec.image_names(["next", "base"]) == {u: "next", codec.image_uuid("base"): "base"}
    assert uuid.UUID(codec.app_uuid("telemetry")).version == 5


# -------------------------------------------------------------------------------------- info --
def test_info_round_trip_reproduces_simulator_reports(captured: list[Captured]) -> None:
    reports = _all_reports(captured)
    assert len(reports) >= 4
    assert any(r["apps"] for r, _ in reports) and any(r["baseos"]["version"] for r, _ in reports)
    assert any(r["vault"] == "locked" and r["maintenance"] == ["VAULT_LOCKED_UP"] for r, _ in reports)
    assert any(r["baseos_update_counter"] is None for r, _ in reports)
    for report, image_of in reports:
        exact = _shift(report, EPOCH)
        exact.pop("dpc_state", None), exact.pop("dpc_ports", None)  # documented lossy (sim only)
        for counter in ("reboot_counter", "baseos_update_counter"):  # plain uint32: None travels as 0
            exact[counter] = exact[counter] or 0
        assert _roundtrip_info(exact, image_of) == exact
        # Simulator-sized times come back within half a nanosecond.
        back = _roundtrip_info(report, image_of)
        assert back["at"] == pytest.approx(report["at"], abs=5e-10)
        assert {k: v for k, v in back.items() if k not in ("at", "boot_time")} == {
            k: v for k, v in exact.items() if k not in ("at", "boot_time")
        }


def test_info_without_image_map_drops_image_names(captured: list[Captured]) -> None:
    report = _shift(captured[0].reports[0], EPOCH)
    back = _roundtrip_info(report)
    assert report["baseos"]["image"] == "next" and back["baseos"]["image"] is None
    assert all(p["image"] is None for p in back["sw"])
    assert back["baseos"]["version"] == report["baseos"]["version"]


def test_info_is_split_into_device_and_app_messages(captured: list[Captured]) -> None:
    report = next(r for c in captured for r in c.reports if r["apps"])
    payloads = codec.encode_request("info", report, device_uuid=DEV)
    assert len(payloads) == 1 + len(report["apps"])
    msgs = [info_pb2.ZInfoMsg.FromString(p) for p in payloads]
    assert msgs[0].WhichOneof("InfoContent") == "dinfo" and msgs[0].ztype == info_pb2.ZI_DEVICE
    assert [m.ainfo.AppName for m in msgs[1:]] == sorted(report["apps"])
    assert all(m.ztype == info_pb2.ZI_APP and m.devId == DEV for m in msgs[1:])
    assert msgs[1].ainfo.AppID == codec.app_uuid(msgs[1].ainfo.AppName)
    # A new device message starts a new report: an app gone from the device disappears.
    first = codec.merge_info(None, codec.decode_request("info", payloads[0]))
    assert first["apps"] == {}
    full = _roundtrip_info(report)
    again = codec.merge_info(full, codec.decode_request("info", payloads[0]))
    assert again["apps"] == {}


def test_info_counters_are_plain_scalars_and_locked_vault_survives() -> None:
    """rebootConfigCounter/shutdown_config_counter/baseos_update_counter are plain uint32 upstream:
    None and 0 read back as 0."""
    report = {
        "at": EPOCH + 12.5, "state": "BOOTING", "boot_reason": "FIRST", "reboot_reason_text": "",
        "boot_time": None, "restart_counter": 0, "sw": [],
        "baseos": {"version": None, "image": None, "status": "NONE", "sub_status": "NONE", "err": "", "progress": 0},
        "attestation": "NONCE_WAIT", "maintenance": ["VAULT_LOCKED_UP"], "vault": "locked", "dpc_index": 1,
        "reboot_counter": None, "shutdown_counter": None, "baseos_update_counter": 0, "apps": {},
        "config_items_errors": [], "config_items_status": {},
    }
    assert _roundtrip_info(report) == {**report, "reboot_counter": 0, "shutdown_counter": 0}
    assert _roundtrip_info({**report, "reboot_counter": 7})["reboot_counter"] == 7
    assert _roundtrip_info({**report, "shutdown_counter": 3})["shutdown_counter"] == 3


def test_app_info_before_device_info_is_kept(captured: list[Captured]) -> None:
    """EVE sends app info ahead of device info (getDeferredPriorityFunctions, P:cmd/zedagent/zedagent.go)."""
    report = next(r for c in captured for r in c.reports if r["apps"])
    app_payload = codec.encode_request("info", report, device_uuid=DEV)[1]
    merged = codec.merge_info(None, codec.decode_request("info", app_payload))
    assert list(merged) == ["apps"] and len(merged["apps"]) == 1
    with pytest.raises(CodecError):
        codec.merge_info(None, {"part": "bogus"})


# ------------------------------------------------------------------------------------ config --
def test_config_round_trip_matches_config_for(captured: list[Captured]) -> None:
    seen_apps = seen_baseos = False
    for c in captured:
        images = codec.image_names(c.images)
        for cfg, ver in c.configs:
            payload = codec.encode_response("config", 200, {"config": cfg, "ver": ver}, device_uuid=DEV)
            back = codec.decode_response("config", 200, payload, images=images)
            assert back == {"config": cfg, "ver": ver}
            errors = GlobalConfig().apply(back["config"]["items"])
            assert errors == []
            seen_apps |= bool(cfg["apps"])
            seen_baseos |= cfg["baseos"] is not None
    assert seen_apps and seen_baseos


def test_config_lossy_fields() -> None:
    cfg = {
        "items": {"timer.config.interval": 30, "network.fallback.any.eth": "enabled", "debug.enable.ssh": "x"},
        "baseos": {"image": "unknown-image", "version": "14.0.0", "activate": False, "retry": 3},
        "reboot": 2,
        "apps": {"odd": {"kind": "container", "cpus": 1, "memory": 1000, "size": 5 * 2**30, "activate": False}},
        "maintenance": True,
        "hash": "abc",
    }
    payload = codec.encode_response("config", 200, {"config": cfg, "ver": 7})
    back = codec.decode_response("config", 200, payload, app_size=123)["config"]
    assert back["baseos"] == {**cfg["baseos"], "image": codec.image_uuid("unknown-image")}
    assert back["apps"]["odd"] == {"kind": "container", "cpus": 1, "memory": 1024, "size": 123, "activate": False}
    assert back["items"] == cfg["items"] and back["maintenance"] is True and back["reboot"] == 2
    assert codec.decode_response("config", 304, b"") == {}
    assert codec.encode_response("config", 304, {"ver": 7}) == b""


# ---------------------------------------------------------------------- request/answer loop --
def _controller() -> ControllerModel:
    ctrl = ControllerModel(workers=1, service_time=0.01, queue_limit=10, global_items={"timer.config.interval": 10}, enforce_attestation=True)
    ctrl.add_device("SER-1", "fw-1", {"base": "rootfs-base"})
    return ctrl


def _exchange(ctrl: ControllerModel, kind: str, body: dict[str, Any], **enc: Any) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Node body -> wire -> controller rules -> wire -> node body; also returns the answer."""
    payloads = codec.encode_request(kind, body, device_uuid=DEV, **enc)
    assert len(payloads) == 1
    decoded = _as_model_body(codec.decode_request(kind, payloads[0]))
    status, answer = ctrl.answer(0, kind, decoded)
    wire = codec.encode_response(kind, status, answer, device_uuid=DEV)
    return status, answer, codec.decode_response(kind, status, wire, images=codec.image_names(["base"]))


def _as_model_body(body: dict[str, Any]) -> dict[str, Any]:
    """The controller-side decode keeps quote and key bytes raw (eden.controller.attest checks the
    TPM quote, tests/test_attest_quote.py); here an unsigned quote's attestData is the nonce."""
    if body.get("type") == "QUOTE":
        pcrs = {str(i): v.hex() for i, _algo, v in body["pcr_values"]}
        return {"type": "QUOTE", "nonce": body["attest"].decode() or None, "pcrs": pcrs, "tpm": bool(pcrs)}
    if body.get("type") == "STORE_KEYS" and isinstance(body.get("key"), bytes):
        return {**body, "key": body["key"].decode()}
    return body


def test_full_exchange_through_controller_rules() -> None:
    ctrl = _controller()
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    status, _, _ = _exchange(ctrl, "register", {"serial": "SER-1", "cert": "device-cert-SER-1"}, device_cert_pem=pem.encode())
    assert status == 201 and ctrl.devices[0].cert == pem
    assert _exchange(ctrl, "register", {"serial": "SER-1", "cert": "x"}, device_cert_pem=pem)[0] == 200
    assert _exchange(ctrl, "register", {"serial": "SER-1", "cert": "x"}, device_cert_pem=b"other")[0] == 409
    status, answer, back = _exchange(ctrl, "uuid", {})
    assert status == 200 and back == answer == {"uuid": ctrl.devices[0].uuid}

    status, answer, back = _exchange(ctrl, "config", {"hash": "", "token": None})
    assert status == 200 and back == answer
    status, _, back = _exchange(ctrl, "config", {"hash": answer["config"]["hash"], "token": None})
    assert status == 304 and back == {}

    status, answer, back = _exchange(ctrl, "attest", {"type": "NONCE"})
    assert back == answer == {"type": "NONCE", "nonce": "nonce-1"}
    good = expected_pcrs(firmware="fw-1", rootfs="rootfs-base", grub_cfg="grub.cfg:IMGA", config="config:SER-1")
    pcrs = {i: v.hex() for i, v in good.items() if i < 16}
    status, answer, back = _exchange(ctrl, "attest", {"type": "QUOTE", "nonce": "nonce-1", "pcrs": pcrs, "tpm": True})
    assert back == answer and answer["code"] == "SUCCESS" and answer["key"] is None
    token = answer["token"]
    status, answer, back = _exchange(ctrl, "attest", {"type": "STORE_KEYS", "token": token, "key": "vault-SER-1"})
    assert back == answer == {"type": "STORE_KEYS", "code": "SUCCESS"} and ctrl.devices[0].escrow == "vault-SER-1"
    _exchange(ctrl, "attest", {"type": "NONCE"})
    status, answer, back = _exchange(ctrl, "attest", {"type": "QUOTE", "nonce": "nonce-2", "pcrs": pcrs, "tpm": True})
    assert back == answer and answer["key"] == "vault-SER-1"
    status, answer, back = _exchange(ctrl, "attest", {"type": "STORE_KEYS", "token": "stale", "key": "k"})
    assert back == answer == {"type": "STORE_KEYS", "code": "ITOKEN_MISMATCH"}

    # Tampered PCR: QUOTE_FAILED (the mismatch list is documented as lossy).
    _exchange(ctrl, "attest", {"type": "NONCE"})
    bad = {**pcrs, 13: "00" * 32}
    status, answer, back = _exchange(ctrl, "attest", {"type": "QUOTE", "nonce": "nonce-3", "pcrs": bad, "tpm": True})
    assert answer["code"] == "QUOTE_FAILED" and answer["mismatch"] == [13]
    assert back == {**answer, "mismatch": []}
    status, answer, back = _exchange(ctrl, "attest", {"type": "QUOTE", "nonce": "wrong", "pcrs": pcrs, "tpm": True})
    assert back == answer == {"type": "QUOTE", "code": "NONCE_MISMATCH"}
    # No TPM: an empty quote that only carries the nonce (spec §5) is accepted.
    _exchange(ctrl, "attest", {"type": "NONCE"})
    status, answer, back = _exchange(ctrl, "attest", {"type": "QUOTE", "nonce": "nonce-4", "pcrs": {}, "tpm": False})
    assert back == answer and answer["code"] == "SUCCESS"

    ctrl.revoke_token([0])
    assert _exchange(ctrl, "config", {"hash": "", "token": "itoken-1"})[0] == 403


def test_requests_decode_to_node_bodies() -> None:
    bodies = {
        "config": {"hash": "abc", "token": "itoken-7"},
        "metrics": {"at": EPOCH + 61.25},
        "uuid": {},
    }
    for kind, body in bodies.items():
        (payload,) = codec.encode_request(kind, body, device_uuid=DEV)
        assert codec.decode_request(kind, payload) == body
    assert codec.encode_request("certs", {}) == [b""] and codec.decode_request("certs", b"") == {}
    assert codec.encode_request("ping", {}) == [b""] and codec.decode_request("ping", b"") == {}
    (reg,) = codec.encode_request("register", {"serial": "S", "cert": "device-cert-S"})
    assert codec.decode_request("register", reg) == {"serial": "S", "cert": "device-cert-S"}


def test_certs_and_uuid_responses() -> None:
    body = {"certs": [{"type": "CONTROLLER_SIGNING", "pem": "PEM-1"}, {"type": "CONTROLLER_INTERMEDIATE", "pem": "PEM-2"}]}
    assert codec.decode_response("certs", 200, codec.encode_response("certs", 200, body)) == body
    assert codec.decode_response("certs", 200, codec.encode_response("certs", 200, {})) == {}
    assert codec.encode_response("uuid", 404, {}) == b"" and codec.decode_response("uuid", 404, b"junk") == {}
    for kind in ("register", "info", "metrics", "ping"):
        assert codec.encode_response(kind, 201, {}) == b"" and codec.decode_response(kind, 201, b"") == {}


# ------------------------------------------------------------------------------- wire bytes --
def test_tag_bytes_on_the_wire() -> None:
    (reg,) = codec.encode_request("register", {"serial": "S", "cert": "C"})
    pem = base64.b64encode(b"C")
    assert reg == b"\x12" + bytes([len(pem)]) + pem + b"\x1a\x01S"  # pemCert=2, serial=3
    (cfg_req,) = codec.encode_request("config", {"hash": "h", "token": "t"})
    assert cfg_req == b"\x0a\x01h\x12\x01t"  # configHash=1, integrity_token=2
    cfg = {"items": {}, "baseos": {"image": "i", "version": "v", "activate": True, "retry": 0}, "reboot": 0,
           "apps": {"a": {"kind": "vm", "cpus": 1, "memory": 2048, "size": 1, "activate": True}}, "maintenance": False, "hash": ""}
    resp = config_pb2.ConfigResponse.FromString(codec.encode_response("config", 200, {"config": cfg}))
    raw = resp.config.SerializeToString()
    assert b"\xd2\x01" in raw  # baseos = 26, length-delimited: varint tag 210
    vm = resp.config.apps[0].fixedresources.SerializeToString()
    assert vm == b"\x18\x02\x28\x01\x78\x01"  # memory=3 (2 KiB), vcpus=5, virtualizationMode=15 (HVM)
    report = {"at": EPOCH, "state": "ONLINE", "boot_reason": "FIRST", "reboot_counter": 0, "baseos_update_counter": None,
              "apps": {"x": {"state": "RUNNING", "err": ""}}}
    dev, app = codec.encode_request("info", report)
    assert b"\x88\x02" not in info_pb2.ZInfoMsg.FromString(dev).dinfo.SerializeToString()  # plain 33 = 0: absent
    assert b"\x2a" in app and app.startswith(b"\x08\x03")  # ztype=1 ZI_APP, ainfo=5
    (quote,) = codec.encode_request("attest", {"type": "QUOTE", "nonce": "n", "pcrs": {0: "11" * 32}, "tpm": True})
    q = attest_pb2.ZAttestReq.FromString(quote)
    assert q.quote.pcr_values[0].SerializeToString() == b"\x10\x02\x1a\x20" + b"\x11" * 32  # hash_algo SHA256, value=3


# ------------------------------------------------------------------------------------ errors --
def test_malformed_payloads_raise_codec_error() -> None:
    bad_enum = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_DEVICE)
    bad_enum.atTimeStamp.seconds = 1
    bad_enum.dinfo.state = 99
    bad_part = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_DEVICE)
    bad_part.atTimeStamp.seconds = 1
    bad_part.dinfo.swList.add(partitionLabel="IMGA", partitionState="sideways")
    cases = [
        ("info", bad_enum.SerializeToString()),
        ("info", bad_part.SerializeToString()),
        ("attest", attest_pb2.ZAttestReq(reqType=9).SerializeToString()),
        ("register", register_pb2.ZRegisterMsg(pemCert=b"!!not base64", serial="S").SerializeToString()),
        ("config", config_pb2.ConfigRequest(integrity_token=b"\xff\xfe").SerializeToString()),
        ("config", b"\xff\xff\xff"),
        ("metrics", b""),
    ]
    for kind, payload in cases:
        with pytest.raises(CodecError):
            codec.decode_request(kind, payload)
    with pytest.raises(CodecError):
        codec.decode_request("flowlog", b"")
    with pytest.raises(CodecError):
        codec.decode_response("attest", 201, attest_pb2.ZAttestResponse(respType=3).SerializeToString())  # no code
    with pytest.raises(CodecError):
        codec.encode_request("info", {"at": 1.0, "state": "SLEEPY", "boot_reason": "FIRST"})
    with pytest.raises(CodecError):
        codec.encode_request("metrics", {"at": float("nan")})
    with pytest.raises(CodecError):
        codec.encode_request("attest", {"type": "QUOTE", "nonce": "n", "pcrs": {0: "zz"}})
    with pytest.raises(CodecError):
        codec.encode_response("config", 200, {"config": {"apps": {"a": {"kind": "wasm", "cpus": 1, "memory": 1}}}})
    with pytest.raises(CodecError):
        codec.encode_response("attest", 201, {"type": "QUOTE", "code": "MAYBE"})


_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _samples() -> list[tuple[str, str, bytes]]:
    """Valid payloads of every kind, both directions: (direction, kind, payload)."""
    report = {"at": EPOCH, "state": "ONLINE", "boot_reason": "UPDATE", "boot_time": EPOCH - 9, "restart_counter": 2,
              "sw": [{"partition": "IMGB", "version": "2", "image": "n", "state": "active", "err": ""},
                     {"partition": "IMGA", "version": "1", "image": "b", "state": "unused", "err": "boom"}],
              "baseos": {"version": "2", "image": "n", "status": "UPDATED", "sub_status": "NONE", "err": ""},
              "attestation": "COMPLETE", "maintenance": [], "vault": "unlocked", "dpc_index": 0,
              "reboot_counter": 1, "baseos_update_counter": 0, "apps": {"a": {"state": "ERROR", "err": "no"}}}
    req = [("info", p) for p in codec.encode_request("info", report)]
    req += [(k, codec.encode_request(k, b)[0]) for k, b in [
        ("register", {"serial": "S", "cert": "C"}), ("config", {"hash": "h", "token": "t"}), ("metrics", {"at": 5.0}),
        ("attest", {"type": "QUOTE", "nonce": "n", "pcrs": {1: "22" * 32}, "tpm": True}),
        ("attest", {"type": "STORE_KEYS", "token": "t", "key": "k"})]]
    cfg = {"items": {"timer.config.interval": 10}, "baseos": {"image": "i", "version": "v", "activate": True, "retry": 1},
           "reboot": 1, "apps": {"a": {"kind": "vm", "cpus": 1, "memory": 2048, "size": 1, "activate": True}},
           "maintenance": False, "hash": "h"}
    resp = [(k, codec.encode_response(k, 200, b)) for k, b in [
        ("config", {"config": cfg, "ver": 3}), ("uuid", {"uuid": "u"}),
        ("certs", {"certs": [{"type": "CONTROLLER_SIGNING", "pem": "P"}]}),
        ("attest", {"type": "QUOTE", "code": "SUCCESS", "token": "t", "key": "k"}),
        ("attest", {"type": "NONCE", "nonce": "n"})]]
    return [("req", k, p) for k, p in req] + [("resp", k, p) for k, p in resp]


SAMPLES = _samples()
KINDS = list(codec.KINDS)


def _decode(direction: str, kind: str, payload: bytes) -> None:
    try:
        if direction == "req":
            codec.decode_request(kind, payload)
        else:
            codec.decode_response(kind, 200, payload)
    except CodecError:
        pass


@_FUZZ
@given(kind=st.sampled_from(KINDS), direction=st.sampled_from(["req", "resp"]), payload=st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_codec_error(kind: str, direction: str, payload: bytes) -> None:
    _decode(direction, kind, payload)


@_FUZZ
@given(sample=st.sampled_from(SAMPLES), data=st.data())
def test_mutated_payloads_only_raise_codec_error(sample: tuple[str, str, bytes], data: st.DataObject) -> None:
    direction, kind, payload = sample
    buf = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, len(buf)))
        if op == "flip" and buf:
            buf[min(pos, len(buf) - 1)] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del buf[pos:pos + data.draw(st.integers(1, 8))]
        else:
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
    _decode(direction, kind, bytes(buf))
    if direction == "req" and kind == "info":
        try:
            codec.merge_info(None, codec.decode_request(kind, bytes(buf)))
        except CodecError:
            pass


def test_samples_decode_cleanly() -> None:
    for direction, kind, payload in SAMPLES:
        if direction == "req":
            assert codec.decode_request(kind, payload)
        else:
            assert codec.decode_response(kind, 200, payload)


def test_attest_cert_post_and_binary_quote_fields() -> None:
    certs = [{"type": "DEVICE_RESTRICTED_SIGNING", "pem": b"AK PEM"}, {"type": "DEVICE_ECDH_EXCHANGE", "pem": "ECDH PEM"}]
    (payload,) = codec.encode_request("attest", {"type": "CERT", "certs": certs})
    msg = attest_pb2.ZAttestReq.FromString(payload)
    assert msg.reqType == attest_pb2.ATTEST_REQ_TYPE_CERT and [c.type for c in msg.certs] == [11, 13]
    assert codec.decode_request("attest", payload) == {"type": "CERT", "certs": [
        {"type": "DEVICE_RESTRICTED_SIGNING", "pem": b"AK PEM"}, {"type": "DEVICE_ECDH_EXCHANGE", "pem": b"ECDH PEM"}]}
    resp = codec.encode_response("attest", 201, {"type": "CERT"})
    assert attest_pb2.ZAttestResponse.FromString(resp).respType == attest_pb2.ATTEST_RESP_TYPE_CERT
    assert codec.decode_response("attest", 201, resp) == {"type": "CERT"}
    with pytest.raises(CodecError):
        codec.encode_request("attest", {"type": "CERT", "certs": [{"type": "CONTROLLER_SIGNING", "pem": "x"}]})
    many = attest_pb2.ZAttestReq(reqType=attest_pb2.ATTEST_REQ_TYPE_CERT)
    for _ in range(codec.MAX_POSTED_CERTS + 1):
        many.certs.add(type=11, cert=b"x")
    with pytest.raises(CodecError):
        codec.decode_request("attest", many.SerializeToString())
    # A TPM quote's bytes and a binary vault key pass through undecoded (the controller checks them).
    (quote,) = codec.encode_request("attest", {"type": "QUOTE", "nonce": "n", "attest": b"\xffTCG\x80\x18", "signature": b"\x30\x00",
                                               "pcrs": {0: "11" * 32}, "tpm": True})
    assert codec.decode_request("attest", quote) == {"type": "QUOTE", "attest": b"\xffTCG\x80\x18", "signature": b"\x30\x00",
                                                     "pcr_values": [(0, attest_pb2.TPM_HASH_ALGO_SHA256, b"\x11" * 32)], "tpm": True}
    (keys,) = codec.encode_request("attest", {"type": "STORE_KEYS", "token": "t", "key": b"\xff\x00"})
    assert codec.decode_request("attest", keys)["key"] == b"\xff\x00"


def test_logs_request_is_a_gzip_of_json_log_entries() -> None:
    """§1: a newlogs upload is one newlogd file, gzip of JSON LogEntry lines, well under 64 KiB."""
    import gzip
    import json

    (payload,) = codec.encode_request("logs", {"at": 1234.5, "files": 3}, device_uuid=DEV)
    assert len(payload) <= 64 * 1024
    lines = gzip.decompress(payload).decode().splitlines()
    entry = json.loads(lines[0])
    assert entry["timestamp"]["seconds"] == 1234
    assert DEV in entry["content"]
    assert codec.decode_response("logs", 201, b"") == {}
