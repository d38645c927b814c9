"""HTTPS to the controller for emulated devices: protobuf in signed AuthContainers (spec §2).

One :class:`Transport` (one aiohttp session, one TLS context verified against the controller's
root certificate; keep-alive connections unless ``fresh_connections``, as EVE keeps none) serves
any number of devices; what is per device (keys, the controller signing certificate it learnt
from ``certs``) is a small :class:`DeviceLink`.

Failures below HTTP map to status 0 with ``{"error": ...}``, the convention of the node model and
the simulator engine: ``refused`` (ECONNREFUSED: the remote is up but not serving, §4 "remote
temporary"), ``timeout`` (dial timeout, e.g. a dead link), ``tls`` (the server certificate does
not verify), ``signature`` (a response that does not verify against the controller signing
certificate, or certs that do not chain to the root), ``network`` (anything else).

What EVE's device does on the wire (spec §2.1; P:controllerconn/{send.go,tls.go,authen.go}):
TLS 1.2 or later with EVE's two TLS 1.2 suites; ``X-Request-Id`` on every request,
``X-Serial-Number``/``X-Soft-Serial`` while the device UUID is unknown, ``Content-Type`` on POSTs
only; the controller certs are kept in a checkpoint across reboots (``controllercerts``), and a
signed answer from a signing cert the device does not know (a cert miss) fails that request and
makes the device fetch the certs again at once (P:cmd/zedagent/handleconfig.go).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import ssl
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import aiohttp
from cryptography import x509
from google.protobuf.message import DecodeError

from eden.agent.state import atomic_write
from eden.runtime.deadline import Deadline
from eden.wire import codec, pki, signing
from eden.wire.codec import CodecError
from eden.wire.gen import auth_pb2, certs_pb2
from eve.send import SendTimeouts

CONTENT_TYPE = "application/x-proto-binary"
TLS12_CIPHERS = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"
"""EVE's TLS 1.2 suites (P:controllerconn/tls.go ``GetTLSConfig``); TLS 1.3 keeps its defaults."""
ONBOARDING_KINDS = ("certs", "uuid")
ONBOARDING_MIME_TYPES = ("application/x-proto-binary", "application/json", "text/plain")
"""The media types EVE's client takes in a 200/201 answer to certs and uuid (P:cmd/client/client.go
``myPost``: no Content-Type, one ``mime.ParseMediaType`` refuses, or another type -> not done)."""
ERROR_PRIORITY = ("refused", "signature", "tls", "network", "timeout")
"""With several ports failing, the most telling error wins: a refusal means the controller host
was reached through some port (remote temporary), a timeout only that nothing answered."""


def onboarding_content_type_problem(value: str) -> str | None:
    """Why EVE's client would not take a 200/201 answer with this Content-Type, or None.

    As ``myPost`` (P:cmd/client/client.go) reads it with Go's ``mime.ParseMediaType``: the media
    type is case-insensitive ``type/subtype``; each parameter after a ';' must be ``key=value``
    (a trailing ';' is allowed); the type must be one of :data:`ONBOARDING_MIME_TYPES`."""
    if not value.strip():
        return "no Content-Type"
    media, *params = value.split(";")
    media = media.strip().lower()
    kind, slash, sub = media.partition("/")
    if not slash or not kind or not sub or any(c.isspace() for c in media):
        return f"Content-Type {value!r} does not parse"
    for n, param in enumerate(params):
        param = param.strip()
        if not param and n == len(params) - 1:
            break  # a trailing ';'
        key, eq, _val = param.partition("=")
        if not eq or not key.strip():
            return f"Content-Type {value!r} does not parse"
    if media not in ONBOARDING_MIME_TYPES:
        return f"Content-Type {media} is not one EVE's client takes"
    return None


class ResponseRejected(Exception):
    """A response that must not be believed (bad signature, untrusted signing certificate)."""


class CertMiss(ResponseRejected):
    """A signed answer whose senderCertHash names no signing cert the device knows."""


class DownloadError(Exception):
    """A content download that did not give the expected file."""


class ContentNotFound(DownloadError):
    """Every datastore URL answered 404: the controller does not hold this content."""


class ContentMismatch(DownloadError):
    """The bytes do not hash to the declared sha256, or exceed the declared size (EVE's verifier)."""


class DownloadTimeout(DownloadError):
    """The download did not complete before its deadline (the partial file is kept for a resume)."""


