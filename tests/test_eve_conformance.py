"""eden's controller as a real EVE device sees it (spec §2, §2.1, §2.2).

Written from the spec, not from eden's device code: a device played here the way EVE's
controllerconn/client/zedagent do, byte for byte, against a real ``eden controller serve``
(real TLS, real protobuf, real SQLite). What it checks:

- TLS 1.2 with EVE's cipher suite, and TLS 1.3;
- ``GET certs``: exactly one signing and at least one ECDH exchange cert, both issued by
  root-certificate.pem, nothing else; hashAlgo/certHash set and distinct;
- every signed answer names its signer by sha256 over the signing cert's PEM bytes exactly as
  served (not the DER), and its r||s signature verifies;
- register 201/200 carry a Content-Type (EVE's client counts 2xx without one as not done);
- uuid answers with the uuid, and manufacturer/product name when the controller knows them;
- config for a device nothing was configured for yet: 200, the uuid, an empty config;
- every ZInfoTypes kind gets 201, early-boot device info (empty partitionState) too, and the
  last report of each kind is kept per device;
- metrics, flowlog, hardwarehealth, newlogs, app newlogs: the statuses EVE accepts;
- a revoked device cert is refused although its signature is valid.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import ssl
import subprocess
import sys
import uuid as uuidlib
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from eden.controller.client import AdminClient
from eden.controller.setup import init
from eden.controller.testing import ServeProcess
from eden.wire import pki
from eden.wire.gen import (attest_pb2, auth_pb2, certs_pb2, config_pb2, info_pb2, metrics_pb2, register_pb2,
                           uuid_pb2)

API = "/api/v2/edgedevice"
PROTO = "application/x-proto-binary"
SHA256_16, SHA256_32 = 1, 2  # evecommon.HashAlgorithm
SIGNING, INTERMEDIATE, ECDH = 1, 2, 3  # ZCertType controller values
EVE_TLS12_CIPHERS = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"  # spec §2.1 transport

# ZInfoTypes -> the InfoContent member EVE fills for it (spec §2 ZInfoMsg oneof).
INFO_CONTENT = {6: 12, 7: 13, 8: 14, 9: 15, 10: 16, 11: 18, 12: 17, 13: 19, 14: 20, 16: 23, 17: 24, 18: 25}


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _field(number: int, data: bytes) -> bytes:
    """One length-delimited field, as an upstream message this repository does not define."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


