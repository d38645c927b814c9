"""A device plays EVE's attestation against the real controller (spec §2.1, §5), message by message.

The requests are built from the protobufs directly as EVE's zedagent/tpmmgr build them (not through
eden's codec): ATTEST_REQ_CERT with the AK and ECDH certs, a binary TPMS_ATTEST from a real swtpm
signed by its AK (DER signature), STORE_KEYS with a binary key. The answers must be what EVE's
attest task accepts: 201, signed AuthContainer, matching respType and response codes.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from eden.agent.tpm import Tpm2Tools, certify
from eden.cli import main
from eden.controller.client import AdminClient
from eden.controller.setup import init
from eden.controller.testing import DeviceClient, ServeProcess, controller_signing_cert
from eden.wire import pki
from eden.wire.gen import attest_pb2, config_pb2
from eve.enums import QuoteResponseCode as Q
from eve.enums import StoreKeysResponse as K
from swtpm import swtpm_fixture

swtpm = swtpm_fixture
CERT_TYPE = {"DEVICE_RESTRICTED_SIGNING": 11, "DEVICE_ENDORSEMENT_RSA": 12, "DEVICE_ECDH_EXCHANGE": 13}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("ctl") / "c"
    init(root)
    with ServeProcess(root) as proc:
        yield proc


class Eve:
    """The attest side of one EVE device: its TPM, certs and the raw attest exchange."""

    def __init__(self, server: ServeProcess, serial: str, tpm: Tpm2Tools) -> None:
        self.dev = DeviceClient(server.layout.root, server.info["api_port"], serial)
        self.tpm = tpm
        self.signer: Any = None

    def onboard(self) -> None:
        self.signer = controller_signing_cert(self.dev)
        self.dev.onboard_fully(self.signer)

    def attest(self, req: attest_pb2.ZAttestReq) -> tuple[int, attest_pb2.ZAttestResponse]:
        status, body = self.dev.post("attest", req.SerializeToString())
        if status != 201:
            return status, attest_pb2.ZAttestResponse()
        return status, attest_pb2.ZAttestResponse.FromString(self.dev.open_reply(body, self.signer))

    def post_certs(self) -> tuple[int, attest_pb2.ZAttestResponse]:
        req = attest_pb2.ZAttestReq(reqType=attest_pb2.ATTEST_REQ_TYPE_CERT)
        for c in self.tpm.certs(self.dev.device):
            req.certs.add(type=CERT_TYPE[c["type"]], cert=c["pem"])
        return self.attest(req)

    def nonce(self) -> bytes:
        status, resp = self.attest(attest_pb2.ZAttestReq(reqType=attest_pb2.ATTEST_REQ_TYPE_NONCE))
        assert status == 201 and resp.respType == attest_pb2.ATTEST_RESP_TYPE_NONCE
        assert 12 <= len(resp.nonce.nonce) <= 32  # what EVE's getQuote accepts
        return resp.nonce.nonce

    def quote_req(self, nonce: bytes) -> attest_pb2.ZAttestReq:
        q = self.tpm.quote(nonce)
        req = attest_pb2.ZAttestReq(reqType=attest_pb2.ATTEST_REQ_TYPE_QUOTE)
        req.quote.attestData = q["attest"]
        req.quote.signature = q["signature"]
        for index, value in sorted((int(k), v) for k, v in q["pcrs"].items()):
            req.quote.pcr_values.add(index=index, hash_algo=attest_pb2.TPM_HASH_ALGO_SHA256, value=bytes.fromhex(value))
        return req

    def quote(self, req: attest_pb2.ZAttestReq | None = None) -> attest_pb2.ZAttestQuoteResp:
        status, resp = self.attest(req or self.quote_req(self.nonce()))
        assert status == 201 and resp.respType == attest_pb2.ATTEST_RESP_TYPE_QUOTE_RESP
        return resp.quoteResp

    def store_keys(self, token: bytes, key: bytes) -> int:
        req = attest_pb2.ZAttestReq(reqType=attest_pb2.ATTEST_REQ_TYPE_STORE_KEYS)
        req.storage_keys.integrity_token = token
        req.storage_keys.keys.add(key_type=attest_pb2.ATTEST_VOLUME_KEY_TYPE_VSK, key=key)
        status, resp = self.attest(req)
        assert status == 201 and resp.respType == attest_pb2.ATTEST_RESP_TYPE_STORE_KEYS
        return resp.storage_keys_resp.response

    def config_status(self, token: bytes) -> int:
        return self.dev.post("config", config_pb2.ConfigRequest(integrity_token=token).SerializeToString())[0]


def test_eve_cert_post_binary_quote_and_escrow(server: ServeProcess, swtpm: Tpm2Tools,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    admin: AdminClient = server.admin()
    eve = Eve(server, "EVE-CONF-1", swtpm)
    try:
        admin.preregister(eve.dev.serial, config={}, learn=True)
        eve.onboard()
        # Before any cert post: the quote has no key to be checked with.
        assert eve.quote().response == Q.NO_CERT_FOUND
        status, resp = eve.post_certs()
        assert status == 201 and resp.respType == attest_pb2.ATTEST_RESP_TYPE_CERT
        view = admin.device(eve.dev.serial)
        assert view["certs"]["types"] == ["DEVICE_ECDH_EXCHANGE", "DEVICE_ENDORSEMENT_RSA", "DEVICE_RESTRICTED_SIGNING"] and view["certs"]["posted"] == 1

        # A nonce is good once: the first quote passes (its PCRs are learnt as the template), its replay does not.
        req = eve.quote_req(eve.nonce())
        # tpmmgr reads and sends SHA-256 PCR 0-23 though it quotes 0-15 (P:cmd/tpmmgr/tpmmgr.go
        # maxPCRIndex; spec §5): all 24 travel, and the controller accepts them
        assert [p.index for p in req.quote.pcr_values] == list(range(24))
        first = eve.quote(req)
        assert first.response == Q.SUCCESS and first.integrity_token and not first.keys
        assert eve.quote(req).response == Q.NONCE_MISMATCH
        assert eve.config_status(first.integrity_token) == 200

        key = os.urandom(48) + b"\xff\x00\xfe"  # an encrypted vault key: binary, not UTF-8
        assert eve.store_keys(b"not-the-token", key) == K.ITOKEN_MISMATCH
        assert eve.store_keys(first.integrity_token, key) == K.SUCCESS
        assert admin.device(eve.dev.serial)["attestation"]["escrowed"]

        # After a good quote the escrowed key comes back byte for byte.
        again = eve.quote()
        assert again.response == Q.SUCCESS
        assert [(k.key_type, k.key) for k in again.keys] == [(attest_pb2.ATTEST_VOLUME_KEY_TYPE_VSK, key)]

        # A changed PCR (as a tampered rootfs would): QUOTE_FAILED, no key, and the admin view says which PCR.
        subprocess.run(["tpm2_pcrextend", "13:sha256=" + "cd" * 32], check=True, env=swtpm._env, capture_output=True, timeout=30)
        failed = eve.quote()
        assert failed.response == Q.QUOTE_FAILED and not failed.keys and not failed.integrity_token
        last = admin.device(eve.dev.serial)["attestation"]["last"]
        assert last["code"] == "QUOTE_FAILED" and last["field"] == "pcr_values" and last["mismatch"] == [13]
        assert "PCR 13" in last["reason"]
        # The CLI shows the same per device: certs posted, the result with its reason, the escrow.
        capsys.readouterr()
        assert main(["controller", "device", "--dir", str(server.layout.root), eve.dev.serial]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["certs"]["types"] == view["certs"]["types"]
        assert shown["attestation"]["last"]["reason"] == last["reason"] and shown["attestation"]["escrowed"]

        # A quote signed right but with one reported PCR value changed: the PCR digest check.
        req = eve.quote_req(eve.nonce())
        req.quote.pcr_values[5].value = b"\x55" * 32  # swtpm PCR 5 is all zero
        assert eve.quote(req).response == Q.QUOTE_FAILED
        last = admin.device(eve.dev.serial)["attestation"]["last"]
        assert last["field"] == "pcrDigest", last

        # Once the device has a TPM, an unsigned (no-TPM style) quote is refused, never a pass.
        unsigned = attest_pb2.ZAttestReq(reqType=attest_pb2.ATTEST_REQ_TYPE_QUOTE)
        unsigned.quote.attestData = eve.nonce()
        resp = eve.quote(unsigned)
        assert resp.response == Q.QUOTE_FAILED and not resp.keys
    finally:
        eve.dev.close()


def _certified_eve(server: ServeProcess, admin: AdminClient, serial: str, swtpm: Tpm2Tools) -> Eve:
    """An onboarded device, pre-registered with ``learn``, whose cert post was answered 201."""
    eve = Eve(server, serial, swtpm)
    try:
        admin.preregister(eve.dev.serial, config={}, learn=True)
        eve.onboard()
        assert eve.post_certs()[0] == 201
    except BaseException:
        eve.dev.close()
        raise
    return eve


def _mutations() -> dict[str, Any]:
    def trunc(r: attest_pb2.ZAttestReq) -> None:
        r.quote.attestData = r.quote.attestData[:-3]

    def trailing(r: attest_pb2.ZAttestReq) -> None:
        r.quote.attestData += b"\x00"

    def garbage(r: attest_pb2.ZAttestReq) -> None:
        r.quote.attestData = os.urandom(len(r.quote.attestData))

    def huge(r: attest_pb2.ZAttestReq) -> None:
        r.quote.attestData = b"\xff" * 4096  # past MAX_ATTEST, well under any body limit

    def no_sig(r: attest_pb2.ZAttestReq) -> None:
        r.quote.signature = b""

    def raw_sig(r: attest_pb2.ZAttestReq) -> None:
        r.quote.signature = os.urandom(64)  # r||s instead of DER

    def sha1(r: attest_pb2.ZAttestReq) -> None:
        r.quote.pcr_values[0].hash_algo = attest_pb2.TPM_HASH_ALGO_SHA1

    def repeated(r: attest_pb2.ZAttestReq) -> None:
        r.quote.pcr_values.add().CopyFrom(r.quote.pcr_values[3])

    def extra_pcr(r: attest_pb2.ZAttestReq) -> None:
        r.quote.pcr_values.add(index=24, hash_algo=attest_pb2.TPM_HASH_ALGO_SHA256, value=b"\x00" * 32)

    def missing(r: attest_pb2.ZAttestReq) -> None:
        del r.quote.pcr_values[7]

    return {f.__name__: f for f in (trunc, trailing, garbage, huge, no_sig, raw_sig, sha1, repeated, extra_pcr, missing)}


def test_every_malformed_quote_is_201_quote_failed(server: ServeProcess, swtpm: Tpm2Tools) -> None:
    """Hostile quotes over HTTPS: the documented answer (201, QUOTE_FAILED, no token), never a pass,
    never a 4xx/5xx that would only make EVE re-send; a good quote still passes afterwards."""
    admin: AdminClient = server.admin()
    eve = _certified_eve(server, admin, "EVE-CONF-4", swtpm)
    try:
        fields = {}
        for name, mutate in _mutations().items():
            req = eve.quote_req(eve.nonce())
            mutate(req)
            resp = eve.quote(req)
            assert resp.response == Q.QUOTE_FAILED and not resp.integrity_token and not resp.keys, name
            fields[name] = admin.device(eve.dev.serial)["attestation"]["last"]["field"]
        assert fields["no_sig"] == fields["raw_sig"] == fields["garbage"] == fields["trunc"] == "signature"
        assert fields["sha1"] == fields["repeated"] == fields["extra_pcr"] == fields["missing"] == "pcr_values"
        assert eve.quote().response == Q.SUCCESS
    finally:
        eve.dev.close()


def test_eve_without_tpm_sends_an_empty_quote(server: ServeProcess, swtpm: Tpm2Tools) -> None:
    """tpmmgr's getQuote returns nothing without a TPM: attestData, signature and PCRs empty."""
    admin: AdminClient = server.admin()
    eve = Eve(server, "EVE-CONF-3", swtpm)
    try:
        admin.preregister(eve.dev.serial, config={})
        eve.onboard()
        empty = attest_pb2.ZAttestReq(reqType=attest_pb2.ATTEST_REQ_TYPE_QUOTE)
        empty.quote.SetInParent()
        assert eve.quote(empty).response == Q.NONCE_MISMATCH  # no nonce handed out yet
        eve.nonce()
        ok = eve.quote(empty)
        assert ok.response == Q.SUCCESS and ok.integrity_token and not ok.keys
        assert eve.config_status(b"") == 200  # no token required without a TPM
        assert eve.quote(empty).response == Q.NONCE_MISMATCH  # the nonce was used
        last = admin.device(eve.dev.serial)["attestation"]["last"]
        assert last["code"] == "NONCE_MISMATCH" and not last["tpm"]
    finally:
        eve.dev.close()


