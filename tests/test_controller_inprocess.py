"""The device API app in-process (still real TLS and SQLite), for what needs a patched bug."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from eden.controller import api as api_module
from eden.controller.api import DeviceApi
from eden.controller.core import Controller
from eden.controller.layout import Layout
from eden.controller.server import _port, tls_context
from eden.controller.setup import init
from eden.wire import codec, pki, signing
from eden.wire.gen import config_pb2


async def _scenario(root: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    layout = Layout(root)
    ctl = Controller(layout)
    ctl.preregister("S1", config={})
    runner = web.AppRunner(_app(ctl), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_context(layout)).start()
    base = f"https://127.0.0.1:{_port(runner)}/api/v2/edgedevice"
    device = pki.create_device("S1")
    onboard = pki.load_pem(layout.cert("onboard"), layout.key("onboard"))
    ctx = ssl.create_default_context(cafile=str(layout.root_cert))
    statuses: list[int] = []

    def sealed(payload: bytes, who: pki.Issued, cert: bool = False) -> bytes:
        return signing.seal(payload, who.key, who.cert, include_cert=cert).SerializeToString()

    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            reg = codec.encode_request("register", {"serial": "S1"}, device_cert_pem=pki.cert_pem(device.cert))[0]
            async with s.post(f"{base}/register", data=sealed(reg, onboard, True)) as r:
                statuses.append(r.status)
            uuid = ctl.model.devices[0].uuid
            body = sealed(config_pb2.ConfigRequest().SerializeToString(), device)

            def broken(kind: str, payload: bytes, **kw: Any) -> dict[str, Any]:
                raise RuntimeError("a bug in the decoder")

            monkeypatch.setattr(api_module.codec, "decode_request", broken)
            async with s.post(f"{base}/id/{uuid}/config", data=body) as r:
                statuses.append(r.status)
            monkeypatch.undo()
            async with s.get(f"{base}/ping") as r:
                statuses.append(r.status)
            async with s.post(f"{base}/id/{uuid}/config", data=body) as r:
                statuses.append(r.status)
    finally:
        await runner.cleanup()
        assert ctl.stats.summary()["config"]["status"] == {"200": 1, "500": 1}
        ctl.close()
    return statuses


def _app(ctl: Controller) -> web.Application:
    app = web.Application()
    app.add_routes(DeviceApi(ctl).routes())
    return app


def test_a_handler_bug_is_a_logged_500_and_the_server_keeps_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    init(tmp_path / "c")
    with caplog.at_level(logging.ERROR, logger="eden.controller"):
        statuses = asyncio.run(_scenario(tmp_path / "c", monkeypatch))
    assert statuses == [201, 500, 200, 200]
    assert any("a bug in the decoder" in (r.exc_text or str(r.exc_info)) for r in caplog.records)
