"""Certificates for the controller and devices (all ECDSA P-256, SHA-256).

What ``eden controller init`` and the device agent need:

- a root CA (``root-certificate.pem`` on an EVE device's CONFIG partition);
- a controller TLS server certificate (SAN localhost / 127.0.0.1 by default),
  issued by the root;
- a controller signing certificate, issued by the root, whose role on the wire
  is ``CERT_TYPE_CONTROLLER_SIGNING`` (served by ``GET certs``);
- a controller ECDH exchange certificate, issued by the root
  (``CERT_TYPE_CONTROLLER_ECDH_EXCHANGE``): EVE 16.12+ refuses a ``GET certs``
  chain without one (spec §2.1, :func:`check_controller_certs`);
- an onboarding certificate/key and a device certificate/key (self-signed,
  as EVE makes them, unless an issuer is given).

PEM helpers write keys as unencrypted PKCS#8 with file mode 0600.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from eden.wire.gen import certs_pb2, common_pb2

__all__ = [
    "Issued",
    "new_key",
    "create_root_ca",
    "create_controller_tls",
    "create_controller_signing",
    "create_controller_ecdh",
    "ControllerCertsError",
    "check_controller_certs",
    "served_cert_hash",
    "create_onboarding",
    "create_device",
    "controller_certs_message",
    "is_issued_by",
    "cert_pem",
    "key_pem",
    "load_cert",
    "load_key",
    "save_pem",
    "load_pem",
]

DEFAULT_DAYS = 3650
_BACKDATE = _dt.timedelta(hours=1)  # tolerate small clock skew


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organization: str | None = "eden") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _key_usage(*, sign: bool = True, cert_sign: bool = False, key_agreement: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _build(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: Issued | None,
    *,
    days: int,
    ca: bool,
    key_usage: x509.KeyUsage,
    extended: Sequence[x509.ObjectIdentifier] = (),
    san: x509.SubjectAlternativeName | None = None,
) -> x509.Certificate:
    now = _dt.datetime.now(_dt.timezone.utc)
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.cert.subject if issuer else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended)), critical=False)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def create_root_ca(common_name: str = "eden root CA", *, days: int = DEFAULT_DAYS) -> Issued:
    """A self-signed CA certificate that issues the controller's certificates."""
    key = new_key()
    cert = _build(_name(common_name), key, None, days=days, ca=True,
                  key_usage=_key_usage(sign=True, cert_sign=True))
    return Issued(cert, key)


def create_controller_tls(
    ca: Issued,
    hostnames: Iterable[str] = ("localhost",),
    ips: Iterable[str] = ("127.0.0.1",),
    *,
    common_name: str | None = None,
    days: int = DEFAULT_DAYS,
) -> Issued:
    """The controller's HTTPS server certificate, issued by ``ca``."""
    hostnames = list(hostnames)
    ip_list = [ipaddress.ip_address(ip) for ip in ips]
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    names += [x509.IPAddress(ip) for ip in ip_list]
    if not names:
        raise ValueError("a TLS certificate needs at least one hostname or IP address")
    cn = common_name or (hostnames[0] if hostnames else str(ip_list[0]))
    key = new_key()
    cert = _build(
        _name(cn), key, ca, days=days, ca=False,
        key_usage=_key_usage(sign=True, key_agreement=True),
        extended=[ExtendedKeyUsageOID.SERVER_AUTH],
        san=x509.SubjectAlternativeName(names),
    )
    return Issued(cert, key)


def create_controller_signing(
    ca: Issued, common_name: str = "eden controller signing", *, days: int = DEFAULT_DAYS
) -> Issued:
    """The certificate that signs controller payloads (CERT_TYPE_CONTROLLER_SIGNING)."""
    key = new_key()
    cert = _build(_name(common_name), key, ca, days=days, ca=False, key_usage=_key_usage(sign=True))
    return Issued(cert, key)


