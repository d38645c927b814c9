"""Checking a device's TPM quote (spec §5; EVE's side: ``getQuote``, P:cmd/tpmmgr/tpmmgr.go).

A quote passes only when every check below passes; each is one small function that raises
:class:`QuoteRejected` with the attest answer EVE expects (``QUOTE_FAILED``, ``NONCE_MISMATCH``,
``NO_CERT_FOUND``) and the field it is about. Nothing in the quote is read before the signature
over it verified with the device's attestation key (the DEVICE_RESTRICTED_SIGNING cert posted
with ATTEST_REQ_CERT, issued by the device cert, as tpmmgr's ``createQuoteCertOnTpm`` makes it).
The PCR templates / TOFU come after, in the model.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from eden.wire import pki
from eden.wire.gen.attest_pb2 import TPM_HASH_ALGO_SHA256
from eden.wire.tpms import (TPM_ALG_SHA256, TPM_GENERATED_VALUE, QuoteInfo, TpmsError,
                            parse_quote, pcr_composite_digest)
from eve.measured_boot import QUOTE_PCRS, REPORTED_PCRS

MAX_SIGNATURE = 80  # DER ECDSA P-256 is at most 72 bytes


class QuoteRejected(Exception):
    def __init__(self, code: str, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.code = code
        self.field = field
        self.reason = reason


def _fail(field: str, reason: str, code: str = "QUOTE_FAILED") -> QuoteRejected:
    return QuoteRejected(code, field, reason)


@dataclass(frozen=True)
class Verified:
    info: QuoteInfo
    pcrs: dict[int, bytes]


def attestation_key(ak_pem: bytes | None, device_cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    """The AK from the posted cert; it must be a P-256 key certified by this device's cert."""
    if not ak_pem:
        raise _fail("certs", "no attestation key certificate posted", "NO_CERT_FOUND")
    try:
        cert = x509.load_pem_x509_certificate(ak_pem)
    except ValueError:
        raise _fail("certs", "the attestation key certificate does not parse", "NO_CERT_FOUND") from None
    if not pki.is_issued_by(cert, device_cert):
        raise _fail("certs", "the attestation key certificate is not issued by the device certificate", "NO_CERT_FOUND")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise _fail("certs", "the attestation key is not ECDSA P-256", "NO_CERT_FOUND")
    if key == device_cert.public_key():
        raise _fail("certs", "the attestation key is the device key, not a TPM key", "NO_CERT_FOUND")
    return key


def check_signature(key: ec.EllipticCurvePublicKey, attest: bytes, signature: bytes) -> None:
    """ECDSA-SHA256 over the TPMS_ATTEST bytes, DER-encoded as tpmmgr sends it."""
    if not signature or len(signature) > MAX_SIGNATURE:
        raise _fail("signature", f"signature is {len(signature)} bytes")
    try:
        key.verify(signature, attest, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise _fail("signature", "the quote signature does not verify with the attestation key") from None


def check_structure(attest: bytes) -> QuoteInfo:
    """The TPMS_ATTEST layout, type QUOTE (field ``type``), no trailing bytes."""
    try:
        return parse_quote(attest)
    except TpmsError as exc:
        raise _fail(exc.field, str(exc)) from None


def check_magic(info: QuoteInfo) -> None:
    if info.magic != TPM_GENERATED_VALUE:
        raise _fail("magic", f"0x{info.magic:08x} is not TPM_GENERATED_VALUE (not made by a TPM)")


def check_nonce(info: QuoteInfo, nonce: bytes | None) -> None:
    """extraData is the nonce this controller handed out for this attestation, used once."""
    if nonce is None or not hmac.compare_digest(info.extra_data, nonce):
        raise _fail("extraData", "the quoted nonce is not the one handed out", "NONCE_MISMATCH")


def check_selection(info: QuoteInfo) -> None:
    """Exactly the SHA-256 bank, PCR 0-15 (EVE's ``PcrListForQuote``)."""
    want = ((TPM_ALG_SHA256, tuple(QUOTE_PCRS)),)
    if info.selection != want:
        raise _fail("pcrSelect", f"selection {info.selection} is not SHA-256 PCR 0-15")


def reported_pcrs(values: Sequence[tuple[int, int, bytes]]) -> dict[int, bytes]:
    """The pcr_values field: SHA-256 values, 32 bytes each, each index of 0-23 at most once, all of
    0-15 present; the quoted ones (0-15) are returned.

    EVE's tpmmgr sends PCR 0-23 though it quotes only 0-15 (spec §5, P:cmd/tpmmgr/tpmmgr.go
    ``maxPCRIndex``); 16-23 are not covered by the signed digest, so they are checked for form
    and then set aside, never trusted."""
    pcrs: dict[int, bytes] = {}
    for index, algo, value in values:
        if algo != TPM_HASH_ALGO_SHA256 or len(value) != 32:
            raise _fail("pcr_values", f"PCR {index}: not a SHA-256 value")
        if index in pcrs or index not in REPORTED_PCRS:
            raise _fail("pcr_values", f"PCR {index} is repeated or outside 0-23")
        pcrs[index] = value
    missing = [i for i in QUOTE_PCRS if i not in pcrs]
    if missing:
        raise _fail("pcr_values", f"PCR {missing} missing, the quote needs PCR 0-15")
    return {i: pcrs[i] for i in QUOTE_PCRS}


def check_pcr_digest(info: QuoteInfo, pcrs: dict[int, bytes]) -> None:
    """The signed pcrDigest must be the hash of the reported PCR values."""
    if not hmac.compare_digest(info.pcr_digest, pcr_composite_digest(pcrs, QUOTE_PCRS)):
        raise _fail("pcrDigest", "the reported PCR values do not hash to the quoted digest")


def verify(attest: bytes, signature: bytes, values: Sequence[tuple[int, int, bytes]], *,
           nonce: bytes | None, ak_pem: bytes | None, device_cert: x509.Certificate) -> Verified:
    """All checks in order; the first that fails decides the answer."""
    key = attestation_key(ak_pem, device_cert)
    check_signature(key, attest, signature)
    info = check_structure(attest)
    check_magic(info)
    check_nonce(info, nonce)
    check_selection(info)
    pcrs = reported_pcrs(values)
    check_pcr_digest(info, pcrs)
    return Verified(info, pcrs)
