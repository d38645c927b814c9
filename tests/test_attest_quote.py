"""TPM quote structures and the controller's quote checks (spec §5, eden.controller.quote).

A real swtpm quotes through tpm2-tools (the agent's Tpm2Tools, as inside the QEMU guest); the soft
TPM must produce the same structures; every field and every signature bit is tampered with and
must fail with the documented answer, never pass.
"""

from __future__ import annotations

import random
import struct
import subprocess
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from eden.agent.tpm import AK_HANDLE, SoftTpm, Tpm2Tools, certify
from eden.controller import quote
from eden.wire import pki
from eden.wire.gen.attest_pb2 import TPM_HASH_ALGO_SHA1, TPM_HASH_ALGO_SHA256
from eden.wire.tpms import TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE, TpmsError, build_quote, parse_quote
from eve.measured_boot import QUOTE_PCRS
from swtpm import swtpm_fixture

NONCE = b"0123456789abcdef0123456789abcdef"  # 32 bytes, EVE's upper limit


def _values(pcrs: dict[str, str]) -> list[tuple[int, int, bytes]]:
    return [(int(i), TPM_HASH_ALGO_SHA256, bytes.fromhex(v)) for i, v in pcrs.items()]


def _verify(q: dict[str, Any], device: pki.Issued, ak_pem: bytes, *, nonce: bytes | None = NONCE,
            values: list[tuple[int, int, bytes]] | None = None) -> quote.Verified:
    return quote.verify(q["attest"], q["signature"], _values(q["pcrs"]) if values is None else values,
                        nonce=nonce, ak_pem=ak_pem, device_cert=device.cert)


def _rejected(q: dict[str, Any], device: pki.Issued, ak_pem: bytes, **kw: Any) -> quote.QuoteRejected:
    with pytest.raises(quote.QuoteRejected) as exc:
        _verify(q, device, ak_pem, **kw)
    return exc.value


# ---------------------------------------------------------------------------------- real swtpm --
swtpm = swtpm_fixture


def test_real_swtpm_quote_verifies_and_parses(swtpm: Tpm2Tools) -> None:
    device = pki.create_device("device SER-Q")
    certs = {c["type"]: c["pem"] for c in swtpm.certs(device)}
    assert set(certs) == {"DEVICE_RESTRICTED_SIGNING", "DEVICE_ECDH_EXCHANGE", "DEVICE_ENDORSEMENT_RSA"}
    ek = x509.load_pem_x509_certificate(certs["DEVICE_ENDORSEMENT_RSA"])
    assert isinstance(ek.public_key(), rsa.RSAPublicKey) and pki.is_issued_by(ek, device.cert)
    q = swtpm.quote(NONCE)
    checked = _verify(q, device, certs["DEVICE_RESTRICTED_SIGNING"])
    info = checked.info
    assert info.magic == TPM_GENERATED_VALUE and info.type == TPM_ST_ATTEST_QUOTE
    assert info.extra_data == NONCE and info.selection == ((0x000B, tuple(QUOTE_PCRS)),)
    assert info.qualified_signer[:2] == b"\x00\x0b" and len(info.qualified_signer) == 34
    assert checked.pcrs == swtpm.read() and len(q["attest"]) == len(build_quote(NONCE, checked.pcrs, QUOTE_PCRS, signer_name=info.qualified_signer))

    # EVE's quote-key template: no dictionary-attack protection (a board's power cuts must not lock it out)
    public = subprocess.run(["tpm2_readpublic", "-c", AK_HANDLE], check=True, env=swtpm._env, capture_output=True,
                            text=True, timeout=30).stdout
    assert "noda" in public and "restricted" in public and "sign" in public, public

    # The AK persists at its handle: a second cert certifies the same key; a PCR extend is seen.
    again = {c["type"]: c["pem"] for c in swtpm.certs(device)}
    assert x509.load_pem_x509_certificate(again["DEVICE_ENDORSEMENT_RSA"]).public_key() == ek.public_key()
    old = swtpm.quote(NONCE)
    subprocess.run(["tpm2_pcrextend", "13:sha256=" + "ab" * 32], check=True, env=swtpm._env, capture_output=True, timeout=30)
    new = swtpm.quote(NONCE)
    assert new["pcrs"]["13"] != old["pcrs"]["13"]
    _verify(new, device, again["DEVICE_RESTRICTED_SIGNING"])
    stale = _rejected(new, device, certs["DEVICE_RESTRICTED_SIGNING"], values=_values(old["pcrs"]))
    assert (stale.code, stale.field) == ("QUOTE_FAILED", "pcrDigest")
    wrong = _rejected(new, device, certs["DEVICE_RESTRICTED_SIGNING"], nonce=NONCE[::-1])
    assert (wrong.code, wrong.field) == ("NONCE_MISMATCH", "extraData")
    other = SoftTpm().certs(device)[0]["pem"]  # another AK, also issued by the device
    assert _rejected(new, device, other).field == "signature"