class EveDevice:
    """The device side as EVE implements it (P:controllerconn, P:cmd/client)."""

    def __init__(self, server: ServeProcess, serial: str, *, device: pki.Issued | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        layout = server.layout
        self.root_pem = layout.root_cert.read_bytes()
        self.root = x509.load_pem_x509_certificate(self.root_pem)
        self.onboard_pem = layout.cert("onboard").read_bytes()  # the CONFIG partition files
        self.onboard = pki.load_pem(layout.cert("onboard"), layout.key("onboard"))
        self.device = device or pki.create_device(f"eve {serial}")
        self.device_pem = pki.cert_pem(self.device.cert)
        self.serial = serial
        ctx = tls or ssl.create_default_context(cafile=str(layout.root_cert))
        self.conn = http.client.HTTPSConnection("127.0.0.1", server.info["api_port"], context=ctx, timeout=30)
        self.server_hash: bytes | None = None  # StoreServerSigningCert: sha256 of the served PEM
        self.server_cert: x509.Certificate | None = None
        self.uuid: str | None = None

    def close(self) -> None:
        self.conn.close()

    # -- transport --------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = {"X-Request-Id": str(uuidlib.uuid4())}
        if method == "POST":
            headers["Content-Type"] = PROTO
        if self.uuid is None:
            headers["X-Serial-Number"] = self.serial
        self.conn.request(method, API + path, body=body, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    def seal(self, payload: bytes, *, register: bool = False) -> bytes:
        """AddAuthentication: algo 2, sha256 of the signer's DER, r||s padded to 32+32."""
        signer = self.onboard if register else self.device
        r, s = decode_dss_signature(signer.key.sign(payload, ec.ECDSA(hashes.SHA256())))
        box = auth_pb2.AuthContainer(
            algo=SHA256_32,
            senderCertHash=hashlib.sha256(signer.cert.public_bytes(serialization.Encoding.DER)).digest(),
            signatureHash=r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        box.protectedPayload.payload = payload
        if register:
            box.senderCert = base64.b64encode(self.onboard_pem)
        return box.SerializeToString()

    def post(self, path: str, payload: bytes, *, register: bool = False) -> tuple[int, dict[str, str], bytes]:
        return self.request("POST", path, self.seal(payload, register=register))

    def verify(self, body: bytes) -> bytes:
        """VerifyAuthContainer: the hash must equal the stored sha256(PEM) (16 or 32 bytes)."""
        box = auth_pb2.AuthContainer.FromString(body)
        assert box.HasField("protectedPayload")
        assert self.server_hash is not None and self.server_cert is not None
        length = {SHA256_16: 16, SHA256_32: 32}[box.algo]
        assert box.senderCertHash == self.server_hash[:length], "cert miss: the hash is not sha256 of the served PEM"
        sig = box.signatureHash
        half = len(sig) // 2
        der = encode_dss_signature(int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big"))
        key = self.server_cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(der, box.protectedPayload.payload, ec.ECDSA(hashes.SHA256()))  # raises when bad
        return box.protectedPayload.payload

    # -- steps -------------------------------------------------------------------------------
    def fetch_certs(self) -> certs_pb2.ZControllerCert:
        status, headers, body = self.request("GET", "/certs")
        assert status == 200 and headers.get("content-type") == PROTO  # zedagent wants exactly these
        msg = certs_pb2.ZControllerCert.FromString(auth_pb2.AuthContainer.FromString(body).protectedPayload.payload)
        types = [c.type for c in msg.certs]
        assert set(types) <= {SIGNING, INTERMEDIATE, ECDH}, types
        assert types.count(SIGNING) == 1 and types.count(ECDH) >= 1, types
        pool = [x509.load_pem_x509_certificate(c.cert) for c in msg.certs if c.type == INTERMEDIATE]
        for c in msg.certs:
            if c.type in (SIGNING, ECDH):
                assert _chains(x509.load_pem_x509_certificate(c.cert), pool, self.root), c.type
        signing_pem = next(c.cert for c in msg.certs if c.type == SIGNING)
        self.server_hash = hashlib.sha256(signing_pem).digest()
        self.server_cert = x509.load_pem_x509_certificate(signing_pem)
        self.verify(body)  # the certs answer is signed the same way
        return msg

    def register(self) -> tuple[int, dict[str, str], bytes]:
        msg = register_pb2.ZRegisterMsg(pemCert=base64.b64encode(self.device_pem), serial=self.serial)
        return self.post("/register", msg.SerializeToString(), register=True)

    def get_uuid(self) -> uuid_pb2.UuidResponse:
        status, headers, body = self.post("/uuid", b"")  # an empty UuidRequest is zero bytes
        assert status in (200, 201) and headers.get("content-type") == PROTO
        answer = uuid_pb2.UuidResponse.FromString(self.verify(body))
        self.uuid = str(uuidlib.UUID(answer.uuid.strip()))
        return answer

    def onboard_now(self) -> None:
        self.fetch_certs()
        assert self.register()[0] in (200, 201)
        self.get_uuid()

    def config(self, config_hash: str = "") -> tuple[int, dict[str, str], bytes]:
        req = config_pb2.ConfigRequest(configHash=config_hash)
        return self.post(f"/id/{self.uuid}/config", req.SerializeToString())

    def info(self, ztype: int, content_field: int | None = None, content: bytes = b"",
             dinfo: info_pb2.ZInfoDevice | None = None) -> int:
        msg = info_pb2.ZInfoMsg(ztype=ztype, devId=self.uuid or "")
        msg.atTimeStamp.GetCurrentTime()
        if dinfo is not None:
            msg.dinfo.CopyFrom(dinfo)
        raw = msg.SerializeToString()
        if content_field is not None:
            raw += _field(content_field, content)
        return self.post(f"/id/{self.uuid}/info", raw)[0]


def _chains(leaf: x509.Certificate, pool: list[x509.Certificate], root: x509.Certificate) -> bool:
    current = leaf
    for _ in range(len(pool) + 1):
        try:
            current.verify_directly_issued_by(root)
            return True
        except Exception:
            pass
        issuer = next((c for c in pool if c.subject == current.issuer), None)
        if issuer is None:
            return False
        current.verify_directly_issued_by(issuer)
        current = issuer
    return False


# ------------------------------------------------------------------------------- fixtures --
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("eve-conf") / "c"
    init(root)
    with ServeProcess(root) as proc:
        yield proc


@pytest.fixture(scope="module")
def admin(server: ServeProcess) -> AdminClient:
    return server.admin()


_n = 0


@pytest.fixture()
def eve(server: ServeProcess, admin: AdminClient) -> Iterator[EveDevice]:
    global _n
    _n += 1
    dev = EveDevice(server, f"EVE-{_n:03d}")
    admin.preregister(dev.serial)
    yield dev
    dev.close()


# ---------------------------------------------------------------------------------- tests --
def test_tls12_with_eves_cipher_suite_and_tls13(server: ServeProcess) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=str(server.layout.root_cert))
        ctx.minimum_version = ctx.maximum_version = version
        if version == ssl.TLSVersion.TLSv1_2:
            ctx.set_ciphers(EVE_TLS12_CIPHERS)
        dev = EveDevice(server, "tls-probe", tls=ctx)
        try:
            status, _h, body = dev.request("GET", "/ping")
            assert status == 200
            assert dev.conn.sock.version() == ("TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3")
        finally:
            dev.close()


def test_certs_carry_signing_and_ecdh_chaining_to_the_root_keyed_by_hash(eve: EveDevice) -> None:
    msg = eve.fetch_certs()
    assert [c.type for c in msg.certs] == [SIGNING, ECDH]
    for c in msg.certs:
        assert c.hashAlgo == SHA256_16 and c.certHash == hashlib.sha256(c.cert).digest()[:16]
    assert len({c.certHash for c in msg.certs}) == len(msg.certs)
    ecdh = x509.load_pem_x509_certificate(msg.certs[1].cert)
    assert ecdh.public_key() != eve.server_cert.public_key()  # a key of its own


def test_signed_answers_name_the_served_pem_not_the_der(eve: EveDevice) -> None:
    eve.fetch_certs()
    assert eve.register()[0] == 201
    status, _h, body = eve.post("/uuid", b"")
    box = auth_pb2.AuthContainer.FromString(body)
    assert status == 200 and box.algo == SHA256_32
    assert box.senderCertHash == eve.server_hash
    assert box.senderCertHash != hashlib.sha256(eve.server_cert.public_bytes(serialization.Encoding.DER)).digest()
    assert len(box.signatureHash) == 64
    eve.verify(body)
    tampered = auth_pb2.AuthContainer.FromString(body)
    tampered.protectedPayload.payload += b"\x00"
    with pytest.raises(Exception):
        eve.verify(tampered.SerializeToString())


def test_register_answers_carry_a_content_type_and_no_body(eve: EveDevice) -> None:
    eve.fetch_certs()
    for expected in (201, 200):  # new, then the repeat EVE sends on every boot
        status, headers, body = eve.register()
        assert status == expected and body == b""
        assert headers.get("content-type", "").split(";")[0] == PROTO


def test_uuid_carries_manufacturer_and_product_name(eve: EveDevice, admin: AdminClient) -> None:
    eve.onboard_now()
    admin.set_model(eve.serial, "Lenovo", "ThinkEdge SE30")
    answer = eve.get_uuid()
    assert (answer.uuid, answer.manufacturer, answer.product_name) == (eve.uuid, "Lenovo", "ThinkEdge SE30")
    assert admin.device(eve.serial)["uuid"] == eve.uuid


def test_config_before_anything_is_configured_is_the_empty_config(eve: EveDevice) -> None:
    eve.onboard_now()
    status, headers, body = eve.config()
    assert status == 200 and headers.get("content-type") == PROTO
    resp = config_pb2.ConfigResponse.FromString(eve.verify(body))
    assert resp.config.id.uuid == eve.uuid and resp.configHash
    assert not resp.config.apps and not resp.config.configItems and not resp.config.HasField("baseos")
    status, _h, body = eve.config(resp.configHash)
    assert status == 304 and body == b""


def test_every_info_kind_gets_201_and_the_last_of_each_is_kept(eve: EveDevice, admin: AdminClient) -> None:
    eve.onboard_now()
    early = info_pb2.ZInfoDevice(state=info_pb2.ZDeviceState.Value("DEVICE_STATE_BOOTING"))
    for _ in range(2):  # early boot: partitions not known yet (spec §2.2)
        early.swList.add(partitionLabel="", partitionState="", status=info_pb2.SW_STATE_INITIAL)
    assert eve.info(info_pb2.ZI_DEVICE, dinfo=early) == 201
    labelled = info_pb2.ZInfoDevice()
    labelled.swList.add(partitionLabel="IMGA", partitionState="", shortVersion="16.12.0", activated=True)
    assert eve.info(info_pb2.ZI_DEVICE, dinfo=labelled) == 201
    app = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_APP, devId=eve.uuid)
    app.atTimeStamp.GetCurrentTime()
    app.ainfo.AppName, app.ainfo.AppID = "nginx", str(uuidlib.uuid4())
    assert eve.post(f"/id/{eve.uuid}/info", app.SerializeToString())[0] == 201
    sent = {}
    for ztype, number in INFO_CONTENT.items():
        content = _field(1, f"kind {ztype}".encode())
        sent[info_pb2.ZInfoTypes.Name(ztype)] = content
        assert eve.info(ztype, number, content) == 201, info_pb2.ZInfoTypes.Name(ztype)
    assert eve.info(info_pb2.ZI_HARDWARE, 18, _field(1, b"newer")) == 201
    view = admin.device(eve.serial)
    reports = view["reports"]
    assert set(sent) | {"ZI_DEVICE", "ZI_APP"} <= set(reports)
    assert reports["ZI_DEVICE"]["count"] == 2 and reports["ZI_HARDWARE"]["count"] == 2
    assert reports["ZI_VOLUME"]["content_fields"] == [13]
    assert view["info"]["sw"] == [{"partition": "IMGA", "version": "16.12.0", "image": None, "state": "", "err": ""}]
    assert view["info"]["apps"] == {"nginx": {"state": "INVALID", "err": ""}}  # ZSwState 0
    last = admin.last_report(eve.serial, "ZI_HARDWARE")
    hw = info_pb2.ZInfoMsg.FromString(base64.b64decode(last["payload_b64"]))
    assert hw.ztype == info_pb2.ZI_HARDWARE and _field(18, _field(1, b"newer")) in base64.b64decode(last["payload_b64"])
    assert eve.info(0) == 422  # ZiNop is no kind
    assert eve.info(99, 30, b"") == 422  # nor is a value ZInfoTypes does not have


def test_app_info_as_eves_queue_sends_it_is_kept_until_the_app_is_deleted(eve: EveDevice, admin: AdminClient) -> None:
    """EVE's deferred queue sends ZiApp items before device info (getDeferredPriorityFunctions,
    P:cmd/zedagent/zedagent.go), sends an app's info only when it changes, lists the apps it runs
    in ZInfoDevice.appInstances = 32 (createAppInstances, P:cmd/zedagent/reportinfo.go), and
    reports a deleted app as ZInfoApp{AppID} alone (PublishAppInfoToZedCloud,
    P:cmd/zedagent/handlemetrics.go). A 4xx here is dropped for good (retriableHTTPStatus,
    P:controllerconn/deferred.go; spec §2.1, §2.2)."""
    eve.onboard_now()
    app_id = str(uuidlib.uuid5(uuidlib.UUID("a4b1c2d3-6e5f-4a7b-8c9d-0e1f2a3b4c5d"), "nginx"))  # eden's app uuid
    app = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_APP, devId=eve.uuid)
    app.atTimeStamp.GetCurrentTime()
    app.ainfo.AppName, app.ainfo.AppID, app.ainfo.state = "nginx", app_id, info_pb2.SW_STATE_RUNNING
    assert eve.post(f"/id/{eve.uuid}/info", app.SerializeToString())[0] == 201  # before any device info
    listed = _field(32, _field(1, app_id.encode()) + _field(2, b"nginx") + _field(3, b"nginx.1"))
    for _ in range(2):  # periodic device info: the app is not re-sent
        msg = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_DEVICE, devId=eve.uuid, dinfo=info_pb2.ZInfoDevice())
        msg.atTimeStamp.GetCurrentTime()
        raw = msg.SerializeToString() + _field(3, listed)  # a second dinfo chunk merges (Go/proto3)
        assert eve.post(f"/id/{eve.uuid}/info", raw)[0] == 201
        assert admin.device(eve.serial)["info"]["apps"] == {"nginx": {"state": "RUNNING", "err": ""}}
    gone = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_APP, devId=eve.uuid)
    gone.atTimeStamp.GetCurrentTime()
    gone.ainfo.AppID = app_id
    assert eve.post(f"/id/{eve.uuid}/info", gone.SerializeToString())[0] == 201
    assert admin.device(eve.serial)["info"]["apps"] == {}


