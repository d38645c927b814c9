#!/usr/bin/env python3
"""The controller under hostile clients: a fuzz run and a slow-client run (docs/security.md).

    python benchmarks/bench_security.py                       # 5,000 fuzz requests, 1,000 idle, 1,000 stalled
    python benchmarks/bench_security.py --fuzz 20000 --idle 2000 --json

Everything targets a real ``eden controller serve`` subprocess on 127.0.0.1 (``ServeProcess``).

fuzz     malformed requests in many classes against both APIs (random and mutated AuthContainers,
         bodies over the cap, gzip bombs, bad Content-Encoding, malformed request lines and
         headers, random paths, bad admin JSON and tokens). Prints requests tried, answers by
         status class, 5xx count (target 0) and tracebacks in the controller's log (target 0).
idle     N TLS connections opened and left idle: the controller's RSS before, with them, and after
         they close, and a ping's latency while they are held. The per-client cap is raised for
         this phase (every client here is 127.0.0.1); the default cap refusing the surplus is
         shown by ``refused at the default cap``.
stalled  N connections that send half a request head and stop (slowloris): seconds until the
         controller closed them all (header timeout), log bytes written meanwhile, ping latency.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import random
import socket
import ssl
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eden.controller.limits import Limits  # noqa: E402
from eden.controller.setup import init  # noqa: E402
from eden.controller.testing import PREFIX, DeviceClient, ServeProcess, controller_signing_cert  # noqa: E402
from eden.wire import codec  # noqa: E402
from eden.wire.gen import config_pb2  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tls_socket(server: ServeProcess, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.info["api_port"]), timeout=30)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def ping_ms(server: ServeProcess) -> float:
    dev = DeviceClient(server.layout.root, server.info["api_port"], "PING")
    try:
        t0 = time.perf_counter()
        status, _ = dev.raw("GET", f"{PREFIX}/ping")
        assert status == 200, status
        return (time.perf_counter() - t0) * 1000
    finally:
        dev.close()


# -------------------------------------------------------------------------------- fuzz --
def fuzz_cases(rng: random.Random, dev: DeviceClient, valid: list[bytes], token: str) -> list[tuple[str, str, str, bytes, dict[str, str]]]:
    """(class, api, method+path, body, headers) for one request of each class."""
    uuid = dev.uuid or ""
    paths = [f"{PREFIX}/register", f"{PREFIX}/uuid", *(f"{PREFIX}/id/{uuid}/{k}" for k in
             ("config", "attest", "info", "metrics", "newlogs", "logs"))]
    path = rng.choice(paths)
    body = rng.choice(valid)
    flipped = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
    bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    admin_paths = ["/v1/devices", "/v1/bulk/devices", "/v1/items", "/v1/content", "/v1/settings/learn",
                   "/v1/devices/FUZZ/items", "/v1/devices/FUZZ/baseos", "/v1/devices/FUZZ/apps/x", "/v1/templates/1/approve"]
    junk_json = rng.choice([b"{", b"[]", b"null", b'{"serial": 5}', b'{"items": "x"}', b'{"devices": [1, 2]}',
                            b'{"name": "\\u0000", "path": "/etc/shadow"}', b'{"learn": []}', os.urandom(40)])
    return [
        ("random bytes", "api", "POST " + path, os.urandom(rng.randint(0, 400)), {}),
        ("bit-flipped container", "api", "POST " + path, bytes(flipped), {}),
        ("truncated container", "api", "POST " + path, body[: rng.randrange(len(body))], {}),
        ("container on the wrong path", "api", "POST " + rng.choice(paths), body, {}),
        ("random path", "api", rng.choice(["GET ", "POST ", "PUT ", "DELETE "]) + PREFIX + "/" + rng.choice(
            ["id/x/config", "id//config", "../../etc/passwd", "%00", "id/" + "a" * 2000 + "/info",
             "eden/datastore/sha256/" + "0" * 64, "certs?x=" + "y" * 5000]), body, {}),
        ("bad Content-Encoding", "api", "POST " + path, body, {"Content-Encoding": rng.choice(["gzip", "br", "x" * 50, "deflate"])}),
        ("gzip bomb", "api", "POST " + path, BOMB, {"Content-Encoding": "gzip"}),
        ("body over the cap", "api", "POST " + path, b"\0" * (Limits().max_body + 1), {}),
        ("odd headers", "api", "POST " + path, body, {"X-Junk": "\xe9\xff" * rng.randint(1, 50), "Content-Type": "\xff"}),
        ("admin without token", "admin", rng.choice(["GET ", "POST ", "PUT "]) + rng.choice(admin_paths), junk_json, {}),
        ("admin non-ASCII token", "admin", "GET /v1/devices", b"", {"Authorization": "Bearer \xe9\xff"}),
        ("admin bad JSON", "admin", rng.choice(["POST ", "PUT "]) + rng.choice(admin_paths), junk_json, bearer),
    ]


BOMB = gzip.compress(b"\0" * (64 << 20))


def raw_requests(server: ServeProcess, rng: random.Random, n: int) -> Counter[str]:
    """Malformed HTTP itself, over raw TLS sockets: what the server answers (status line) or 'closed'."""
    ctx = ssl.create_default_context(cafile=str(server.layout.root_cert))
    out: Counter[str] = Counter()
    heads = [b"\x00\x01\x02 / HTTP/1.1\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
             b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
             b"GET / HTTP/1.1\r\n" + b"X: " + b"b" * 70000 + b"\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"]
    for _ in range(n):
        sock = tls_socket(server, ctx)
        try:
            sock.sendall(rng.choice(heads))
            sock.settimeout(15)
            got = sock.recv(64)
            out[got[:12].decode(errors="replace") or "closed"] += 1
        except (OSError, ssl.SSLError):
            out["closed"] += 1
        finally:
            sock.close()
    return out


def fuzz(server: ServeProcess, n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    admin = server.admin()
    admin.preregister("FUZZ-1", config={"items": {"timer.config.interval": 5}})
    dev = DeviceClient(server.layout.root, server.info["api_port"], "FUZZ-1")
    dev.onboard_fully(controller_signing_cert(dev))
    valid = [dev.seal(config_pb2.ConfigRequest(configHash="x").SerializeToString()),
             dev.seal(codec.encode_request("attest", {"type": "NONCE"})[0]),
             dev.seal(codec.encode_request("register", {"serial": "FUZZ-1", "cert": "x"}, device_cert_pem=b"")[0],
                      dev.onboard, include_cert=True)]
    token = server.layout.read_token()
    ctx = ssl.create_default_context(cafile=str(server.layout.root_cert))
    conns: dict[str, http.client.HTTPConnection] = {}

    def conn(api: str) -> http.client.HTTPConnection:
        if api not in conns:
            conns[api] = (http.client.HTTPSConnection("127.0.0.1", server.info["api_port"], context=ctx, timeout=60)
                          if api == "api" else http.client.HTTPConnection("127.0.0.1", server.info["admin_port"], timeout=60))
        return conns[api]

    statuses: Counter[str] = Counter()
    by_class: dict[str, Counter[int]] = {}
    tried = 0
    t0 = time.monotonic()
    while tried < n:
        for name, api, line, body, headers in fuzz_cases(rng, dev, valid, token):
            method, path = line.split(" ", 1)
            c = conn(api)
            try:
                c.putrequest(method, path, skip_accept_encoding=True)
                for k, v in headers.items():
                    c.putheader(k, v.encode("latin-1"))
                c.putheader("Content-Length", str(len(body)))
                c.endheaders(body)
                resp = c.getresponse()
                resp.read()
                status = resp.status
                if resp.will_close:
                    c.close()
                    conns.pop(api)
            except (OSError, http.client.HTTPException):
                status = 0  # the server closed the connection (body over the cap, bad head)
                c.close()
                conns.pop(api, None)
            tried += 1
            statuses[f"{status // 100}xx" if status else "closed"] += 1
            by_class.setdefault(name, Counter())[status] += 1
    raw = raw_requests(server, rng, max(50, n // 50))
    seconds = time.monotonic() - t0
    for c in conns.values():
        c.close()
    dev.close()
    log = (server.layout.root / "serve.log").read_text(errors="replace")
    return {"requests": tried + sum(raw.values()), "seconds": round(seconds, 1), "answers": dict(statuses),
            "5xx": statuses.get("5xx", 0), "tracebacks": log.count("Traceback"), "raw_http": dict(raw),
            "by_class": {k: {str(s): c for s, c in sorted(v.items())} for k, v in by_class.items()}}


# -------------------------------------------------------------------------- slow clients --
def idle(server: ServeProcess, n: int) -> dict[str, Any]:
    pid = server.proc.pid  # type: ignore[union-attr]
    ctx = ssl.create_default_context(cafile=str(server.layout.root_cert))
    time.sleep(0.5)
    before = rss_mb(pid)
    socks = [tls_socket(server, ctx) for _ in range(n)]
    time.sleep(1.0)
    held = rss_mb(pid)
    latency = ping_ms(server)
    for s in socks:
        s.close()
    time.sleep(2.0)
    after = rss_mb(pid)
    return {"connections": n, "rss_before_mb": round(before, 1), "rss_held_mb": round(held, 1),
            "kb_per_connection": round((held - before) * 1024 / n, 1), "rss_after_close_mb": round(after, 1),
            "ping_ms_while_held": round(latency, 1)}


def refused_at_default_cap(root: Path, n: int) -> int:
    """Open n idle connections to a controller with the default caps: how many it closed at once."""
    with ServeProcess(root) as server:
        ctx = ssl.create_default_context(cafile=str(server.layout.root_cert))
        socks, refused = [], 0
        for _ in range(n):
            s = tls_socket(server, ctx)
            s.settimeout(0.05)
            try:
                if s.recv(1) == b"":
                    refused += 1
            except (TimeoutError, socket.timeout):
                pass
            except (OSError, ssl.SSLError):
                refused += 1
            socks.append(s)
        for s in socks:
            s.close()
        return refused


def stalled(server: ServeProcess, n: int) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=str(server.layout.root_cert))
    log = server.layout.root / "serve.log"
    size0 = log.stat().st_size
    t0 = time.monotonic()
    socks = []
    for _ in range(n):
        s = tls_socket(server, ctx)
        s.sendall(b"POST /api/v2/edgedevice/register HTTP/1.1\r\nHost: x\r\nContent-Le")
        socks.append(s)
    opened = time.monotonic() - t0
    latency = ping_ms(server)
    admin_ms = time.perf_counter()
    server.admin().stats()
    admin_ms = (time.perf_counter() - admin_ms) * 1000
    open_socks = list(socks)
    deadline = time.monotonic() + Limits().header_timeout + 60
    while open_socks and time.monotonic() < deadline:
        still = []
        for s in open_socks:
            s.settimeout(0.01)
            try:
                if s.recv(1) != b"":
                    still.append(s)
            except (TimeoutError, socket.timeout):
                still.append(s)
            except (OSError, ssl.SSLError):
                pass
        open_socks = still
        time.sleep(0.2)
    closed_after = time.monotonic() - t0
    for s in socks:
        s.close()
    return {"connections": n, "seconds_to_open": round(opened, 1), "all_closed_after_s": round(closed_after, 1),
            "left_open": len(open_socks), "log_bytes": log.stat().st_size - size0,
            "ping_ms_while_stalled": round(latency, 1), "admin_ms_while_stalled": round(admin_ms, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fuzz", type=int, default=5000, metavar="N", help="fuzz requests (default 5000)")
    ap.add_argument("--idle", type=int, default=1000, metavar="N", help="idle TLS connections (default 1000)")
    ap.add_argument("--stalled", type=int, default=1000, metavar="N", help="stalled connections (default 1000)")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp:
        root = Path(tmp) / "c"
        init(root)
        if args.fuzz:
            with ServeProcess(root) as server:
                out["fuzz"] = fuzz(server, args.fuzz, args.seed)
        cap = str(max(args.idle, args.stalled) + 100)
        raised = ("--limit", f"max_connections_per_client={cap}", "--limit", f"max_connections={cap}")
        if args.idle:
            with ServeProcess(root, args=raised) as server:
                out["idle"] = idle(server, args.idle)
            out["idle"]["refused_at_default_cap"] = refused_at_default_cap(root, args.idle)
            out["idle"]["default_cap_per_client"] = Limits().max_connections_per_client
        if args.stalled:
            with ServeProcess(root, args=raised) as server:
                out["stalled"] = stalled(server, args.stalled)
        out["tracebacks_in_log"] = (root / "serve.log").read_text(errors="replace").count("Traceback")
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    if "fuzz" in out:
        f = out["fuzz"]
        print(f"fuzz: {f['requests']} requests tried in {f['seconds']} s; answers {f['answers']}; raw HTTP {f['raw_http']}")
        print(f"fuzz: 5xx {f['5xx']} (target 0), tracebacks {f['tracebacks']} (target 0)")
        for name, counts in f["by_class"].items():
            print(f"  {name:28s} {counts}")
    if "idle" in out:
        i = out["idle"]
        print(f"idle: {i['connections']} TLS connections: RSS {i['rss_before_mb']} -> {i['rss_held_mb']} MB "
              f"({i['kb_per_connection']} KB each), {i['rss_after_close_mb']} MB after close; ping {i['ping_ms_while_held']} ms "
              f"while held; the default cap ({i['default_cap_per_client']} per client) refused {i['refused_at_default_cap']}")
    if "stalled" in out:
        s = out["stalled"]
        print(f"stalled: {s['connections']} half-sent heads opened in {s['seconds_to_open']} s: "
              f"all closed {s['all_closed_after_s']} s after the first "
              f"({s['left_open']} left open), {s['log_bytes']} log bytes; ping {s['ping_ms_while_stalled']} ms, "
              f"admin {s['admin_ms_while_stalled']} ms while stalled")
    print(f"tracebacks in the controller log: {out['tracebacks_in_log']} (target 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