def test_cert_post_answers_cert_and_replaces_the_stored_certs(server: ServeProcess, swtpm: Tpm2Tools) -> None:
    admin: AdminClient = server.admin()
    eve = Eve(server, "EVE-CONF-2", swtpm)
    try:
        admin.preregister(eve.dev.serial, config={})
        eve.onboard()
        for n in (1, 2):
            status, resp = eve.post_certs()
            assert status == 201 and resp.respType == attest_pb2.ATTEST_RESP_TYPE_CERT
            certs = admin.device(eve.dev.serial)["certs"]
            assert certs["posted"] == n and certs["pem"]["DEVICE_RESTRICTED_SIGNING"].startswith("-----BEGIN CERTIFICATE-----")
        # A controller cert type in a device post is a malformed body.
        bad = attest_pb2.ZAttestReq(reqType=attest_pb2.ATTEST_REQ_TYPE_CERT)
        bad.certs.add(type=1, cert=b"x")
        assert eve.attest(bad)[0] == 422
        assert admin.device(eve.dev.serial)["certs"]["posted"] == 2
    finally:
        eve.dev.close()


def test_pcr_16_to_23_are_accepted_in_form_but_not_trusted(server: ServeProcess, swtpm: Tpm2Tools) -> None:
    """PCR 16-23 are outside the signed digest: any values of the right form pass the quote (they
    cannot be checked), and a bad form does not (SHA-1 here; a repeated index and index 24 are in
    the malformed-quote table)."""
    admin: AdminClient = server.admin()
    eve = _certified_eve(server, admin, "EVE-CONF-6", swtpm)
    try:
        assert eve.quote().response == Q.SUCCESS  # learns PCR 0-15
        req = eve.quote_req(eve.nonce())
        for p in req.quote.pcr_values:
            if p.index >= 16:
                p.value = bytes([p.index]) * 32  # not what the TPM holds
        assert eve.quote(req).response == Q.SUCCESS
        req = eve.quote_req(eve.nonce())
        del req.quote.pcr_values[16:]  # an agent that sends 0-15 only
        assert eve.quote(req).response == Q.SUCCESS
        req = eve.quote_req(eve.nonce())
        req.quote.pcr_values[20].hash_algo = attest_pb2.TPM_HASH_ALGO_SHA1
        assert eve.quote(req).response == Q.QUOTE_FAILED
        assert admin.device(eve.dev.serial)["attestation"]["last"]["field"] == "pcr_values"
    finally:
        eve.dev.close()