def test_volume_and_content_tree_info_is_kept_per_object_until_eve_says_it_is_gone(
        eve: EveDevice, admin: AdminClient) -> None:
    """zedagent's PublishVolumeToZedCloud / PublishContentInfoToZedCloud: one message per object,
    the uuid alone when it is deleted (spec §2.2)."""
    eve.onboard_now()
    vol = info_pb2.ZInfoVolume(uuid=str(uuidlib.uuid4()), displayName="app_0_m_0", state=info_pb2.SW_STATE_CREATING_VOLUME,
                               progressPercentage=40)
    vol.resources.maxSizeBytes = 1 << 30
    tree = info_pb2.ZInfoContentTree(uuid=str(uuidlib.uuid4()), displayName="nginx", sha256="ab" * 32,
                                     state=info_pb2.SW_STATE_LOADED, progressPercentage=100)
    assert eve.info(info_pb2.ZI_VOLUME, 13, vol.SerializeToString()) == 201
    assert eve.info(info_pb2.ZI_CONTENT_TREE, 14, tree.SerializeToString() + _field(9, b"c" * 64)) == 201  # + a blob sha
    hw = _field(1, _field(1, b"sda")) + _field(2, b"16.12.0-kvm-amd64") + _field(7, b"IMGA")  # disks (deprecated), release
    assert eve.info(info_pb2.ZI_HARDWARE, 18, hw) == 201
    kinds = admin.info(eve.serial)["kinds"]
    assert kinds["ZI_VOLUME"][vol.uuid]["data"] == {"name": "app_0_m_0", "state": "CREATING_VOLUME", "progress": 40,
                                                    "max_size": 1 << 30, "cur_size": 0, "err": ""}
    assert kinds["ZI_CONTENT_TREE"][tree.uuid]["data"]["sha256"] == "ab" * 32
    assert kinds["ZI_HARDWARE"]["hwinfo"]["data"]["release"] == "16.12.0-kvm-amd64"
    assert eve.info(info_pb2.ZI_VOLUME, 13, info_pb2.ZInfoVolume(uuid=vol.uuid).SerializeToString()) == 201
    assert admin.info(eve.serial, "ZI_VOLUME")["kinds"] == {"ZI_VOLUME": {}}


