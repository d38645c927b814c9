"""HTTPS to the controller for emulated devices: protobuf in signed AuthContainers (spec §2).

One :class:`Transport` (one aiohttp session, one TLS context verified against the controller's
root certificate, keep-alive connections) serves any number of devices; what is per device
(keys, the controller signing certificate it learnt from ``certs``) is a small :class:`DeviceLink`.

Failures below HTTP map to status 0 with ``{"error": ...}``, the convention of the node model and
the simulator engine: ``refused`` (ECONNREFUSED: the remote is up but not serving, §4 "remote
temporary"), ``timeout`` (dial timeout, e.g. a dead link), ``tls`` (the server certificate does
not verify), ``signature`` (a response that does not verify against the controller signing
certificate, or certs that do not chain to the root), ``network`` (anything else).
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import aiohttp
from cryptography import x509
from google.protobuf.message import DecodeError

from eden.wire import codec, pki, signing
from eden.wire.gen import auth_pb2, certs_pb2

CONTENT_TYPE = "application/x-proto-binary"
ERROR_PRIORITY = ("refused", "signature", "tls", "network", "timeout")
"""With several ports failing, the most telling error wins: a refusal means the controller host
was reached through some port (remote temporary), a timeout only that nothing answered."""


class ResponseRejected(Exception):
    """A response that must not be believed (bad signature, untrusted signing certificate)."""


@dataclass
class DeviceLink:
    """What one device needs on the wire; kept small (thousands share one transport)."""

    device: pki.Issued
    onboard: pki.Issued
    images: dict[str, str] = field(default_factory=dict)  # content-tree uuid -> image name
    signing: dict[bytes, x509.Certificate] = field(default_factory=dict)  # learnt from certs
    _device_pem: bytes | None = None

    @property
    def device_pem(self) -> bytes:
        if self._device_pem is None:
            self._device_pem = self.device.cert_pem
        return self._device_pem


def image_map(names: Sequence[str]) -> dict[str, str]:
    return {codec.image_uuid(n): n for n in names}


class Transport:
    def __init__(self, root_pem: bytes, *, connections: int = 100) -> None:
        self.root = x509.load_pem_x509_certificate(root_pem)
        self.ssl = ssl.create_default_context(cadata=root_pem.decode("ascii"))
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.ssl, limit=self._connections, keepalive_timeout=60.0)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "Transport":
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        await self.close()

    # --------------------------------------------------------------------------------- request --
    async def send(
        self,
        link: DeviceLink,
        kind: str,
        body: Mapping[str, Any],
        urls: Sequence[str],
        *,
        device_uuid: str | None,
        timeout: float,
    ) -> tuple[int, dict[str, Any]]:
        """One node request through the ports' URLs in order; the first port that gets an HTTP
        answer wins. No URL at all: the dial times out (as the simulator's dead ports do)."""
        if not urls:
            await asyncio.sleep(timeout)
            return 0, {"error": "timeout"}
        method, path = codec.request_path(kind, device_uuid)
        payloads = codec.encode_request(kind, body, device_uuid=device_uuid, device_cert_pem=link.device_pem)
        errors: list[str] = []
        for base in urls:
            try:
                return await self._exchange(link, kind, method, base.rstrip("/") + path, payloads, timeout)
            except ResponseRejected:
                errors.append("signature")
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
                errors.append("timeout")
            except aiohttp.ClientConnectorCertificateError:
                errors.append("tls")
            except aiohttp.ClientSSLError:
                errors.append("tls")
            except aiohttp.ClientConnectorError as exc:
                refused = isinstance(exc.os_error, ConnectionRefusedError) or exc.os_error.errno == errno.ECONNREFUSED
                errors.append("refused" if refused else "network")
            except ssl.SSLError:
                errors.append("tls")
            except (aiohttp.ClientError, OSError):
                errors.append("network")
        return 0, {"error": min(errors, key=ERROR_PRIORITY.index)}

    async def _exchange(
        self, link: DeviceLink, kind: str, method: str, url: str, payloads: list[bytes], timeout: float
    ) -> tuple[int, dict[str, Any]]:
        session = self._get_session()
        limit = aiohttp.ClientTimeout(total=timeout)
        status, raw = 0, b""
        for payload in payloads if method == "POST" else [b""]:
            data = None
            if method == "POST":
                data = self._seal(link, kind, payload).SerializeToString()
            async with session.request(method, url, data=data, timeout=limit, headers={"Content-Type": CONTENT_TYPE}) as resp:
                status, raw = resp.status, await resp.read()
            if not 200 <= status < 300:
                break  # a later info part is not sent after a failed one
        inner = self._open(link, kind, status, raw)
        return status, codec.decode_response(kind, status, inner, images=link.images)

    @staticmethod
    def _seal(link: DeviceLink, kind: str, payload: bytes) -> auth_pb2.AuthContainer:
        if kind == "register":
            return signing.seal(payload, link.onboard.key, link.onboard.cert, include_cert=True)
        return signing.seal(payload, link.device.key, link.device.cert)

    # -------------------------------------------------------------------------------- response --
    def _open(self, link: DeviceLink, kind: str, status: int, raw: bytes) -> bytes:
        """Verify and unwrap a response body; learn the signing certificate from ``certs``."""
        if not raw:
            return b""
        container = auth_pb2.AuthContainer()
        try:
            container.ParseFromString(raw)
        except DecodeError:
            container = auth_pb2.AuthContainer()
        signed = container.HasField("protectedPayload") and bool(container.signatureHash)
        if kind == "certs" and 200 <= status < 300:
            payload = container.protectedPayload.payload if signed else raw
            trusted = self._learn_certs(link, payload)
            if signed:
                try:
                    signing.verify_container(container, trusted)
                except signing.AuthContainerError as exc:
                    raise ResponseRejected(f"certs: {exc}") from None
            return payload
        if not signed:
            if 200 <= status < 300:
                raise ResponseRejected(f"{kind}: unsigned response")
            return b""  # error statuses may come without a signed body
        try:
            return signing.verify_container(container, link.signing).payload
        except signing.AuthContainerError as exc:
            if 200 <= status < 300:
                raise ResponseRejected(f"{kind}: {exc}") from None
            return b""

    def _learn_certs(self, link: DeviceLink, payload: bytes) -> dict[bytes, x509.Certificate]:
        msg = certs_pb2.ZControllerCert()
        try:
            msg.ParseFromString(payload)
            chain = [
                x509.load_pem_x509_certificate(c.cert) for c in msg.certs if c.type == certs_pb2.CERT_TYPE_CONTROLLER_INTERMEDIATE
            ]
            signers = [
                x509.load_pem_x509_certificate(c.cert) for c in msg.certs if c.type == certs_pb2.CERT_TYPE_CONTROLLER_SIGNING
            ]
        except (DecodeError, ValueError):
            raise ResponseRejected("certs: not a ZControllerCert with PEM certificates") from None
        found = [cert for cert in signers if _chains_to(cert, chain, self.root)]
        if not found:
            raise ResponseRejected("certs: no controller signing certificate chains to the root certificate")
        link.signing = signing.cert_index(found)
        return link.signing


def _chains_to(cert: x509.Certificate, intermediates: list[x509.Certificate], root: x509.Certificate, depth: int = 4) -> bool:
    if pki.is_issued_by(cert, root):
        return True
    if depth == 0:
        return False
    return any(pki.is_issued_by(cert, mid) and _chains_to(mid, intermediates, root, depth - 1) for mid in intermediates if mid != cert)
