"""The controller under hostile clients (docs/security.md): identities, limits, timeouts, quotas,
bad bodies, the admin API. Every test runs a real `eden controller serve` over real TLS."""

from __future__ import annotations

import datetime as dt
import gzip
import http.client
import logging
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from eden.controller.client import AdminClient, AdminError
from eden.controller.core import Controller
from eden.controller.layout import Layout
from eden.controller.setup import init
from eden.controller.testing import PREFIX, DeviceClient, ServeProcess, controller_signing_cert
from eden.controller.transport import RateLimit
from eden.wire import pki
from eden.wire.gen import info_pb2

FAST = ("--limit", "header_timeout=1", "--limit", "body_timeout=1", "--limit", "max_body=100000",
        "--limit", "handshake_timeout=1")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("sec") / "c"
    init(root)
    with ServeProcess(root, args=FAST) as proc:
        yield proc
    log = (root / "serve.log").read_text()
    assert "Traceback" not in log, log[-3000:]


_n = 0


def _serial() -> str:
    global _n
    _n += 1
    return f"SEC-{_n:04d}"


def _onboarded(server: ServeProcess, admin: AdminClient, **kw: object) -> DeviceClient:
    dev = DeviceClient(server.layout.root, server.info["api_port"], _serial(), **kw)  # type: ignore[arg-type]
    admin.preregister(dev.serial, config={"items": {"timer.config.interval": 10}})
    dev.onboard_fully(controller_signing_cert(dev))
    return dev