def test_endpoints_apiv2_requires_answer_what_eve_accepts(eve: EveDevice, admin: AdminClient) -> None:
    eve.onboard_now()
    u = eve.uuid
    metric = metrics_pb2.ZMetricMsg(devID=u)
    metric.atTimeStamp.GetCurrentTime()
    assert eve.post(f"/id/{u}/metrics", metric.SerializeToString())[0] == 201
    flow = _field(1, _field(1, b"flow"))  # flowlog.FlowMessage with one record
    for path, body, ok in [("flowlog", b"", {201}), ("flowlog", flow, {201}),
                           ("hardwarehealth", _field(1, b"ecc"), {201}),
                           ("newlogs", gzip.compress(b'{"content":"x"}\n'), {200, 201}),
                           (f"apps/instanceid/{uuidlib.uuid4()}/newlogs", gzip.compress(b"{}\n"), {200, 201})]:
        status, _h, reply = eve.post(f"/id/{u}/{path}", body)
        assert status in ok, (path, status, reply)
    assert eve.post(f"/id/{u}/flowlog", b"\xff\xff")[0] == 422  # not a protobuf message
    reports = admin.device(eve.serial)["reports"]
    assert reports["flowlog"]["count"] == 2 and reports["hardwarehealth"]["count"] == 1
    assert base64.b64decode(admin.last_report(eve.serial, "flowlog")["payload_b64"]) == flow
    nonce = attest_pb2.ZAttestReq(reqType=attest_pb2.ATTEST_REQ_TYPE_NONCE)
    status, _h, body = eve.post(f"/id/{u}/attest", nonce.SerializeToString())
    answer = attest_pb2.ZAttestResponse.FromString(eve.verify(body))
    assert 200 <= status < 300 and answer.respType == attest_pb2.ATTEST_RESP_TYPE_NONCE and answer.nonce.nonce
    status, _h, _b = eve.request("GET", "/ping")
    assert status == 200


