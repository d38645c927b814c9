"""``eden controller serve DIR``: HTTPS device API + plain-HTTP admin API in one asyncio loop."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import ssl
import sys
import time

from aiohttp import web

from eden.controller.admin import admin_app
from eden.controller.api import DeviceApi
from eden.controller.core import Controller
from eden.controller.layout import Layout, write_atomic
from eden.errors import InfrastructureError


def split_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def tls_context(layout: Layout) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(layout.cert("tls"), layout.key("tls"))
    return ctx


def _port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("site has no bound socket")


def _lock(layout: Layout) -> int:
    """One server per DIR: an exclusive lock on DIR/serve.lock, held until the process ends."""
    fd = os.open(layout.root / "serve.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InfrastructureError(f"another controller is already serving {layout.root}") from None
    return fd


async def serve(layout: Layout, listen: str, admin_listen: str) -> None:
    host, port = split_hostport(listen)
    ahost, aport = split_hostport(admin_listen)
    lock = _lock(layout)
    layout.serve_json.unlink(missing_ok=True)  # a stale file from a killed run must not look ready
    ctl = Controller(layout)
    device_app = web.Application(client_max_size=16 * 1024 * 1024)
    device_app.add_routes(DeviceApi(ctl).routes())
    runner = web.AppRunner(device_app, access_log=None, handle_signals=False, keepalive_timeout=75)
    admin_runner = web.AppRunner(admin_app(ctl, layout.read_token()), access_log=None, handle_signals=False)
    await runner.setup()
    await admin_runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port, ssl_context=tls_context(layout), backlog=1024).start()
        await web.TCPSite(admin_runner, ahost, aport).start()
        api_port, admin_port = _port(runner), _port(admin_runner)
        info = {
            "pid": os.getpid(),
            "api_url": f"https://{_urlhost(host)}:{api_port}", "api_port": api_port,
            "admin_url": f"http://{_urlhost(ahost)}:{admin_port}", "admin_port": admin_port,
            "dir": str(layout.root), "root_certificate": str(layout.root_cert), "token_file": str(layout.token),
            "started": time.time(),
        }
        write_atomic(layout.serve_json, json.dumps(info, indent=1).encode())
        print(f"eden controller ready api={info['api_url']} admin={info['admin_url']} pid={info['pid']}", flush=True)
        await stop.wait()
    finally:
        layout.serve_json.unlink(missing_ok=True)
        await runner.cleanup()
        await admin_runner.cleanup()
        ctl.close()
        os.close(lock)


def _urlhost(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def run(layout: Layout, listen: str, admin_listen: str) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(layout, listen, admin_listen))
    return 0
