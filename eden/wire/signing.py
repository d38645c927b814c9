"""Signed AuthContainer envelopes (spec §2 "AuthContainer").

Every API v2 body is an ``AuthContainer``:

- ``protectedPayload.payload``: the serialized API message;
- ``algo``: how ``senderCertHash`` was computed;
- ``senderCertHash``: a sha256 naming the signer certificate, truncated to
  16 bytes (``HASH_SHA256_16BYTES``) or kept whole (``HASH_SHA256_32BYTES``).
  What is hashed differs per direction (spec §2.1): device -> controller, the
  certificate's DER (:func:`cert_hash`, EVE's ``certToSha256``); controller ->
  device, the PEM bytes exactly as ``GET certs`` serves them in ZCert.cert
  (:func:`pem_hash`, EVE's ``StoreServerSigningCert``). A DER hash from the
  controller is a cert miss for EVE, which then refetches certs for ever;
- ``signatureHash``: ECDSA P-256 signature of sha256(payload), as raw r||s
  (32 + 32 bytes big-endian), not DER;
- ``senderCert``: base64 of the signer certificate PEM, sent only on register
  where the receiver does not know the signer yet.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from eden.wire.gen import auth_pb2, common_pb2

__all__ = [
    "SHA256_16BYTES",
    "SHA256_32BYTES",
    "RAW_SIGNATURE_LEN",
    "AuthContainerError",
    "MissingPayload",
    "UnsupportedAlgorithm",
    "UnknownCertHash",
    "BadSignature",
    "Opened",
    "load_certificate",
    "certificate_der",
    "cert_hash",
    "cert_index",
    "pem_hash",
    "pem_index",
    "der_to_raw",
    "raw_to_der",
    "sign",
    "verify",
    "seal",
    "verify_container",
    "open_container",
]

SHA256_16BYTES = common_pb2.HASH_SHA256_16BYTES
SHA256_32BYTES = common_pb2.HASH_SHA256_32BYTES
_HASH_LEN = {SHA256_16BYTES: 16, SHA256_32BYTES: 32}
RAW_SIGNATURE_LEN = 64  # P-256: 32-byte r || 32-byte s
_COORD_LEN = RAW_SIGNATURE_LEN // 2


class AuthContainerError(Exception):
    """An AuthContainer could not be opened. Subclasses say why."""


class MissingPayload(AuthContainerError):
    """The container has no protectedPayload."""


class UnsupportedAlgorithm(AuthContainerError):
    """``algo`` is not a supported cert-hash algorithm."""


class UnknownCertHash(AuthContainerError):
    """``senderCertHash`` matches no known certificate (or is malformed)."""


class BadSignature(AuthContainerError):
    """The signature is missing, malformed, or does not verify."""


@dataclass(frozen=True)
class Opened:
    """A verified container: the payload and the certificate that signed it."""

    payload: bytes
    cert: x509.Certificate
    algo: int
    cert_hash: bytes


# -- certificates --------------------------------------------------------------


def load_certificate(cert: x509.Certificate | bytes | str) -> x509.Certificate:
    """Accept a Certificate, PEM (bytes or str) or DER bytes."""
    if isinstance(cert, x509.Certificate):
        return cert
    data = cert.encode("ascii") if isinstance(cert, str) else bytes(cert)
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def certificate_der(cert: x509.Certificate | bytes | str) -> bytes:
    return load_certificate(cert).public_bytes(serialization.Encoding.DER)


def cert_hash(cert: x509.Certificate | bytes | str, algo: int = SHA256_32BYTES) -> bytes:
    """sha256 of the certificate's DER encoding, truncated per ``algo``."""
    try:
        length = _HASH_LEN[algo]
    except KeyError:
        raise UnsupportedAlgorithm(f"unsupported cert hash algorithm {algo!r}") from None
    return hashlib.sha256(certificate_der(cert)).digest()[:length]


def pem_hash(pem: bytes, algo: int = SHA256_32BYTES) -> bytes:
    """sha256 over ``pem`` byte for byte (no normalisation), truncated per ``algo``: the
    controller's senderCertHash for the signing cert served in ZCert.cert (spec §2.1)."""
    try:
        length = _HASH_LEN[algo]
    except KeyError:
        raise UnsupportedAlgorithm(f"unsupported cert hash algorithm {algo!r}") from None
    return hashlib.sha256(bytes(pem)).digest()[:length]


def pem_index(pems: Iterable[bytes]) -> dict[bytes, x509.Certificate]:
    """Map the 16- and 32-byte :func:`pem_hash` of each served PEM to its certificate: how a
    device knows the controller's signing cert (``known`` for :func:`open_container`)."""
    index: dict[bytes, x509.Certificate] = {}
    for pem in pems:
        cert = x509.load_pem_x509_certificate(bytes(pem))
        for algo in _HASH_LEN:
            index[pem_hash(pem, algo)] = cert
    return index


def cert_index(certs: Iterable[x509.Certificate | bytes | str]) -> dict[bytes, x509.Certificate]:
    """Map both the 16- and the 32-byte DER hash of each certificate to it: how the controller
    knows device certs (``known`` for :func:`open_container`)."""
    index: dict[bytes, x509.Certificate] = {}
    for item in certs:
        cert = load_certificate(item)
        for algo in _HASH_LEN:
            index[cert_hash(cert, algo)] = cert
    return index


# -- signatures ----------------------------------------------------------------


