"""The agent's device-side wire behaviour is EVE's (spec §2.1, §2.2; P:cmd/client/client.go,
P:controllerconn/send.go): certs once per boot, register result ignored, uuid twice after a
failed register, EVE's headers, and the controller certs kept across a reboot.

A small real HTTPS server records every request; the real node model drives the agent.
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict
from test_agent_transport import PREFIX, PROTO, Pki, _serve

from eden.agent import driver as driver_mod
from eden.agent.driver import AgentDriver, PortUrls
from eden.agent.spec import AgentSpec
from eden.agent.state import StateDir
from eden.agent.transport import DeviceLink, Transport
from eden.wire import pki
from eden.wire.gen import auth_pb2, config_pb2, register_pb2, uuid_pb2
from until import until

SPEC = {"serial": "onb-1", "profile": "qemu-x86_64", "image": "base", "images": {"base": {"version": "13.4.0"}}, "boot_time": 1.0}
DEVICE_UUID = "3c1b4d8e-59a2-4f0e-9c57-1b2a6f1e0d11"


class Recorder:
    """An EVE controller stand-in that answers register/uuid as told and logs each request."""

    def __init__(self, k: Pki, register: int, uuid_failures: int, certs_failures_after_first: int = 0,
                 certs_status: int = 200) -> None:
        self.k = k
        self.certs_status = certs_status
        self.certs_failures = certs_failures_after_first
        self.register_status = register
        self.uuid_failures = uuid_failures
        self.log: list[tuple[str, str, CIMultiDict[str]]] = []  # (method, endpoint, headers)
        self.registers: list[bytes] = []  # ZRegisterMsg payloads

    def routes(self) -> dict[str, Any]:
        async def any_request(r: web.Request) -> web.Response:
            endpoint = r.path.rsplit("/", 1)[-1]
            self.log.append((r.method, endpoint, CIMultiDict(r.headers)))  # names are case-insensitive
            body = await r.read()
            if endpoint == "certs":
                if self.wire().count("certs") > 1 and self.certs_failures > 0:
                    self.certs_failures -= 1
                    return web.Response(status=503)
                return web.Response(status=self.certs_status, body=self.k.certs_body(), content_type=PROTO)
            if endpoint == "register":
                self.registers.append(auth_pb2.AuthContainer.FromString(body).protectedPayload.payload)
                return web.Response(status=self.register_status)
            if endpoint == "uuid":
                if self.uuid_failures > 0:
                    self.uuid_failures -= 1
                    return web.Response(status=404)
                return web.Response(body=self.k.sealed(uuid_pb2.UuidResponse(uuid=DEVICE_UUID).SerializeToString()), content_type=PROTO)
            return web.Response(status=404)

        return {f"{PREFIX}/{{tail:.*}}": any_request}

    def wire(self) -> list[str]:
        return [endpoint for _m, endpoint, _h in self.log]

    def onboarded_at(self) -> int:
        """Index of the last uuid request (the one that got the UUID)."""
        return max(n for n, e in enumerate(self.wire()) if e == "uuid")

    def onboarding(self) -> list[str]:
        return self.wire()[: self.onboarded_at() + 1]

    def zedagent(self) -> list[str]:
        return self.wire()[self.onboarded_at() + 1:]


def _driver(tmp: Path, k: Pki, tr: Transport, url: str, events: list[tuple[str, dict[str, Any]]],
            spec: dict[str, Any] = SPEC) -> AgentDriver:
    s = AgentSpec.model_validate(spec)
    state = StateDir(tmp / s.serial)
    state.init(s)
    link = DeviceLink(device=state.device_identity(), onboard=pki.create_onboarding(), serial=s.serial,
                      soft_serial=state.soft_serial(), checkpoint=state.certs_checkpoint)
    tr.load_checkpoint(link)
    return AgentDriver(spec=s, params=s.node_params(), state=state, transport=tr, link=link, urls=PortUrls(default=url),
                       events=lambda _dev, what, data: events.append((what, dict(data))))


def _onboard(tmp: Path, register: int, uuid_failures: int, *, certs_failures: int = 0,
             zedagent_certs: int = 1, certs_status: int = 200) -> tuple[Recorder, list[tuple[str, dict[str, Any]]]]:
    k = Pki(tmp)
    rec = Recorder(k, register, uuid_failures, certs_failures, certs_status)
    events: list[tuple[str, dict[str, Any]]] = []

    async def run() -> None:
        runner, url = await _serve(rec.routes(), k.server_ssl())
        try:
            async with Transport(k.root.cert_pem) as tr:
                drv = _driver(tmp, k, tr, url, events)
                drv.start()
                await until(lambda: any(w == "onboarded" for w, _ in events), 15)
                await until(lambda: "config" in rec.wire() and rec.zedagent().count("certs") >= zedagent_certs, 5)
                drv.power_off()
                await drv.wait()
        finally:
            await runner.cleanup()

    asyncio.run(asyncio.wait_for(run(), 30))
    return rec, events


def test_refused_register_is_ignored_and_uuid_is_posted_twice(tmp_path: Path) -> None:
    rec, events = _onboard(tmp_path, register=409, uuid_failures=3)
    # certs once per boot; each failed attempt: register, then uuid twice
    assert rec.onboarding() == ["certs", "register", "uuid", "uuid", "register", "uuid", "uuid"]
    assert [d["status"] for w, d in events if w == "register_refused"] == [409, 409]
    assert ("onboarded", {"uuid": DEVICE_UUID}) in events
    # zedagent's certs task fetches once at its start (P:cmd/zedagent/handlecertconfig.go)
    assert rec.zedagent().count("certs") == 1


def test_a_201_certs_answer_is_taken_by_the_client(tmp_path: Path) -> None:
    """EVE's client takes a certs answer with 200 or 201 (P:cmd/client/client.go ``myPost`` counts
    both as done and ``fetchCertChain`` refuses only 400/401/404/501; spec §2.1 table, GET certs):
    the first attempt goes on to register and uuid. (zedagent wants exactly 200; its task only
    retries sooner.)"""
    rec, events = _onboard(tmp_path, register=201, uuid_failures=0, certs_status=201)
    assert rec.onboarding() == ["certs", "register", "uuid"]
    assert any(w == "onboarded" for w, _ in events)


def test_register_is_sent_again_on_every_attempt_even_after_a_201(tmp_path: Path) -> None:
    """§1 Onboarding (P:cmd/client/client.go ``selfRegister``): register reports not-done for
    every HTTP answer, 201 included, so each failed attempt is register + uuid + uuid."""
    rec, events = _onboard(tmp_path, register=201, uuid_failures=2)
    assert rec.onboarding() == ["certs", "register", "uuid", "uuid", "register", "uuid"]
    assert not [d for w, d in events if w == "register_refused"]


def test_zedagent_refetches_certs_on_the_short_timer_while_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver_mod, "CERTS_RETRY", 1.0)  # EVE: 120 s; U[0.3, 1] x that
    rec, _events = _onboard(tmp_path, register=201, uuid_failures=0, certs_failures=1, zedagent_certs=2)
    assert rec.onboarding() == ["certs", "register", "uuid"]
    assert rec.zedagent().count("certs") == 2  # the failed start fetch, then one on the short timer


def test_headers_are_evees(tmp_path: Path) -> None:
    rec, _events = _onboard(tmp_path, register=201, uuid_failures=0)
    ids = [h.get("X-Request-Id", "") for _m, _e, h in rec.log]
    assert all(str(uuidlib.UUID(i)) == i for i in ids) and len(set(ids)) == len(ids)  # a fresh UUID each
    for n, (method, endpoint, headers) in enumerate(rec.log):
        assert ("Content-Type" in headers) == (method == "POST"), (method, endpoint)
        if method == "POST":
            assert headers["Content-Type"] == "application/x-proto-binary"
        before_uuid = n <= rec.onboarded_at()
        assert (headers.get("X-Serial-Number") == "onb-1") == before_uuid, (endpoint, headers)
        assert ("X-Soft-Serial" in headers) == before_uuid
    soft = {h["X-Soft-Serial"] for _m, _e, h in rec.log if "X-Soft-Serial" in h}
    assert len(soft) == 1 and uuidlib.UUID(next(iter(soft)))
    msg = register_pb2.ZRegisterMsg()
    msg.ParseFromString(rec.registers[0])
    assert (msg.serial, msg.softSerial) == ("onb-1", soft.pop())  # the same soft serial in the body


def test_certs_checkpoint_survives_a_reboot_and_a_miss_refetches(tmp_path: Path) -> None:
    """The next boot verifies signed answers before any certs fetch (the onboarding fast path
    skips it); a signed answer from an unknown signing cert fails and triggers a refetch."""
    k = Pki(tmp_path)
    rotated = pki.create_controller_signing(k.root)
    signer = {"now": k.signer}
    fetched: list[str] = []

    async def certs(_r: web.Request) -> web.Response:
        fetched.append("certs")
        return web.Response(body=k.certs_body(signer["now"]), content_type=PROTO)

    async def config(_r: web.Request) -> web.Response:
        cfg = config_pb2.ConfigResponse(config=config_pb2.EdgeDevConfig(id=config_pb2.UUIDandVersion(uuid=DEVICE_UUID, version="1")),
                                        configHash="h1")
        return web.Response(body=k.sealed(cfg.SerializeToString(), signer["now"]), content_type=PROTO)

    def link() -> DeviceLink:
        state = StateDir(tmp_path / "dev")
        state.path.mkdir(exist_ok=True)
        return DeviceLink(device=pki.create_device("cp-1"), onboard=pki.create_onboarding(), checkpoint=state.certs_checkpoint)

    async def run() -> None:
        runner, url = await _serve({f"{PREFIX}/certs": certs, f"{PREFIX}/id/{DEVICE_UUID}/config": config}, k.server_ssl())
        try:
            async with Transport(k.root.cert_pem) as tr:
                first = link()
                assert not tr.load_checkpoint(first)  # nothing kept yet
                assert (await tr.send(first, "certs", {}, [url], device_uuid=None, timeout=5))[0] == 200
                assert first.checkpoint is not None and first.checkpoint.is_file()
            async with Transport(k.root.cert_pem) as tr:  # a new process: the next boot
                again = link()
                assert tr.load_checkpoint(again) and again.signing == first.signing
                status, body = await tr.send(again, "config", {"hash": "", "token": None}, [url], device_uuid=DEVICE_UUID, timeout=5)
                assert status == 200 and body.get("error") is None and fetched == ["certs"]
                # the controller's signing cert changes: one failed poll, certs fetched at once, next poll fine
                signer["now"] = rotated
                assert await tr.send(again, "config", {"hash": "", "token": None}, [url], device_uuid=DEVICE_UUID, timeout=5) == (
                    0, {"error": "signature"})
                assert fetched == ["certs", "certs"]
                assert (await tr.send(again, "config", {"hash": "", "token": None}, [url], device_uuid=DEVICE_UUID, timeout=5))[0] == 200
            async with Transport(k.root.cert_pem) as tr:  # the checkpoint holds the rotated cert now
                third = link()
                assert tr.load_checkpoint(third) and set(third.signing) == set(again.signing) != set(first.signing)
        finally:
            await runner.cleanup()

    asyncio.run(asyncio.wait_for(run(), 30))


def test_a_checkpoint_that_does_not_chain_to_the_root_is_not_believed(tmp_path: Path) -> None:
    k, other = Pki(tmp_path), Pki(tmp_path)
    path = tmp_path / "checkpoint" / "controllercerts"
    path.parent.mkdir()
    path.write_bytes(pki.controller_certs_message(other.signer.cert, pki.create_controller_ecdh(other.root).cert).SerializeToString())
    link = DeviceLink(device=pki.create_device("cp-2"), onboard=pki.create_onboarding(), checkpoint=path)
    assert not Transport(k.root.cert_pem).load_checkpoint(link) and not link.signing
    path.write_bytes(b"\x00garbage")
    assert not Transport(k.root.cert_pem).load_checkpoint(link) and not link.signing