def create_onboarding(
    common_name: str = "onboard", *, issuer: Issued | None = None, days: int = DEFAULT_DAYS
) -> Issued:
    """An onboarding certificate/key (``onboard.cert.pem`` / ``onboard.key.pem``).

    Self-signed by default; EVE presents it to ``register`` with the serial.
    """
    key = new_key()
    cert = _build(_name(common_name), key, issuer, days=days, ca=False,
                  key_usage=_key_usage(sign=True),
                  extended=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return Issued(cert, key)


def create_device(
    common_name: str, *, issuer: Issued | None = None, days: int = DEFAULT_DAYS
) -> Issued:
    """A device certificate/key (``device.cert.pem``); self-signed by default."""
    key = new_key()
    cert = _build(_name(common_name), key, issuer, days=days, ca=False,
                  key_usage=_key_usage(sign=True, key_agreement=True),
                  extended=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return Issued(cert, key)


def create_controller_ecdh(
    ca: Issued, common_name: str = "eden controller ECDH exchange", *, days: int = DEFAULT_DAYS
) -> Issued:
    """The controller's key-agreement certificate (CERT_TYPE_CONTROLLER_ECDH_EXCHANGE, spec §2.1).

    No extended key usage: EVE verifies it with Go's defaults (serverAuth), which a leaf
    without the extension passes."""
    key = new_key()
    cert = _build(_name(common_name), key, ca, days=days, ca=False,
                  key_usage=_key_usage(sign=False, key_agreement=True))
    return Issued(cert, key)


def served_cert_hash(pem: bytes) -> bytes:
    """ZCert.certHash as EVE's own certs and adam use (SHA256_16BYTES over the PEM bytes, §2.1)."""
    return hashlib.sha256(pem).digest()[:16]


def _zcert(msg: certs_pb2.ZControllerCert, kind: int, cert: x509.Certificate) -> None:
    pem = cert_pem(cert)
    msg.certs.add(hashAlgo=common_pb2.HASH_SHA256_16BYTES, certHash=served_cert_hash(pem), type=kind, cert=pem)


def controller_certs_message(
    signing: x509.Certificate, ecdh: x509.Certificate, intermediates: Iterable[x509.Certificate] = ()
) -> certs_pb2.ZControllerCert:
    """The ``GET certs`` body (spec §2.1): exactly one signing cert, the ECDH exchange cert and
    any intermediates, as PEM, each keyed by hashAlgo/certHash."""
    msg = certs_pb2.ZControllerCert()
    _zcert(msg, certs_pb2.CERT_TYPE_CONTROLLER_SIGNING, signing)
    _zcert(msg, certs_pb2.CERT_TYPE_CONTROLLER_ECDH_EXCHANGE, ecdh)
    for cert in intermediates:
        _zcert(msg, certs_pb2.CERT_TYPE_CONTROLLER_INTERMEDIATE, cert)
    return msg


class ControllerCertsError(ValueError):
    """A ``GET certs`` list EVE would refuse; the message says why."""


def _valid_at(cert: x509.Certificate, now: _dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _chain_ok(leaf: x509.Certificate, pool: list[x509.Certificate], root: x509.Certificate,
              now: _dt.datetime) -> bool:
    """``leaf`` verifies to ``root`` through ``pool`` (CA certs), every link valid at ``now``."""
    current, seen = leaf, 0
    while seen <= len(pool):
        if not _valid_at(current, now):
            return False
        if is_issued_by(current, root):
            return _valid_at(root, now)
        nxt = next((c for c in pool if c != current and _is_ca(c) and is_issued_by(current, c)), None)
        if nxt is None:
            return False
        current, seen = nxt, seen + 1
    return False


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _eku_allows_server(cert: x509.Certificate) -> bool:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.SERVER_AUTH in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


def check_controller_certs(
    msg: certs_pb2.ZControllerCert, root: x509.Certificate, *, require_ecdh: bool = True,
    now: _dt.datetime | None = None,
) -> bytes:
    """Apply EVE's rules for a ``GET certs`` list (spec §2.1, ``VerifyLeavesCertChainWithRootPEM``)
    and return the signing cert's PEM bytes exactly as served.

    Exactly one CONTROLLER_SIGNING; at least one CONTROLLER_ECDH_EXCHANGE (EVE 16.12+, 14.5.4-lts,
    16.0.1-lts); any CONTROLLER_INTERMEDIATE, used only to build chains; any other type refuses
    the whole list. The signing and every ECDH leaf must chain to ``root``, valid at ``now``,
    and (INFERRED from Go's defaults) an extended key usage, when present, must allow serverAuth."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    signing: list[bytes] = []
    leaves: list[tuple[str, bytes]] = []
    pool: list[x509.Certificate] = []
    for n, entry in enumerate(msg.certs):
        if entry.type == certs_pb2.CERT_TYPE_CONTROLLER_INTERMEDIATE:
            try:
                pool.append(x509.load_pem_x509_certificate(entry.cert))
            except ValueError:
                raise ControllerCertsError(f"certs[{n}]: intermediate is not a PEM certificate") from None
        elif entry.type == certs_pb2.CERT_TYPE_CONTROLLER_SIGNING:
            signing.append(entry.cert)
            leaves.append(("signing", entry.cert))
        elif entry.type == certs_pb2.CERT_TYPE_CONTROLLER_ECDH_EXCHANGE:
            leaves.append(("ECDH", entry.cert))
        else:
            raise ControllerCertsError(f"certs[{n}]: certificate type {entry.type} is not a controller type")
    if len(signing) != 1:
        raise ControllerCertsError(f"exactly one signing certificate is needed, got {len(signing)}")
    if require_ecdh and not any(role == "ECDH" for role, _ in leaves):
        raise ControllerCertsError("no ECDH exchange certificate")
    for role, pem in leaves:
        try:
            leaf = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise ControllerCertsError(f"the {role} certificate is not a PEM certificate") from None
        if not _chain_ok(leaf, pool, root, now):
            raise ControllerCertsError(f"the {role} certificate does not chain to the root certificate")
        if not _eku_allows_server(leaf):
            raise ControllerCertsError(f"the {role} certificate's extended key usage excludes serverAuth")
    return signing[0]


def is_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True iff ``issuer``'s key signed ``cert`` and the names chain."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# -- PEM -----------------------------------------------------------------------


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_cert(path: str | os.PathLike[str]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def load_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC private key")
    return key


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def save_pem(
    issued: Issued, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str] | None = None
) -> None:
    """Write the certificate (and, if ``key_path`` is given, the key, mode 0600)."""
    cert_file = Path(cert_path)
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    cert_file.write_bytes(issued.cert_pem)
    if key_path is not None:
        _write_private(Path(key_path), issued.key_pem)


def load_pem(cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> Issued:
    return Issued(load_cert(cert_path), load_key(key_path))