# ---------------------------------------------------------------------------- soft TPM + checks --
@pytest.fixture
def soft() -> tuple[SoftTpm, pki.Issued, bytes]:
    tpm = SoftTpm()
    tpm.measured({i: bytes([i]) * 32 for i in range(24)})
    device = pki.create_device("device SER-S")
    return tpm, device, tpm.certs(device)[0]["pem"]


def test_soft_quote_is_the_tpm_structure(soft: tuple[SoftTpm, pki.Issued, bytes]) -> None:
    tpm, device, ak = soft
    q = tpm.quote(NONCE)
    checked = _verify(q, device, ak)
    assert checked.pcrs == {i: bytes([i]) * 32 for i in QUOTE_PCRS}
    assert q["attest"][:6] == b"\xffTCG\x80\x18" and checked.info.extra_data == NONCE


def _field_offsets(attest: bytes) -> dict[str, int]:
    """Byte offset of each field of a TPMS_ATTEST (QUOTE) as build_quote lays it out."""
    signer = struct.unpack(">H", attest[6:8])[0]
    extra_at = 8 + signer
    extra = struct.unpack(">H", attest[extra_at:extra_at + 2])[0]
    clock_at = extra_at + 2 + extra
    sel_at = clock_at + 17 + 8
    digest_at = sel_at + 4 + 2 + 1 + 3
    return {"magic": 0, "type": 4, "extraData": extra_at + 2, "count": sel_at, "hash": sel_at + 4,
            "sizeofSelect": sel_at + 6, "bitmap": sel_at + 7, "pcrDigest": digest_at + 2}


def _tampered(attest: bytes) -> dict[str, tuple[bytes, str, str]]:
    """name -> (tampered attestData, expected code, expected field)."""
    o = _field_offsets(attest)

    def flip(at: int) -> bytes:
        return attest[:at] + bytes([attest[at] ^ 0x01]) + attest[at + 1:]

    return {
        "magic": (flip(o["magic"] + 3), "QUOTE_FAILED", "magic"),
        "type": (flip(o["type"] + 1), "QUOTE_FAILED", "type"),
        "extraData": (flip(o["extraData"]), "NONCE_MISMATCH", "extraData"),
        "pcr count": (flip(o["count"] + 3), "QUOTE_FAILED", "attestData"),  # 0 banks: the digest size reads wrong
        "pcr hash": (flip(o["hash"] + 1), "QUOTE_FAILED", "pcrSelect"),
        "pcr bitmap": (flip(o["bitmap"] + 1), "QUOTE_FAILED", "pcrSelect"),
        "sizeofSelect": (flip(o["sizeofSelect"]), "QUOTE_FAILED", "attestData"),
        "pcrDigest": (flip(o["pcrDigest"] + 5), "QUOTE_FAILED", "pcrDigest"),
        "trailing byte": (attest + b"\x00", "QUOTE_FAILED", "attestData"),
        "truncated": (attest[:-1], "QUOTE_FAILED", "attestData"),
        "empty": (b"", "QUOTE_FAILED", "attestData"),
    }


