"""``eden controller serve DIR``: HTTPS device API + plain-HTTP admin API in one asyncio loop."""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import json
import logging
import os
import signal
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from eden.controller.admin import admin_app
from eden.controller.api import DeviceApi
from eden.controller.core import Controller
from eden.controller.layout import Layout, ServeInfo, write_atomic
from eden.controller.limits import Limits
from eden.controller.transport import Gate, GuardedSite, RateLimit, body_guard, bound_tls_buffers, middleware
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


@dataclass(frozen=True)
class Options:
    """What ``eden controller serve`` is told beyond DIR and the addresses (docs/security.md)."""

    limits: Limits = field(default_factory=Limits)
    accept_expired_certs: bool = False  # lab: accept expired or not-yet-valid device certs at register
    content_from: tuple[Path, ...] = ()  # directories the admin API may register content from by path
    admin_public: bool = False  # allow a non-loopback admin address (then served over TLS)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def clean_partial_uploads(layout: Layout) -> list[Path]:
    """Temp files a killed controller left in the datastore (an upload or a copy cut short)."""
    if not layout.content_dir.is_dir():
        return []
    stale = [p for pat in (".upload.*", ".incoming.*") for p in layout.content_dir.glob(pat)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


async def serve(layout: Layout, listen: str, admin_listen: str, options: Options | None = None) -> None:
    opts = options or Options()
    lim = opts.limits
    host, port = split_hostport(listen)
    ahost, aport = split_hostport(admin_listen)
    admin_tls = not is_loopback(ahost)
    if admin_tls and not opts.admin_public:
        raise ValueError(f"--admin-listen {admin_listen} is not a loopback address: the admin API gives full control "
                         "of every device; pass --admin-public to serve it there (over TLS)")
    lock = _lock(layout)
    layout.serve_json.unlink(missing_ok=True)  # a stale file from a killed run must not look ready
    for stale in clean_partial_uploads(layout):
        logging.getLogger("eden.controller").warning("removed a partial upload left by a killed controller: %s", stale.name)
    bound_tls_buffers(lim)
    ctl = Controller(layout, limits=lim, accept_expired_certs=opts.accept_expired_certs, content_from=list(opts.content_from))
    gate, admin_gate = Gate(lim, "device API"), Gate(lim, "admin API")
    device_app = web.Application(client_max_size=lim.max_body, middlewares=[middleware(gate), body_guard(lim)])
    device_app.add_routes(DeviceApi(ctl).routes())
    runner = web.AppRunner(device_app, access_log=None, handle_signals=False, keepalive_timeout=lim.keepalive_timeout, lingering_time=2.0,
                           auto_decompress=False)
    app = admin_app(ctl, layout.read_token())
    app.middlewares.insert(0, middleware(admin_gate))
    app.middlewares.insert(1, body_guard(lim, read=False))
    admin_runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=lim.keepalive_timeout, lingering_time=2.0,
                                 auto_decompress=False)
    await runner.setup()
    await admin_runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await GuardedSite(runner, host, port, gate, ssl_context=tls_context(layout), backlog=1024).start()
        await GuardedSite(admin_runner, ahost, aport, admin_gate, ssl_context=tls_context(layout) if admin_tls else None).start()
        if admin_tls:
            logging.getLogger("eden.controller").warning("the admin API listens on %s (not loopback), over TLS", admin_listen)
        api_port, admin_port = _port(runner), _port(admin_runner)
        info: ServeInfo = {
            "pid": os.getpid(),
            "api_url": f"https://{_urlhost(host)}:{api_port}", "api_port": api_port,
            "admin_url": f"{'https' if admin_tls else 'http'}://{_urlhost(ahost)}:{admin_port}", "admin_port": admin_port,
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


def run(layout: Layout, listen: str, admin_listen: str, options: Options | None = None) -> int:
    lim = (options or Options()).limits
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RateLimit(lim.log_burst, lim.log_window))
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(layout, listen, admin_listen, options))
    return 0
