"""Every limit the controller enforces on its clients, in one place (docs/security.md).

``eden controller serve --limit NAME=VALUE`` overrides one (repeatable); names are the fields below.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Limits:
    # transport (both APIs)
    max_connections: int = 2048  # open connections in total, per API; past it a new one is closed at once
    max_connections_per_client: int = 512  # per peer IP address (emulated fleets share 127.0.0.1)
    handshake_timeout: float = 10.0  # s for the TLS handshake
    header_timeout: float = 10.0  # s from the first byte of a request head to its end
    body_timeout: float = 30.0  # s to receive a whole device-API request body (408 after)
    keepalive_timeout: float = 75.0  # s an idle keep-alive connection is kept
    max_body: int = 16 * 1024 * 1024  # bytes of a device-API request body (413 past it)
    hang_hold: float = 600.0  # s a device request is held unanswered while the answer switch is 'hang' (then 503)
    tls_read_buffer: int = 32 * 1024  # bytes of the per-connection TLS read buffer (stdlib default 256 KiB)
    # log lines (a flood of one message is summarised)
    log_burst: int = 20  # lines of one kind of message before it is suppressed
    log_window: float = 10.0  # s; at most log_burst lines of one kind per window, then one summary line
    # per-device quotas (429 past them; EVE retries 429, spec §2.1)
    log_bytes_per_s: float = 256 * 1024  # sustained newlogs bytes per device
    log_burst_bytes: int = 16 * 1024 * 1024  # newlogs bytes a device may send at once
    log_retention_bytes: int = 64 * 1024 * 1024  # stored log bytes kept per device (oldest dropped)
    info_per_s: float = 20.0  # sustained info posts per device
    info_burst: int = 500  # info posts a device may send at once (EVE sends many at boot)
    info_events_kept: int = 200  # "info" events kept per device (between this and twice this)
    info_objects_per_kind: int = 256  # volumes, content trees, ... kept per device and kind (least recently updated dropped)
    # SQLite
    db_busy_ms: int = 250  # how long one write waits for a lock held by another process (503 after)


def parse(pairs: list[str], base: Limits | None = None) -> Limits:
    """``NAME=VALUE`` pairs over ``base``; ValueError with the known names on a bad one."""
    known = {f.name: f for f in fields(Limits)}
    out: dict[str, float | int] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or name not in known:
            raise ValueError(f"--limit wants NAME=VALUE with NAME one of {', '.join(known)}; got {pair!r}")
        kind = int if known[name].type in ("int", int) else float
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"--limit {name}: {text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise ValueError(f"--limit {name}: must be a positive finite number, got {text!r}")
        out[name] = value
    return replace(base or Limits(), **out)