def test_every_tampered_field_fails_for_its_reason(soft: tuple[SoftTpm, pki.Issued, bytes]) -> None:
    tpm, device, ak = soft
    q = tpm.quote(NONCE)
    for name, (attest, code, field) in _tampered(q["attest"]).items():
        # As sent, unsigned by the AK: the signature check fails first, whatever the field.
        plain = _rejected({**q, "attest": attest}, device, ak)
        assert (plain.code, plain.field) == ("QUOTE_FAILED", "signature"), name
        # Signed again by the AK (a device lying with its own key): the field's own check fails.
        signed = {**q, "attest": attest, "signature": tpm._ak.sign(attest, ec.ECDSA(hashes.SHA256()))}
        exc = _rejected(signed, device, ak)
        assert (exc.code, exc.field) == (code, field), (name, exc)


def test_every_bit_of_the_signature_and_attest_data_matters(soft: tuple[SoftTpm, pki.Issued, bytes]) -> None:
    tpm, device, ak = soft
    q = tpm.quote(NONCE)
    sig = q["signature"]
    for bit in range(len(sig) * 8):
        bad = bytearray(sig)
        bad[bit // 8] ^= 1 << (bit % 8)
        exc = _rejected({**q, "signature": bytes(bad)}, device, ak)
        assert (exc.code, exc.field) == ("QUOTE_FAILED", "signature"), bit
    attest = q["attest"]
    for bit in range(len(attest) * 8):
        bad = bytearray(attest)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert _rejected({**q, "attest": bytes(bad)}, device, ak).field == "signature", bit
    for sig in (b"", sig[:-1], sig + b"\x00", b"\x00" * 200):
        assert _rejected({**q, "signature": sig}, device, ak).field == "signature"


def test_reported_pcr_values_must_match_the_digest(soft: tuple[SoftTpm, pki.Issued, bytes]) -> None:
    tpm, device, ak = soft
    q = tpm.quote(NONCE)
    good = _values(q["pcrs"])
    changed = [(i, a, b"\x55" * 32 if i == 13 else v) for i, a, v in good]
    cases = {
        "changed PCR 13": (changed, "pcrDigest"),
        "missing PCR 15": ([v for v in good if v[0] != 15], "pcr_values"),
        "repeated PCR": (good + good[:1], "pcr_values"),
        "PCR 24 (EVE sends 0-23)": (good + [(24, TPM_HASH_ALGO_SHA256, b"\x00" * 32)], "pcr_values"),
        "SHA-1 bank": ([(i, TPM_HASH_ALGO_SHA1, v) for i, _a, v in good], "pcr_values"),
        "short value": ([(i, a, v[:20]) for i, a, v in good], "pcr_values"),
        "none": ([], "pcr_values"),
    }
    for name, (values, field) in cases.items():
        exc = _rejected(q, device, ak, values=values)
        assert (exc.code, exc.field) == ("QUOTE_FAILED", field), name


def test_nonce_and_attestation_key_cert(soft: tuple[SoftTpm, pki.Issued, bytes]) -> None:
    tpm, device, ak = soft
    q = tpm.quote(NONCE)
    assert _rejected(q, device, ak, nonce=None).code == "NONCE_MISMATCH"
    assert _rejected(q, device, ak, nonce=NONCE + b"x").code == "NONCE_MISMATCH"
    stranger = pki.create_device("another device")
    foreign = certify(tpm._ak.public_key(), stranger, "Device Attestation certificate")  # same key, wrong issuer
    for pem, why in ((b"", "no"), (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "parse"),
                     (foreign, "not issued"), (device.cert_pem, "device key"),
                     (certify(ec.generate_private_key(ec.SECP384R1()).public_key(), device, "AK"), "P-256")):
        exc = _rejected(q, device, pem)
        assert exc.code == "NO_CERT_FOUND" and why in exc.reason, (why, exc)


def test_parser_only_raises_tpms_error_on_arbitrary_bytes(soft: tuple[SoftTpm, pki.Issued, bytes]) -> None:
    tpm, _device, _ak = soft
    attest = tpm.quote(NONCE)["attest"]
    rng = random.Random(11)
    for _ in range(3000):
        data = bytearray(attest)
        for _k in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(0, len(data) + 4)] if rng.random() < 0.3 else data
        try:
            parse_quote(bytes(data))
        except TpmsError:
            pass
    with pytest.raises(TpmsError):
        parse_quote(b"\x00" * 5000)  # bounded before parsing