def _tls(server: ServeProcess) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(server.layout.root_cert))
    raw = socket.create_connection(("127.0.0.1", server.info["api_port"]), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def _closed_within(sock: ssl.SSLSocket, seconds: float) -> tuple[bool, bytes]:
    """Read until the server closes; (closed in time, what it sent)."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except (TimeoutError, socket.timeout):
        return False, got
    except (ConnectionError, ssl.SSLError, OSError):
        return True, got
    return True, got


def _cert(not_before: dt.datetime, not_after: dt.datetime) -> pki.Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "dated device")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    return pki.Issued(cert=cert, key=key)


# ---------------------------------------------------------------------- 1, 2, 5: identity --
def test_identity_takeover_a_cert_registered_under_a_second_serial_is_409(server: ServeProcess) -> None:
    admin = server.admin()
    victim = _onboarded(server, admin)
    thief = DeviceClient(server.layout.root, server.info["api_port"], _serial(), device=victim.device)
    admin.preregister(thief.serial)
    try:
        assert thief.register() == 409
        assert victim.register() == 200  # EVE re-registers on every boot: idempotent
        status, _ = victim.post("config", b"")
        assert status == 200  # the victim still owns its identity
        assert admin.device(thief.serial)["registered"] is False
        assert any(e["kind"] == "register_refused" and e["serial"] == thief.serial for e in admin.events())
    finally:
        victim.close()
        thief.close()


def test_onboarding_cert_registered_as_a_device_cert_is_refused(server: ServeProcess) -> None:
    admin = server.admin()
    onboard = pki.load_pem(server.layout.cert("onboard"), server.layout.key("onboard"))
    bad = DeviceClient(server.layout.root, server.info["api_port"], _serial(), device=onboard)
    admin.preregister(bad.serial)
    good = DeviceClient(server.layout.root, server.info["api_port"], _serial())
    admin.preregister(good.serial)
    try:
        assert bad.register() == 409
        assert good.register() == 201  # nobody is locked out
    finally:
        bad.close()
        good.close()


def test_onboarding_cert_stored_by_an_older_controller_locks_nobody_out(tmp_path: Path) -> None:
    root = tmp_path / "c"
    init(root)
    ctl = Controller(Layout(root))
    _c, i = ctl.preregister("OLD-1")
    ctl.model.devices[i].cert = pki.cert_pem(pki.load_cert(Layout(root).cert("onboard"))).decode()
    ctl.commit([i], [])
    ctl.close()
    with ServeProcess(root) as proc:
        proc.admin().preregister("NEW-1")
        dev = DeviceClient(root, proc.info["api_port"], "NEW-1")
        try:
            assert dev.register() == 201
            assert proc.admin().device("OLD-1")["registered"] is False
        finally:
            dev.close()


def test_expired_or_not_yet_valid_device_certs_are_401_unless_accepted(tmp_path: Path) -> None:
    root = tmp_path / "c"
    init(root)
    now = dt.datetime.now(dt.timezone.utc)
    expired = _cert(now - dt.timedelta(days=10), now - dt.timedelta(days=1))
    future = _cert(now + dt.timedelta(days=1), now + dt.timedelta(days=10))
    with ServeProcess(root) as proc:
        admin = proc.admin()
        for serial, cert in (("EXP-1", expired), ("FUT-1", future)):
            admin.preregister(serial)
            dev = DeviceClient(root, proc.info["api_port"], serial, device=cert)
            try:
                assert dev.register() == 401
            finally:
                dev.close()
        assert admin.device("EXP-1")["registered"] is False
    with ServeProcess(root, args=("--accept-expired-certs",)) as proc:
        dev = DeviceClient(root, proc.info["api_port"], "EXP-1", device=expired)
        try:
            assert dev.register() == 201  # a lab told the controller so
        finally:
            dev.close()


# ------------------------------------------------------------------- 3: slow clients --
def test_a_stalled_tls_handshake_is_closed_after_the_handshake_timeout(server: ServeProcess) -> None:
    raw = socket.create_connection(("127.0.0.1", server.info["api_port"]), timeout=10)
    try:
        raw.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
        t0 = time.monotonic()
        raw.settimeout(8)
        try:
            while raw.recv(4096):
                pass
        except ConnectionError:
            pass
        assert time.monotonic() - t0 < 5
    finally:
        raw.close()


def test_a_stalled_request_head_is_closed_after_the_header_timeout(server: ServeProcess) -> None:
    sock = _tls(server)
    try:
        sock.sendall(b"POST /api/v2/edgedevice/register HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        closed, _ = _closed_within(sock, 8)
        assert closed and time.monotonic() - t0 < 5
    finally:
        sock.close()


def test_a_stalled_request_body_is_408_after_the_body_timeout(server: ServeProcess) -> None:
    sock = _tls(server)
    try:
        sock.sendall(b"POST /api/v2/edgedevice/register HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 10)
        closed, got = _closed_within(sock, 8)
        assert closed and got.startswith(b"HTTP/1.1 408"), got[:100]
    finally:
        sock.close()


def test_the_header_timeout_spares_idle_keepalive_connections_and_long_polls(server: ServeProcess) -> None:
    dev = DeviceClient(server.layout.root, server.info["api_port"], "KEEPALIVE")
    try:
        assert dev.raw("GET", f"{PREFIX}/ping")[0] == 200
        sock = dev.conn.sock
        time.sleep(2.5)  # idle between requests: the keep-alive timeout (75 s) applies, not the 1 s head deadline
        assert dev.raw("GET", f"{PREFIX}/ping")[0] == 200 and dev.conn.sock is sock  # the same connection
    finally:
        dev.close()
    admin = server.admin()
    t0 = time.monotonic()
    assert admin.events(since=10**9, wait=2.5) == []  # a handler running longer than the head deadline
    assert time.monotonic() - t0 >= 2.4


def test_connection_caps_refuse_a_flood_and_the_apis_keep_serving(tmp_path: Path) -> None:
    root = tmp_path / "c"
    init(root)
    with ServeProcess(root, args=("--limit", "max_connections_per_client=8", "--limit", "max_connections=10")) as proc:
        held = [_tls(proc) for _ in range(8)]
        try:
            extra = _tls(proc)  # the handshake completes, then the server closes it at once
            closed, got = _closed_within(extra, 5)
            assert closed and got == b""
            extra.close()
            assert proc.admin().stats() is not None  # the admin API has its own cap
        finally:
            for s in held:
                s.close()
        deadline = time.monotonic() + 10
        while True:  # closed connections are given back
            dev = DeviceClient(root, proc.info["api_port"], "X")
            try:
                if dev.raw("GET", f"{PREFIX}/ping")[0] == 200:
                    break
            except (ConnectionError, http.client.HTTPException, OSError):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            finally:
                dev.close()
    assert "connection from 127.0.0.1 refused" in (root / "serve.log").read_text()


def test_a_flood_of_one_log_message_is_summarised() -> None:
    records: list[logging.LogRecord] = []
    limit = RateLimit(burst=5, window=0.3)
    for n in range(1000):
        rec = logging.LogRecord("eden.controller.transport", logging.WARNING, __file__, 1, "closed %s", (n,), None)
        if limit.filter(rec):
            records.append(rec)
    assert len(records) == 5
    time.sleep(0.35)
    rec = logging.LogRecord("eden.controller.transport", logging.WARNING, __file__, 1, "closed %s", (1,), None)
    assert limit.filter(rec) and "995 similar lines suppressed" in rec.getMessage()
    try:
        raise ConnectionResetError("peer gone")
    except ConnectionResetError:
        rec = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", None, sys.exc_info())
    assert limit.filter(rec) and rec.exc_info is None and "peer gone" in rec.getMessage()


# ------------------------------------------------------------------------ 4: quotas --
def test_log_and_info_quotas_answer_429_and_logs_and_info_events_are_retained(tmp_path: Path) -> None:
    root = tmp_path / "c"
    init(root)
    args = ("--limit", "log_bytes_per_s=1", "--limit", "log_burst_bytes=50000", "--limit", "log_retention_bytes=25000",
            "--limit", "info_per_s=0.01", "--limit", "info_burst=30", "--limit", "info_events_kept=4")
    with ServeProcess(root, args=args) as proc:
        admin = proc.admin()
        dev = _onboarded(proc, admin)
        try:
            blob = gzip.compress(os.urandom(10000))
            path = f"{PREFIX}/id/{dev.uuid}/newlogs"
            statuses = [dev.raw("POST", path, dev.seal(blob))[0] for _ in range(8)]
            assert statuses[:4] == [201] * 4 and statuses[-1] == 429
            msg = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_DEVICE, devId=dev.uuid)
            msg.atTimeStamp.seconds = 50
            msg.dinfo.restartCounter = 1
            statuses = [dev.post("info", msg.SerializeToString())[0] for _ in range(32)]
            assert statuses == [201] * 30 + [429] * 2
            kept = [e for e in admin.events() if e["kind"] == "info" and e["serial"] == dev.serial]
            assert 4 <= len(kept) < 8 and kept[-1]["data"]["count"] == 30  # retention keeps the newest
        finally:
            dev.close()
    import sqlite3

    db = sqlite3.connect(str(root / "controller.db"))
    stored = db.execute("SELECT SUM(LENGTH(data)) FROM logs WHERE serial=?", (dev.serial,)).fetchone()[0]
    assert 0 < stored <= 25000


# ----------------------------------------------------------------------- 6: bad bodies --
def test_bad_bodies_are_400_408_413_never_500(server: ServeProcess) -> None:
    dev = DeviceClient(server.layout.root, server.info["api_port"], "BODY")
    try:
        bomb = gzip.compress(b"\0" * (50 << 20))
        dev.conn.request("POST", f"{PREFIX}/register", body=bomb, headers={"Content-Encoding": "gzip"})
        resp = dev.conn.getresponse()
        assert resp.status == 400 and b"Content-Encoding" in resp.read()
        dev.close()
        dev.conn.request("POST", f"{PREFIX}/register", body=b"x" * 200_000)
        resp = dev.conn.getresponse()
        assert resp.status == 413
        resp.read()
    finally:
        dev.close()
    sock = _tls(server)  # a client gone mid-body
    sock.sendall(b"POST /api/v2/edgedevice/register HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 100)
    sock.close()
    sock = _tls(server)  # a malformed request: one log line
    sock.sendall(b"\x00\x01 NOT HTTP\r\n\r\n")
    closed, got = _closed_within(sock, 5)
    sock.close()
    assert closed and got[:12] in (b"HTTP/1.1 400", b"HTTP/1.0 400"), got[:80]
    time.sleep(0.3)
    assert "Traceback" not in (server.layout.root / "serve.log").read_text()
    assert server.admin().stats()  # still serving


# --------------------------------------------------------------------- 9, 10: admin API --
def test_content_by_path_only_from_a_content_from_directory(tmp_path: Path) -> None:
    root = tmp_path / "c"
    init(root)
    allowed = tmp_path / "images"
    allowed.mkdir()
    (allowed / "os.img").write_bytes(b"image bytes")
    (allowed / "shadow").symlink_to("/etc/passwd")
    with ServeProcess(root) as proc:
        with pytest.raises(AdminError) as exc:
            proc.admin().add_content("os", "/etc/passwd")
        assert exc.value.status == 403
        assert proc.admin().add_content("os", allowed / "os.img", upload=True)["size"] == 11  # uploads still work
    with ServeProcess(root, args=("--content-from", str(allowed))) as proc:
        admin = proc.admin()
        for path in ("/etc/passwd", "/proc/self/environ", str(allowed / "shadow"), str(allowed / ".." / "c" / "admin.token")):
            with pytest.raises(AdminError) as exc:
                admin.request("POST", "/v1/content", {"name": "x", "path": path})
            assert exc.value.status == 403, path
        assert admin.add_content("os2", allowed / "os.img", "1.0")["size"] == 11
        assert len(admin.content()) == 2


def test_non_ascii_authorization_is_401(server: ServeProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.info["admin_port"], timeout=10)
    try:
        conn.putrequest("GET", "/v1/devices")
        conn.putheader("Authorization", "Bearer \xe9\xff".encode("latin-1"))
        conn.endheaders()
        assert conn.getresponse().status == 401
        conn.close()
        conn.putrequest("GET", "/v1/devices")
        conn.putheader("Authorization", "Bearer ♥".encode())
        conn.endheaders()
        assert conn.getresponse().status == 401
    finally:
        conn.close()


def test_admin_listen_off_loopback_needs_admin_public_and_is_tls(tmp_path: Path) -> None:
    root = tmp_path / "c"
    init(root)
    cmd = [sys.executable, "-m", "eden.cli", "controller", "serve", str(root), "--listen", "127.0.0.1:0",
           "--admin-listen", "0.0.0.0:0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--admin-public" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    # ServeProcess passes --admin-listen 127.0.0.1:0; a second --admin-listen overrides it
    with ServeProcess(root, args=("--admin-listen", "0.0.0.0:0", "--admin-public")) as proc:
        assert proc.info["admin_url"].startswith("https://127.0.0.1:")
        assert proc.admin().devices() == []
        plain = http.client.HTTPConnection("127.0.0.1", proc.info["admin_port"], timeout=10)
        try:
            with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
                plain.request("GET", "/v1/devices")
                plain.getresponse()
        finally:
            plain.close()
    assert "not loopback" in (root / "serve.log").read_text()


@pytest.mark.parametrize("flags, message", [
    (("--limit", "bogus=1"), "--limit wants NAME=VALUE"),
    (("--limit", "max_body=lots"), "is not an integer"),
    (("--limit", "header_timeout=-1"), "positive finite"),
    (("--limit", "header_timeout=nan"), "positive finite"),
    (("--content-from", "/nonexistent-dir"), "not a directory"),
])
def test_bad_serve_options_exit_2_with_a_message(tmp_path: Path, flags: tuple[str, ...], message: str) -> None:
    root = tmp_path / "c"
    init(root)
    done = subprocess.run([sys.executable, "-m", "eden.cli", "controller", "serve", str(root), "--listen", "127.0.0.1:0",
                           *flags], capture_output=True, text=True, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 2 and message in out and "Traceback" not in out, out