def test_eve_without_tpm_posts_soft_certs_and_its_empty_quote_passes(server: ServeProcess, swtpm: Tpm2Tools) -> None:
    """A TPM-less EVE runs ``tpmmgr createSoftCerts`` (P:scripts/device-steps.sh): it posts a
    software attestation key cert and the ECDH cert, no EK cert (P:cmd/tpmmgr/tpmmgr.go
    ``createQuoteCertSoft``, ``createEkCert`` makes none without a TPM), and its quote stays
    empty (``getQuote`` returns nothing without a TPM). An AK cert alone does not show a TPM:
    the empty quote passes (spec §5); only an EK cert or an escrowed key do."""
    admin: AdminClient = server.admin()
    eve = Eve(server, "EVE-CONF-5", swtpm)
    try:
        admin.preregister(eve.dev.serial, config={})
        eve.onboard()
        device = eve.dev.device
        req = attest_pb2.ZAttestReq(reqType=attest_pb2.ATTEST_REQ_TYPE_CERT)
        req.certs.add(type=CERT_TYPE["DEVICE_ECDH_EXCHANGE"],
                      cert=certify(pki.new_key().public_key(), device, "Device ECDH certificate"))
        req.certs.add(type=CERT_TYPE["DEVICE_RESTRICTED_SIGNING"],
                      cert=certify(pki.new_key().public_key(), device, "Device Attestation certificate"))
        status, resp = eve.attest(req)
        assert status == 201 and resp.respType == attest_pb2.ATTEST_RESP_TYPE_CERT
        eve.nonce()
        empty = attest_pb2.ZAttestReq(reqType=attest_pb2.ATTEST_REQ_TYPE_QUOTE)
        empty.quote.versions.add(version_type=attest_pb2.ATTEST_VERSION_TYPE_EVE, version="0.0.0-test")
        ok = eve.quote(empty)
        assert ok.response == Q.SUCCESS and ok.integrity_token and not ok.keys
        assert eve.config_status(ok.integrity_token) == 200
    finally:
        eve.dev.close()