@dataclass
class DeviceLink:
    """What one device needs on the wire; kept small (thousands share one transport)."""

    device: pki.Issued
    onboard: pki.Issued
    images: dict[str, str] = field(default_factory=dict)  # content-tree uuid -> image name
    signing: dict[bytes, x509.Certificate] = field(default_factory=dict)  # learnt from certs
    serial: str = ""  # X-Serial-Number until the UUID is known
    soft_serial: str = ""  # X-Soft-Serial (EVE: /persist/status/soft_serial)
    checkpoint: Path | None = None  # where the last good certs answer is kept across reboots
    _device_pem: bytes | None = None

    @property
    def device_pem(self) -> bytes:
        if self._device_pem is None:
            self._device_pem = self.device.cert_pem
        return self._device_pem


def image_map(names: Sequence[str]) -> dict[str, str]:
    return {codec.image_uuid(n): n for n in names}


class Transport:
    def __init__(self, root_pem: bytes, *, connections: int = 100, fresh_connections: bool = False) -> None:
        """``fresh_connections``: a new connection for every request, as EVE opens one (a new
        transport per ``SendOnIntf``, P:controllerconn/send.go), so a request after a link went down
        dials into the dead path and gives up after the dial timeout instead of waiting out the send
        timeout on an old keep-alive connection. The device agent uses it; the many-device emulator
        keeps its connections (its figures are the controller's throughput, docs/emulated.md)."""
        self.root = x509.load_pem_x509_certificate(root_pem)
        self.ssl = ssl.create_default_context(cadata=root_pem.decode("ascii"))
        self.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ssl.set_ciphers(TLS12_CIPHERS)
        self._connections = connections
        self._fresh = fresh_connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = (aiohttp.TCPConnector(ssl=self.ssl, limit=self._connections, force_close=True) if self._fresh
                         else aiohttp.TCPConnector(ssl=self.ssl, limit=self._connections, keepalive_timeout=60.0))
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

    # -------------------------------------------------------------------------------- download --
    async def download(
        self,
        url_base_list: Sequence[str],
        path: str,
        dest: Path,
        sha256: str,
        size: int | None,
        timeout: float,
        parent: Deadline | None = None,
    ) -> Path:
        """Download content ``path`` (e.g. ``/eden/datastore/sha256/<hex>``, relative to each base
        URL in turn) to ``dest`` and return it; spec §3 step 1.

        Same TLS trust as the API (the controller's root certificate). Bytes go to ``dest.part``;
        after a cut connection or an error the next attempt asks for the rest with ``Range`` (a
        ``.part`` left by an earlier call is resumed too). Complete: the sha256 is checked (EVE's
        verifier), the file fsync'd and renamed to ``dest``. Raises ContentMismatch (the ``.part``
        is removed), ContentNotFound (all URLs 404) or DownloadTimeout after ``timeout`` seconds (or
        when ``parent`` ends)."""
        want = sha256.lower()
        if len(want) != 64 or any(ch not in "0123456789abcdef" for ch in want):
            raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
        if not url_base_list:
            raise ValueError("no URL to download from")
        deadline = Deadline(timeout, parent)
        dest.parent.mkdir(parents=True, exist_ok=True)
        got = _Partial.resume(dest.with_name(dest.name + ".part"), size)
        pause = 0.1
        last_error = "no attempt"
        complete = size is not None and got.have == size
        while not complete:
            not_found = 0
            for base in url_base_list:
                left = deadline.remaining()
                if left <= 0:
                    break
                try:
                    complete = await self._fetch_rest(base.rstrip("/") + path, got, size, left)
                except ContentNotFound:
                    not_found += 1
                    last_error = "404"
                except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                if complete:
                    break
            if complete:
                break
            if not_found == len(url_base_list):
                got.path.unlink(missing_ok=True)
                raise ContentNotFound(f"{path}: not found at {', '.join(url_base_list)}")
            if deadline.expired():
                raise DownloadTimeout(f"{path}: {got.have} of {size} bytes after {timeout} s (last error: {last_error})")
            await asyncio.sleep(min(pause, deadline.remaining()))
            pause = min(pause * 2, 2.0)
        actual = got.digest.hexdigest()
        if actual != want:
            got.path.unlink(missing_ok=True)
            raise ContentMismatch(f"{path}: sha256 is {actual}, expected {want}")
        with open(got.path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(got.path, dest)
        return dest

    async def _fetch_rest(self, url: str, got: "_Partial", size: int | None, left: float) -> bool:
        """One GET for the bytes after ``got.have``, appended to the partial file (``got`` is
        updated as bytes arrive, so a cut keeps what came). True when the content is complete."""
        session = self._get_session()
        headers = {"Range": f"bytes={got.have}-"} if got.have else {}
        limit = aiohttp.ClientTimeout(total=left, sock_read=min(left, 30.0))
        async with session.get(url, headers=headers, timeout=limit) as resp:
            if resp.status == 404:
                raise ContentNotFound(url)
            if resp.status == 416 and size is not None and got.have == size:
                return True
            if resp.status == 200 and got.have:
                got.restart()  # the server ignored the Range: start over
            elif resp.status == 206:
                start = resp.headers.get("Content-Range", "").removeprefix("bytes ").partition("-")[0]
                if start != str(got.have):
                    raise aiohttp.ClientPayloadError(f"asked for byte {got.have}, got Content-Range {resp.headers.get('Content-Range')!r}")
            elif resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status, message=resp.reason or "")
            with open(got.path, "r+b" if got.have else "wb") as fh:
                fh.seek(got.have)
                fh.truncate()
                async for chunk in resp.content.iter_chunked(256 * 1024):
                    if size is not None and got.have + len(chunk) > size:
                        got.path.unlink(missing_ok=True)
                        raise ContentMismatch(f"{url}: more than the declared {size} bytes")
                    fh.write(chunk)
                    got.add(chunk)
        return size is None or got.have == size

    # --------------------------------------------------------------------------------- request --
    async def send(
        self,
        link: DeviceLink,
        kind: str,
        body: Mapping[str, Any],
        urls: Sequence[str],
        *,
        device_uuid: str | None,
        timeout: SendTimeouts | float,
    ) -> tuple[int, dict[str, Any]]:
        """One node request through the ports' URLs in order; the first port that gets an HTTP
        answer wins. ``timeout`` is EVE's limits (:mod:`eve.send`: the connect, each port's exchange,
        the whole request), or one number for all three. No URL at all (no management port) is an
        error at once, as ``SendOnAllIntf`` gives it."""
        limits = timeout if isinstance(timeout, SendTimeouts) else SendTimeouts(dial=timeout, send=timeout)
        if not urls:
            return 0, {"error": "network"}
        method, path = codec.request_path(kind, device_uuid)
        if kind == "register" and link.soft_serial:
            body = {**body, "soft_serial": link.soft_serial}  # ZRegisterMsg.softSerial, as EVE's selfRegister
        payloads = codec.encode_request(kind, body, device_uuid=device_uuid, device_cert_pem=link.device_pem)
        errors: list[str] = []
        budget = Deadline(limits.cap)
        for base in urls:
            left = budget.remaining()
            if left <= 0:
                errors.append("timeout")  # the whole request's cap is used up (GetContextForAllIntfFunctions)
                break
            per_port = min(limits.per_port, left)
            connect = min(limits.dial, per_port) if limits.dial > 0 else None
            try:
                return await self._exchange(link, kind, method, base.rstrip("/") + path, payloads,
                                            aiohttp.ClientTimeout(total=per_port, connect=connect),
                                            device_uuid=device_uuid)
            except CertMiss:
                errors.append("signature")
                await self.refetch_certs(link, base, min(limits.per_port, max(budget.remaining(), 0.001)), device_uuid)
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

    async def refetch_certs(self, link: DeviceLink, base: str, timeout: float, device_uuid: str | None = None) -> bool:
        """GET certs after a cert miss (zedagent does it at once); True when certs were learnt.
        A failure leaves the certs the device had (spec §2.1 table, GET certs)."""
        _method, path = codec.request_path("certs", None)
        try:
            status, _ = await self._exchange(link, "certs", "GET", base.rstrip("/") + path, [], timeout, device_uuid=device_uuid)
        except (ResponseRejected, asyncio.TimeoutError, aiohttp.ClientError, OSError, ssl.SSLError, CodecError):
            return False
        return 200 <= status < 300

    def load_checkpoint(self, link: DeviceLink) -> bool:
        """At boot: learn the signing certs from the checkpoint, as EVE reads its
        /persist/checkpoint/controllercerts; a missing or bad checkpoint leaves none."""
        if link.checkpoint is None or not link.checkpoint.is_file():
            return False
        try:
            self._learn_certs(link, link.checkpoint.read_bytes())
        except (ResponseRejected, OSError):
            return False
        return True

    @staticmethod
    def headers(link: DeviceLink, method: str, device_uuid: str | None) -> dict[str, str]:
        """EVE's ``prepareHTTPRequest`` headers (spec §2.1 Transport)."""
        out = {"X-Request-Id": str(uuidlib.uuid4())}
        if method == "POST":
            out["Content-Type"] = CONTENT_TYPE
        if device_uuid is None:
            if link.serial:
                out["X-Serial-Number"] = link.serial
            if link.soft_serial:
                out["X-Soft-Serial"] = link.soft_serial
        return out

    async def _exchange(
        self, link: DeviceLink, kind: str, method: str, url: str, payloads: list[bytes],
        timeout: aiohttp.ClientTimeout | float, *, device_uuid: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        session = self._get_session()
        limit = timeout if isinstance(timeout, aiohttp.ClientTimeout) else aiohttp.ClientTimeout(total=timeout)
        status, raw = 0, b""
        for payload in payloads if method == "POST" else [b""]:
            data = None
            if method == "POST":
                data = self._seal(link, kind, payload).SerializeToString()
            headers = self.headers(link, method, device_uuid)
            async with session.request(method, url, data=data, timeout=limit, headers=headers) as resp:
                status, raw = resp.status, await resp.read()
                content_type = resp.headers.get("Content-Type", "")
            if not 200 <= status < 300:
                break  # a later info part is not sent after a failed one
        if kind in ONBOARDING_KINDS and status in (200, 201):
            problem = onboarding_content_type_problem(content_type)
            if problem is not None:
                raise ResponseRejected(f"{kind}: {problem}")
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
        if kind == "certs" and 200 <= status < 300:
            # EVE unwraps the certs AuthContainer without verifying it (skipVerify, P:cmd/client/
            # client.go fetchCertChain; P:cmd/zedagent/handlecertconfig.go requestCertsByURL) and
            # then applies VerifyLeavesCertChainWithRootPEM to the payload; an empty answer has
            # no signing cert, so it is refused there (spec §2.1 "/certs content").
            container = auth_pb2.AuthContainer()
            try:
                container.ParseFromString(raw)
            except DecodeError:
                raise ResponseRejected("certs: the answer is not an AuthContainer") from None
            payload = container.protectedPayload.payload
            self._learn_certs(link, payload)
            self._keep_checkpoint(link, payload)
            return payload
        if not raw:
            return b""
        container = auth_pb2.AuthContainer()
        try:
            container.ParseFromString(raw)
        except DecodeError:
            container = auth_pb2.AuthContainer()
        signed = container.HasField("protectedPayload") and bool(container.signatureHash)
        if not signed:
            if 200 <= status < 300:
                raise ResponseRejected(f"{kind}: unsigned response")
            return b""  # error statuses may come without a signed body
        try:
            return signing.verify_container(container, link.signing).payload
        except signing.UnknownCertHash as exc:
            if 200 <= status < 300:
                raise CertMiss(f"{kind}: {exc}") from None
            return b""
        except signing.AuthContainerError as exc:
            if 200 <= status < 300:
                raise ResponseRejected(f"{kind}: {exc}") from None
            return b""

    @staticmethod
    def _keep_checkpoint(link: DeviceLink, payload: bytes) -> None:
        """Write the certs answer to the checkpoint when it changed (atomically: a power cut
        leaves the old or the new one)."""
        path = link.checkpoint
        if path is None:
            return
        try:
            if path.is_file() and path.read_bytes() == payload:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, payload)
        except OSError:
            pass  # a full or read-only disk: the device goes on with the certs in memory

    def _learn_certs(self, link: DeviceLink, payload: bytes) -> dict[bytes, x509.Certificate]:
        """EVE's rules for the certs list (``VerifyLeavesCertChainWithRootPEM`` with requireECDH,
        P:controllerconn/authen.go; spec §2.1): exactly one signing cert, at least one ECDH
        exchange cert, intermediates only as the pool, no other type; the signing and every ECDH
        leaf verify to the root. The same rules apply to the checkpoint read at boot
        (``LoadSavedServerSigningCert``)."""
        msg = certs_pb2.ZControllerCert()
        try:
            msg.ParseFromString(payload)
            pem = pki.check_controller_certs(msg, self.root)
        except DecodeError:
            raise ResponseRejected("certs: not a ZControllerCert") from None
        except ValueError as exc:  # ControllerCertsError and unparsable PEM
            raise ResponseRejected(f"certs: {exc}") from None
        link.signing = signing.pem_index([pem])  # named by sha256 of the PEM as served (spec §2.1)
        return link.signing


@dataclass
class _Partial:
    """A download in progress: the ``.part`` file, its length and the running sha256."""

    path: Path
    have: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    @classmethod
    def resume(cls, path: Path, size: int | None) -> "_Partial":
        got = cls(path)
        if path.exists():
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    got.add(chunk)
            if size is not None and got.have > size:
                path.unlink()
                got.restart()
        return got

    def add(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.have += len(chunk)

    def restart(self) -> None:
        self.digest, self.have = hashlib.sha256(), 0

