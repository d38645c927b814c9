"""The device-facing EVE API v2 over HTTPS (spec §2): AuthContainer in, signed AuthContainer out.

Every handler runs inside :func:`DeviceApi._guard`: any unexpected exception is logged and
answered 500; the server keeps running.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError

from eden.controller import attest
from eden.controller.admin_types import AttestationResult, EventSpec
from eden.controller.core import Controller, parse_cert
from eden.controller.model import DATASTORE_PATH
from eden.controller.quota import OverQuota
from eden.controller.store import is_busy
from eden.wire import codec, pki, signing
from eden.wire.gen import auth_pb2

log = logging.getLogger("eden.controller")
MIME = "application/x-proto-binary"
PREFIX = "/api/v2/edgedevice"
_HASH_LEN = {signing.SHA256_16BYTES: 16, signing.SHA256_32BYTES: 32}


class Reject(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = headers


class DeviceApi:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        server = str(ctl.settings.get("server", ""))
        self.datastore_fqdn = f"https://{server}" if server else ""
        # the root that issued the TLS cert the datastore is served with: a real EVE's downloader
        # trusts only the system pool and these dsCertPEM (P:cmd/downloader/download.go)
        self.datastore_certs = (pki.cert_pem(ctl.root),)
        certs = pki.controller_certs_message(ctl.signer.cert, ctl.ecdh.cert)
        # EVE names the signing cert by sha256 over the PEM bytes served here (spec §2.1)
        self._signing_pem = certs.certs[0].cert
        self._certs_body = self._seal(certs.SerializeToString())

    def routes(self) -> list[web.RouteDef]:
        g = self._guard
        return [
            web.get(f"{PREFIX}/ping", g("ping", self.ping)),
            web.get(f"{PREFIX}/certs", g("certs", self.certs)),
            web.post(f"{PREFIX}/register", g("register", self.register)),
            web.post(f"{PREFIX}/uuid", g("uuid", self.uuid)),
            web.post(f"{PREFIX}/id/{{uuid}}/config", g("config", self.config)),
            web.post(f"{PREFIX}/id/{{uuid}}/attest", g("attest", self.attest)),
            web.post(f"{PREFIX}/id/{{uuid}}/info", g("info", self.info)),
            web.post(f"{PREFIX}/id/{{uuid}}/metrics", g("metrics", self.metrics)),
            web.post(f"{PREFIX}/id/{{uuid}}/flowlog", g("flowlog", self.flowlog)),
            web.post(f"{PREFIX}/id/{{uuid}}/hardwarehealth", g("hardwarehealth", self.hardwarehealth)),
            web.post(f"{PREFIX}/id/{{uuid}}/newlogs", g("logs", self.logs)),
            web.post(f"{PREFIX}/id/{{uuid}}/logs", g("logs", self.logs)),
            web.post(f"{PREFIX}/id/{{uuid}}/apps/instanceid/{{app}}/newlogs", g("logs", self.logs)),
            web.get(f"{DATASTORE_PATH}{{sha256}}", g("datastore", self.datastore)),
        ]

    # ------------------------------------------------------------------ plumbing --
    def _guard(self, name: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        stats = self.ctl.stats

        ctl = self.ctl
        switched = name != "datastore"  # the answer switch is the controller API's, not the datastore's

        async def run(request: web.Request) -> web.StreamResponse:
            start = time.perf_counter()
            response: web.StreamResponse
            try:
                if switched and ctl.answer_mode != "normal":
                    held_out = ctl.answer_mode == "hang" and await ctl.hold_while_hung()
                    if held_out or ctl.answer_mode == "503":
                        raise Reject(503, f"controller answer switch: {ctl.answer_mode}", {"Retry-After": "10"})
                response = await handler(request)
            except Reject as exc:
                response = web.Response(status=exc.status, text=str(exc), headers=exc.headers)
            except Exception as exc:  # a bug must not take the server down: 500 + log
                self.ctl.store.rollback()  # a failed commit put the memory state back (Controller.commit)
                if is_busy(exc):  # another process holds the database: EVE retries 503 (§2.1)
                    log.warning("database busy on %s %s: 503", request.method, request.path)
                    response = web.Response(status=503, text="database busy", headers={"Retry-After": "1"})
                else:
                    log.exception("unhandled error on %s %s", request.method, request.path)
                    response = web.Response(status=500, text="internal error")
            stats.add(name, response.status, time.perf_counter() - start)
            return response

        return run

    def _seal(self, payload: bytes) -> bytes:
        return signing.seal(payload, self.ctl.signer.key, self.ctl.signer.cert,
                            served_pem=self._signing_pem).SerializeToString()

    def _reply(self, status: int, payload: bytes | None) -> web.Response:
        if payload is None:
            return web.Response(status=status)
        return web.Response(status=status, body=self._seal(payload), content_type=MIME)

    @staticmethod
    async def _container(request: web.Request) -> auth_pb2.AuthContainer:
        raw = await request.read()
        try:
            container = auth_pb2.AuthContainer.FromString(raw)
        except (DecodeError, ValueError) as exc:
            raise Reject(400, f"body is not an AuthContainer: {exc}") from None
        if not container.HasField("protectedPayload"):
            raise Reject(401, "AuthContainer has no protectedPayload")
        if not container.signatureHash:
            raise Reject(401, "AuthContainer is not signed")
        if container.algo not in _HASH_LEN or len(container.senderCertHash) != _HASH_LEN[container.algo]:
            raise Reject(401, "unsupported algo or malformed senderCertHash")
        return container

    async def _device(self, request: web.Request, *, check_path: bool = True) -> tuple[int, bytes]:
        """Verify the container against the onboarded device certs: (device index, payload)."""
        container = await self._container(request)
        digest = container.senderCertHash
        hit = self.ctl.auth.get(digest)
        if hit is None:
            if digest in self.ctl.revoked:  # fails closed before the signature is even looked at
                raise Reject(401, "the sender certificate was revoked")
            if digest in self.ctl.onboard_index:
                raise Reject(403, "the onboarding certificate may only register")
            raise Reject(401, "unknown sender certificate")
        i, key = hit
        payload = container.protectedPayload.payload
        if not signing.verify(key, payload, container.signatureHash):
            raise Reject(401, "signature does not verify")
        if check_path and request.match_info.get("uuid") != self.ctl.model.devices[i].uuid:
            raise Reject(403, "path uuid is not this device's")
        self.ctl.model.side[i].last_seen = time.time()
        return i, payload

    def _quota(self, i: int, kind: str, amount: float = 1.0) -> None:
        """Per-device quota (eden.controller.quota): 429 with Retry-After, which EVE retries (§2.1)."""
        try:
            self.ctl.quotas.charge(i, kind, amount)
        except OverQuota as exc:
            raise Reject(429, str(exc), {"Retry-After": str(int(exc.retry_after))}) from None

    @staticmethod
    def _decode(kind: str, payload: bytes, *, image_of_version: Mapping[str, str] | None = None,
                baseos_version: str | None = None) -> dict[str, Any]:
        try:
            return codec.decode_request(kind, payload, image_of_version=image_of_version, baseos_version=baseos_version)
        except codec.CodecError as exc:
            raise Reject(422 if payload else 400, f"bad {kind} body: {exc}") from None
        except DecodeError as exc:
            raise Reject(400, f"bad {kind} protobuf: {exc}") from None

    def _encode(self, kind: str, status: int, body: dict[str, Any], i: int) -> bytes:
        return codec.encode_response(kind, status, body, device_uuid=self.ctl.model.devices[i].uuid,
                                     datastore_fqdn=self.datastore_fqdn, datastore_certs=self.datastore_certs)

    # ------------------------------------------------------------------ handlers --
    async def datastore(self, request: web.Request) -> web.StreamResponse:
        """Content by sha256 (spec §3 step 1: the device downloads, then verifies the sha256).

        aiohttp's FileResponse answers Range requests (206 + Content-Range, 416 outside the
        file) and sets Content-Length, so a cut download resumes where it stopped."""
        path = self.ctl.content_file(request.match_info["sha256"])
        if path is None:
            raise Reject(404, "no such content")
        return web.FileResponse(path, chunk_size=256 * 1024, headers={"Content-Type": "application/octet-stream"})

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def certs(self, request: web.Request) -> web.Response:
        return web.Response(status=200, body=self._certs_body, content_type=MIME)

    async def register(self, request: web.Request) -> web.Response:
        ctl = self.ctl
        container = await self._container(request)
        if container.senderCertHash in ctl.auth:
            raise Reject(403, "a device certificate may not register")
        try:
            opened = signing.verify_container(container, ctl.onboard_index, allow_sender_cert=True)
        except signing.AuthContainerError as exc:
            raise Reject(401, str(exc)) from None
        sender = opened.cert
        if sender != ctl.onboard and not pki.is_issued_by(sender, ctl.onboard):
            raise Reject(401, "register must be signed by this controller's onboarding certificate")
        body = self._decode("register", opened.payload)
        serial = body.get("serial")
        i = ctl.by_serial.get(serial) if isinstance(serial, str) else None
        if i is None:
            return web.Response(status=403, text="serial not pre-registered")
        try:
            cert = parse_cert(body.get("cert", b""))
        except ValueError as exc:
            raise Reject(400, f"bad device certificate: {exc}") from None
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise Reject(422, "the device certificate must hold an ECDSA P-256 key")
        if signing.cert_hash(cert) in ctl.revoked:
            raise Reject(403, "this device certificate was revoked")
        refused = ctl.register_identity(i, cert)  # one cert, one serial; never the onboarding cert (§2)
        if refused is not None:
            ctl.commit([], [("register_refused", serial, {"status": refused[0], "reason": refused[1]})])
            raise Reject(*refused)
        body = {**body, "cert": pki.cert_pem(cert).decode()}
        status, _ = ctl.model.answer(i, "register", body)
        if status == 201:
            ctl._index_cert(i, cert)
            ctl.model.side[i].last_seen = time.time()
            ctl.commit([i], [("registered", serial, {"cert_sha256": signing.cert_hash(cert).hex()})])
        elif status == 409:
            ctl.commit([], [("register_conflict", serial, {})])
        # no body, but EVE's client counts a 200/201 without a Content-Type as not done (spec §2.1)
        return web.Response(status=status, content_type=MIME) if status in (200, 201) else web.Response(status=status)

    async def uuid(self, request: web.Request) -> web.Response:
        ctl = self.ctl
        i, payload = await self._device(request, check_path=False)
        self._decode("uuid", payload)
        status, answer = ctl.model.answer(i, "uuid", {})
        side = ctl.model.side[i]
        if status == 200:
            answer = {**answer, "manufacturer": side.manufacturer, "product_name": side.product_name}
        if status == 200 and not side.onboarded:
            side.onboarded = True
            ctl.commit([i], [("onboarded", ctl.model.devices[i].serial, {"uuid": answer["uuid"]})])
        return self._reply(status, self._encode("uuid", status, answer, i) if status == 200 else None)

    async def config(self, request: web.Request) -> web.Response:
        ctl = self.ctl
        i, payload = await self._device(request)
        body = self._decode("config", payload)
        # A device nothing was configured for yet gets its (empty) config with its uuid: APIv2
        # has no "no config" answer, and EVE reads 400/404 as an unknown device (spec §2.1).
        status, answer = ctl.model.answer(i, "config", body)
        dev = ctl.model.devices[i]
        headers = {"X-Config-Hash": dev.hash} if dev.hash else None
        if status != 200:
            return web.Response(status=status, headers=headers)
        side = ctl.model.side[i]
        if side.served_hash != dev.hash:
            side.served_hash = dev.hash
            ctl.commit([i], [("config_served", dev.serial, {"hash": dev.hash, "version": dev.ver})])
        response = self._reply(200, self._encode("config", 200, answer, i))
        if headers:
            response.headers.update(headers)
        return response

    async def attest(self, request: web.Request) -> web.Response:
        ctl = self.ctl
        i, payload = await self._device(request)
        body = self._decode("attest", payload)
        dev = ctl.model.devices[i]
        status, answer, detail = attest.handle(ctl, i, body)
        events: list[EventSpec] = []
        if answer.get("type") in ("QUOTE", "STORE_KEYS"):
            result: AttestationResult = {"t": time.time(), "type": answer["type"], "code": answer.get("code"),
                      "mismatch": answer.get("mismatch", []), "tpm": bool(body.get("tpm")), **detail}
            side = ctl.model.side[i]
            side.attestations = [*side.attestations[-19:], result]
            events.append(("attestation", dev.serial, result))
        elif answer.get("type") == "CERT":
            events.append(("certs_posted", dev.serial, detail))
        ctl.commit([i], events)  # nonce, token, escrow and certs are acknowledged state
        return self._reply(status, self._encode("attest", status, answer, i) if status < 300 else None)

    async def info(self, request: web.Request) -> web.Response:
        ctl = self.ctl
        i, payload = await self._device(request)
        self._quota(i, "info")
        dev = ctl.model.devices[i]
        versions = {img["version"]: name for name, img in ctl.model.side[i].images.items() if img.get("version")}
        if dev.baseos:
            versions[dev.baseos["version"]] = dev.baseos["image"]
        # the configured version picks the swList entry EVE reports its status in (spec §2.2)
        partial = self._decode("info", payload, image_of_version=versions,
                               baseos_version=dev.baseos["version"] if dev.baseos else None)
        side = ctl.model.side[i]
        if partial["part"] == "object":  # a volume, content tree, network instance, the hardware
            ctl.record_report(i, partial["kind"], payload, keep=True, at=partial["at"],
                              content_fields=[partial["content_field"]])
            if partial["key"]:
                ctl.keep_object(i, partial["kind"], partial["key"], partial["data"], partial["at"])
            side.info_count += 1
            ctl.commit([i], [])
            return web.Response(status=201)
        if partial["part"] == "other":  # every other valid kind: 201, counted, last one kept (spec §2.2)
            ctl.record_report(i, partial["kind"], payload, keep=True, at=partial["at"],
                              content_fields=partial["content_fields"])
            side.info_count += 1
            ctl.commit([i], [])
            return web.Response(status=201)
        try:
            merged = codec.merge_info(dev.info, partial)
        except codec.CodecError as exc:
            raise Reject(422, f"bad info: {exc}") from None
        ctl.record_report(i, "ZI_DEVICE" if partial["part"] == "device" else "ZI_APP", payload, keep=False,
                          at=partial.get("at", partial.get("report", {}).get("at")))
        status, _ = ctl.model.answer(i, "info", merged)
        ctl.model.info_journal.clear()  # the simulator's journal; not needed here
        side.info_count += 1
        ctl.commit([i], [("info", dev.serial, {"count": side.info_count})])
        return web.Response(status=status)

    async def metrics(self, request: web.Request) -> web.Response:
        ctl = self.ctl
        i, payload = await self._device(request)
        body = self._decode("metrics", payload)
        status, _ = ctl.model.answer(i, "metrics", body)
        side = ctl.model.side[i]
        side.metrics = body
        side.metrics_count += 1
        ctl.commit([i], [])
        return web.Response(status=status)

    async def flowlog(self, request: web.Request) -> web.Response:
        return await self._unmodelled(request, "flowlog")

    async def hardwarehealth(self, request: web.Request) -> web.Response:
        return await self._unmodelled(request, "hardwarehealth")

    async def _unmodelled(self, request: web.Request, kind: str) -> web.Response:
        """flowlog.FlowMessage / hardwarehealth.ZHardwareHealth (APIv2 MUST endpoints): eden does
        not model them; a well-formed protobuf body is counted and the last one kept, 201. EVE
        retries both until a 2xx, flowlog even on 404 (spec §2.1)."""
        ctl = self.ctl
        i, payload = await self._device(request)
        try:
            empty_pb2.Empty.FromString(payload)  # any well-formed message parses (unknown fields)
        except DecodeError as exc:
            raise Reject(422, f"bad {kind} body: {exc}") from None
        ctl.record_report(i, kind, payload, keep=True)
        ctl.commit([i], [])
        return web.Response(status=201)

    async def logs(self, request: web.Request) -> web.Response:
        ctl = self.ctl
        i, payload = await self._device(request)
        self._quota(i, "logs", len(payload))
        ctl.model.side[i].logs_count += 1
        ctl.store.begin()
        ctl.store_log(ctl.model.devices[i].serial, request.path, payload)
        ctl.commit([i], [])
        return web.Response(status=201)
