"""The agent's HTTPS transport against small real HTTPS servers: error mapping, TLS and signatures."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from eden.agent.transport import DeviceLink, Transport
from eden.wire import pki, signing
from eve.send import SendTimeouts

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _link() -> DeviceLink:
    return DeviceLink(device=pki.create_device("tr-1"), onboard=pki.create_onboarding())


class Pki:
    def __init__(self, tmp: Path) -> None:
        self.root = pki.create_root_ca()
        self.tls = pki.create_controller_tls(self.root)
        self.signer = pki.create_controller_signing(self.root)
        self.tmp = tmp

    def server_ssl(self, tls: pki.Issued | None = None) -> ssl.SSLContext:
        tls = tls or self.tls
        cert, key = self.tmp / "tls.cert.pem", self.tmp / "tls.key.pem"
        pki.save_pem(tls, cert, key)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        return ctx

    def sealed(self, payload: bytes, signer: pki.Issued | None = None) -> bytes:
        s = signer or self.signer
        return signing.seal(payload, s.key, s.cert, served_pem=pki.cert_pem(s.cert)).SerializeToString()

    def certs_body(self, signer: pki.Issued | None = None) -> bytes:
        s = signer or self.signer
        ecdh = pki.create_controller_ecdh(self.root)
        return self.sealed(pki.controller_certs_message(s.cert, ecdh.cert).SerializeToString(), s)


async def _serve(routes: dict[str, Handler], ctx: ssl.SSLContext) -> tuple[web.AppRunner, str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"https://127.0.0.1:{port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


PREFIX = "/api/v2/edgedevice"
PROTO = "application/x-proto-binary"  # what EVE's client takes (P:cmd/client/client.go myPost)


def test_certs_then_signed_uuid_and_port_order(tmp_path: Path) -> None:
    k = Pki(tmp_path)
    seen: list[str] = []

    async def certs(_r: web.Request) -> web.Response:
        return web.Response(body=k.certs_body(), content_type=PROTO)

    async def uuid(r: web.Request) -> web.Response:
        from eden.wire.gen import auth_pb2, uuid_pb2

        container = auth_pb2.AuthContainer.FromString(await r.read())
        seen.append(container.senderCertHash.hex())
        return web.Response(body=k.sealed(uuid_pb2.UuidResponse(uuid="u-123").SerializeToString()), content_type=PROTO)

    async def scenario() -> None:
        runner, url = await _serve({f"{PREFIX}/certs": certs, f"{PREFIX}/uuid": uuid}, k.server_ssl())
        link = _link()
        try:
            async with Transport(k.root.cert_pem) as tr:
                dead = f"https://127.0.0.1:{_free_port()}"
                status, body = await tr.send(link, "certs", {}, [dead, url], device_uuid=None, timeout=2)
                assert status == 200 and link.signing  # learnt the signing cert through the second port
                status, body = await tr.send(link, "uuid", {}, [url], device_uuid=None, timeout=2)
                assert (status, body["uuid"]) == (200, "u-123")
                assert seen == [signing.cert_hash(link.device.cert).hex()]  # sealed with the device key
        finally:
            await runner.cleanup()

    _run(scenario())


def test_transport_errors_map_to_status_zero(tmp_path: Path) -> None:
    k = Pki(tmp_path)
    other = Pki(tmp_path / "other")

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, never answer: a dead link
        writer.close()

    async def certs_untrusted(_r: web.Request) -> web.Response:
        return web.Response(body=other.certs_body(), content_type=PROTO)

    async def scenario() -> None:
        blackhole = await asyncio.start_server(stall, "127.0.0.1", 0)
        hole = f"https://127.0.0.1:{blackhole.sockets[0].getsockname()[1]}"
        refused = f"https://127.0.0.1:{_free_port()}"
        wrong_tls, wrong_url = await _serve({f"{PREFIX}/certs": certs_untrusted}, k.server_ssl(other.tls))
        bad_certs, bad_url = await _serve({f"{PREFIX}/certs": certs_untrusted}, k.server_ssl())
        link = _link()
        try:
            async with Transport(k.root.cert_pem) as tr:
                send = lambda urls, t=2.0: tr.send(link, "certs", {}, urls, device_uuid=None, timeout=t)  # noqa: E731
                assert await send([refused]) == (0, {"error": "refused"})
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                assert await send([hole], 0.5) == (0, {"error": "timeout"})
                assert 0.4 < loop.time() - t0 < 2.0
                assert await send([hole, refused], 0.5) == (0, {"error": "refused"})  # remote reached on a port
                assert await send([wrong_url]) == (0, {"error": "tls"})  # not a silent accept
                assert await send([bad_url]) == (0, {"error": "signature"})  # signing cert not from our root
                assert not link.signing
                t0 = loop.time()
                assert await send([], 0.3) == (0, {"error": "network"})  # no port to try: an error at once
                assert loop.time() - t0 < 0.2
        finally:
            blackhole.close()
            await wrong_tls.cleanup()
            await bad_certs.cleanup()

    _run(scenario())


def test_response_signed_by_another_key_is_rejected(tmp_path: Path) -> None:
    k = Pki(tmp_path)
    rogue = pki.create_controller_signing(pki.create_root_ca("rogue"))

    async def certs(_r: web.Request) -> web.Response:
        return web.Response(body=k.certs_body(), content_type=PROTO)

    async def uuid(_r: web.Request) -> web.Response:
        from eden.wire.gen import uuid_pb2

        return web.Response(body=k.sealed(uuid_pb2.UuidResponse(uuid="evil").SerializeToString(), rogue), content_type=PROTO)

    async def scenario() -> None:
        runner, url = await _serve({f"{PREFIX}/certs": certs, f"{PREFIX}/uuid": uuid}, k.server_ssl())
        link = _link()
        try:
            async with Transport(k.root.cert_pem) as tr:
                assert (await tr.send(link, "certs", {}, [url], device_uuid=None, timeout=2))[0] == 200
                assert await tr.send(link, "uuid", {}, [url], device_uuid=None, timeout=2) == (0, {"error": "signature"})
        finally:
            await runner.cleanup()

    _run(scenario())


def _tls12_only(k: Pki, ciphers: str | None = None, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> ssl.SSLContext:
    ctx = k.server_ssl()
    ctx.minimum_version = ctx.maximum_version = version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


def test_tls_is_1_2_or_later_with_eve_suites_only(tmp_path: Path) -> None:
    """EVE's GetTLSConfig (spec §2.1): TLS >= 1.2; on TLS 1.2 only ECDHE-ECDSA-AES256-GCM-SHA384
    and ECDHE-RSA-AES128-GCM-SHA256 (the controller TLS key here is P-256: the first one)."""
    k = Pki(tmp_path)

    async def certs(_r: web.Request) -> web.Response:
        return web.Response(body=k.certs_body(), content_type=PROTO)

    async def scenario() -> None:
        servers = {
            "eve-suite": _tls12_only(k, "ECDHE-ECDSA-AES256-GCM-SHA384"),
            "other-suite": _tls12_only(k, "ECDHE-ECDSA-AES128-GCM-SHA256"),
            "cbc-suite": _tls12_only(k, "ECDHE-ECDSA-AES256-SHA384"),
            "tls13": _tls12_only(k, version=ssl.TLSVersion.TLSv1_3),
        }
        running = {name: await _serve({f"{PREFIX}/certs": certs}, ctx) for name, ctx in servers.items()}
        try:
            async with Transport(k.root.cert_pem) as tr:
                got = {name: (await tr.send(_link(), "certs", {}, [url], device_uuid=None, timeout=5))[0]
                       for name, (_runner, url) in running.items()}
                assert tr.ssl.minimum_version == ssl.TLSVersion.TLSv1_2
        finally:
            for runner, _url in running.values():
                await runner.cleanup()
        assert got == {"eve-suite": 200, "other-suite": 0, "cbc-suite": 0, "tls13": 200}

    _run(scenario())


def test_logs_go_to_newlogs_as_a_sealed_gzip(tmp_path: Path) -> None:
    """The node's Send "logs" is EVE's loguploader POST id/{uuid}/newlogs (§2), sealed like every
    POST, its payload a gzip of JSON LogEntry lines; 201 with no body is success."""
    import gzip
    import json

    k = Pki(tmp_path)
    got: list[bytes] = []

    async def newlogs(r: web.Request) -> web.Response:
        from eden.wire.gen import auth_pb2

        container = auth_pb2.AuthContainer.FromString(await r.read())
        got.append(container.protectedPayload.payload)
        return web.Response(status=201)

    async def scenario() -> None:
        runner, url = await _serve({f"{PREFIX}/id/u-9/newlogs": newlogs}, k.server_ssl())
        try:
            async with Transport(k.root.cert_pem) as tr:
                status, body = await tr.send(_link(), "logs", {"at": 77.0}, [url], device_uuid="u-9", timeout=2)
                assert (status, body) == (201, {})
        finally:
            await runner.cleanup()

    _run(scenario())
    assert len(got) == 1
    assert json.loads(gzip.decompress(got[0]).decode().splitlines()[0])["timestamp"]["seconds"] == 77


def test_eves_request_limits_a_dead_path_per_connect_a_hung_controller_per_port_and_a_cap(tmp_path: Path) -> None:
    """Spec §1 / eve/send.py: a port whose connect gets nowhere gives up after the dial timeout;
    a controller that takes the request and never answers costs each port the send timeout; the
    whole request stops at min(3 x send, 240 s), however many ports are left."""
    k = Pki(tmp_path)
    held: list[float] = []
    release = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # the TCP connect succeeds, the TLS handshake never does: a dead path
        writer.close()

    async def hung(_r: web.Request) -> web.Response:
        held.append(asyncio.get_running_loop().time())
        await release.wait()  # the controller took the request and does not answer
        return web.Response(status=204)

    async def scenario() -> None:
        blackhole = await asyncio.start_server(stall, "127.0.0.1", 0)
        hole = f"https://127.0.0.1:{blackhole.sockets[0].getsockname()[1]}"
        runner, url = await _serve({f"{PREFIX}/certs": hung}, k.server_ssl())
        loop = asyncio.get_running_loop()
        try:
            async with Transport(k.root.cert_pem) as tr:
                limits = SendTimeouts(dial=0.3, send=0.8)
                t0 = loop.time()
                assert await tr.send(_link(), "certs", {}, [hole, hole], device_uuid=None, timeout=limits) == (0, {"error": "timeout"})
                assert 0.55 < loop.time() - t0 < 1.2  # 2 x the dial timeout, not 2 x the send timeout
                t0 = loop.time()
                assert await tr.send(_link(), "certs", {}, [url], device_uuid=None, timeout=limits) == (0, {"error": "timeout"})
                assert 0.75 < loop.time() - t0 < 1.3  # connected, so the send timeout
                held.clear()
                t0 = loop.time()
                assert await tr.send(_link(), "certs", {}, [url] * 5, device_uuid=None, timeout=limits) == (0, {"error": "timeout"})
                assert 2.3 < loop.time() - t0 < 3.0 and len(held) == 3  # the cap: 3 x 0.8 s, two ports never tried
        finally:
            release.set()
            blackhole.close()
            await runner.cleanup()

    _run(scenario())


def test_certs_and_uuid_answers_are_taken_only_as_eves_client_takes_them(tmp_path: Path) -> None:
    """EVE's client (P:cmd/client/client.go ``myPost``, ``fetchCertChain``, ``doGetUUID``; spec §2.1
    "Per-endpoint answers"): a 200/201 counts only with a Content-Type that Go's
    ``mime.ParseMediaType`` reads as x-proto-binary, json or text/plain; the certs list then passes
    ``VerifyLeavesCertChainWithRootPEM`` with requireECDH (P:controllerconn/authen.go: exactly one
    signing cert, at least one ECDH exchange cert, no other type). The certs envelope itself is not
    verified (skipVerify). Anything else is refused and no signing cert is learnt."""
    from eden.wire.gen import certs_pb2, uuid_pb2

    k = Pki(tmp_path)
    ecdh = pki.create_controller_ecdh(k.root)
    rogue = pki.create_controller_signing(pki.create_root_ca("rogue"))
    signing_only = certs_pb2.ZControllerCert()
    signing_only.certs.add(type=certs_pb2.CERT_TYPE_CONTROLLER_SIGNING, cert=pki.cert_pem(k.signer.cert))
    two_signers = pki.controller_certs_message(k.signer.cert, ecdh.cert)
    two_signers.certs.add(type=certs_pb2.CERT_TYPE_CONTROLLER_SIGNING, cert=pki.cert_pem(k.signer.cert))
    foreign_type = pki.controller_certs_message(k.signer.cert, ecdh.cert)
    foreign_type.certs.add(type=certs_pb2.CERT_TYPE_DEVICE_ONBOARDING, cert=pki.cert_pem(k.signer.cert))
    answer: dict[str, Any] = {}

    async def certs(_r: web.Request) -> web.Response:
        body = answer.get("certs", k.certs_body())
        return web.Response(status=answer.get("status", 200), body=body, headers={"Content-Type": answer["ctype"]})

    async def uuid(_r: web.Request) -> web.Response:
        body = k.sealed(uuid_pb2.UuidResponse(uuid="u-1").SerializeToString())
        return web.Response(status=answer.get("status", 200), body=body, headers={"Content-Type": answer["ctype"]})

    async def scenario() -> None:
        runner, url = await _serve({f"{PREFIX}/certs": certs, f"{PREFIX}/uuid": uuid}, k.server_ssl())
        try:
            async with Transport(k.root.cert_pem) as tr:
                async def get(kind: str, **how: Any) -> tuple[int, dict[str, Any]]:
                    answer.clear()
                    answer.update(how)
                    return await tr.send(link, kind, {}, [url], device_uuid=None, timeout=5)

                for ctype in ("application/octet-stream", "text/html", "garbage; ; ;", "application/x-proto-binary; x"):
                    link = _link()
                    assert await get("certs", ctype=ctype) == (0, {"error": "signature"}), ctype
                    assert not link.signing
                for bad in (signing_only, two_signers, foreign_type):  # what EVE 16.12+ refuses
                    link = _link()
                    assert await get("certs", ctype=PROTO, certs=k.sealed(bad.SerializeToString())) == (0, {"error": "signature"})
                    assert not link.signing
                link = _link()
                assert (await get("certs", ctype=PROTO, certs=b""))[0] == 0  # no signing cert in an empty answer
                for ctype, status in ((PROTO, 201), ("Application/X-Proto-Binary; charset=binary", 200),
                                      ("text/plain; charset=utf-8", 200), ("application/json;", 200)):
                    link = _link()
                    assert (await get("certs", ctype=ctype, status=status))[0] == status, ctype
                    assert link.signing
                link = _link()  # the certs envelope is not verified: EVE takes one signed by another key
                other_envelope = k.sealed(pki.controller_certs_message(k.signer.cert, ecdh.cert).SerializeToString(), rogue)
                assert (await get("certs", ctype=PROTO, certs=other_envelope))[0] == 200 and link.signing
                status, body = await get("uuid", ctype=PROTO)
                assert (status, body["uuid"]) == (200, "u-1")
                assert await get("uuid", ctype="application/octet-stream") == (0, {"error": "signature"})
        finally:
            await runner.cleanup()

    _run(scenario())