def test_a_revoked_device_cert_is_refused_despite_a_valid_signature(eve: EveDevice, admin: AdminClient,
                                                                   server: ServeProcess) -> None:
    admin.set_items({"timer.config.interval": 10}, eve.serial)
    eve.onboard_now()
    assert eve.config()[0] == 200
    cli = subprocess.run([sys.executable, "-m", "eden.cli", "controller", "revoke-cert", "--dir",
                          str(server.layout.root), eve.serial], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert cli.returncode == 0, cli.stderr
    view = json.loads(cli.stdout)
    der = hashlib.sha256(eve.device.cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert not view["registered"] and view["revoked_certs"] == [der]
    status, _h, _b = eve.config()  # same key, same valid signature
    assert status == 401
    assert eve.post("/uuid", b"")[0] == 401
    assert eve.register()[0] == 403  # the revoked cert may not register again (EVE registers every boot)
    assert eve.config()[0] == 401
    fresh = EveDevice(server, eve.serial)  # a re-installed device: a new device cert
    try:
        fresh.fetch_certs()
        assert fresh.register()[0] == 201
        assert fresh.get_uuid().uuid == eve.uuid  # the device keeps its identity
        assert fresh.config()[0] == 200
    finally:
        fresh.close()
    assert eve.config()[0] == 401
    server.stop()  # the revocation survives a restart
    server.start()
    again = EveDevice(server, eve.serial, device=eve.device)
    try:
        again.uuid = eve.uuid
        assert again.config()[0] == 401
    finally:
        again.close()