def der_to_raw(der_signature: bytes) -> bytes:
    """DER ECDSA-Sig-Value -> raw r||s (64 bytes for P-256)."""
    r, s = decode_dss_signature(der_signature)
    return r.to_bytes(_COORD_LEN, "big") + s.to_bytes(_COORD_LEN, "big")


def raw_to_der(raw_signature: bytes) -> bytes:
    """Raw r||s (64 bytes) -> DER ECDSA-Sig-Value."""
    if len(raw_signature) != RAW_SIGNATURE_LEN:
        raise ValueError(f"raw P-256 signature must be {RAW_SIGNATURE_LEN} bytes, got {len(raw_signature)}")
    r = int.from_bytes(raw_signature[:_COORD_LEN], "big")
    s = int.from_bytes(raw_signature[_COORD_LEN:], "big")
    return encode_dss_signature(r, s)


def _check_p256(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> None:
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) or not isinstance(
        key.curve, ec.SECP256R1
    ):
        raise TypeError("an ECDSA P-256 (secp256r1) key is required")


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-256 over sha256(data); returns raw r||s (64 bytes)."""
    _check_p256(key)
    return der_to_raw(key.sign(data, ec.ECDSA(hashes.SHA256())))


def verify(
    signer: x509.Certificate | ec.EllipticCurvePublicKey, data: bytes, raw_signature: bytes
) -> bool:
    """True iff ``raw_signature`` (r||s) is ``signer``'s signature of sha256(data)."""
    public_key = signer.public_key() if isinstance(signer, x509.Certificate) else signer
    try:
        _check_p256(public_key)
        der = raw_to_der(raw_signature)
        public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


# -- envelopes -----------------------------------------------------------------


def seal(
    payload: bytes,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate | bytes | str,
    *,
    algo: int = SHA256_32BYTES,
    include_cert: bool = False,
    served_pem: bytes | None = None,
) -> auth_pb2.AuthContainer:
    """Sign ``payload`` with ``key`` and wrap it in an AuthContainer.

    ``cert`` is the certificate of ``key``; senderCertHash is its DER hash (a device), or with
    ``served_pem`` (the controller) the :func:`pem_hash` of the PEM bytes ``GET certs`` serves.
    ``include_cert`` puts base64(PEM) in senderCert (the register request).
    """
    certificate = load_certificate(cert)
    container = auth_pb2.AuthContainer()
    container.protectedPayload.SetInParent()  # present even for an empty payload
    container.protectedPayload.payload = bytes(payload)
    container.algo = algo
    container.senderCertHash = cert_hash(certificate, algo) if served_pem is None else pem_hash(served_pem, algo)
    container.signatureHash = sign(key, bytes(payload))
    if include_cert:
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        container.senderCert = base64.b64encode(pem)
    return container


def _embedded_cert(container: auth_pb2.AuthContainer) -> x509.Certificate | None:
    if not container.senderCert:
        return None
    try:
        pem = base64.b64decode(container.senderCert, validate=True)
        return load_certificate(pem)
    except (binascii.Error, ValueError) as exc:
        raise UnknownCertHash(f"senderCert is not a base64 PEM certificate: {exc}") from None


def verify_container(
    container: auth_pb2.AuthContainer,
    known: Mapping[bytes, x509.Certificate],
    *,
    allow_sender_cert: bool = False,
) -> Opened:
    """Verify ``container`` and return the payload with its signer.

    ``known`` maps cert hashes to certificates; it must hold the hash form
    the sender used (:func:`cert_index` holds both the 16- and 32-byte forms). With ``allow_sender_cert`` (register), a certificate carried
    in senderCert is used when its hash matches senderCertHash; the caller
    then decides whether that certificate is acceptable.

    Raises MissingPayload, UnsupportedAlgorithm, UnknownCertHash or
    BadSignature (all AuthContainerError).
    """
    if not container.HasField("protectedPayload"):
        raise MissingPayload("AuthContainer has no protectedPayload")
    payload = container.protectedPayload.payload
    algo = container.algo
    if algo not in _HASH_LEN:
        raise UnsupportedAlgorithm(f"unsupported cert hash algorithm {algo}")
    digest = container.senderCertHash
    if len(digest) != _HASH_LEN[algo]:
        raise UnknownCertHash(
            f"senderCertHash is {len(digest)} bytes; algorithm {algo} needs {_HASH_LEN[algo]}"
        )
    cert = known.get(digest)
    if cert is None and allow_sender_cert:
        embedded = _embedded_cert(container)
        if embedded is not None and cert_hash(embedded, algo) == digest:
            cert = embedded
    if cert is None:
        raise UnknownCertHash(f"no known certificate with hash {digest.hex()}")
    signature = container.signatureHash
    if not signature:
        raise BadSignature("AuthContainer is not signed")
    if len(signature) != RAW_SIGNATURE_LEN:
        raise BadSignature(f"signature must be raw r||s of {RAW_SIGNATURE_LEN} bytes, got {len(signature)}")
    if not verify(cert, payload, signature):
        raise BadSignature("signature does not verify")
    return Opened(payload=payload, cert=cert, algo=algo, cert_hash=digest)


def open_container(
    container: auth_pb2.AuthContainer,
    known: Mapping[bytes, x509.Certificate],
    *,
    allow_sender_cert: bool = False,
) -> bytes:
    """Verify ``container`` against ``known`` and return its payload."""
    return verify_container(container, known, allow_sender_cert=allow_sender_cert).payload
