"""``eden emulate``: N emulated EVE devices in one process against an EVE API v2 controller.

Exit codes: 0 the run completed; 1 the error rate (transport errors + 5xx over all requests) was
above ``--max-error-rate``, some device never onboarded by the end of ``--duration``, or a device
stopped on a bug; 2 bad input or an unreachable controller. See docs/emulate.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from eden.agent.spec import AgentSpec
from eden.emulate.fleet import Fleet, MeasuredTransport
from eden.emulate.recorder import Recorder, percentiles_ms
from eden.errors import EXIT_FAILED, EXIT_OK, InfrastructureError, InvalidInput
from eden.runtime import collector
from eden.wire import pki
from eve.config_items import close_keys, is_known, validate_item

DEFAULT_MAX_ERROR_RATE = 0.01
PREREGISTER_CHUNK = 2000


def add_parser(sub: Any) -> None:
    p = sub.add_parser("emulate", help="emulate N EVE devices in one process against a controller (load test)")
    p.add_argument("--count", type=int, required=True, metavar="N", help="number of devices")
    p.add_argument("--controller", default=None, metavar="URL", help="controller API URL (default with --controller-dir: its serve.json api_url)")
    p.add_argument("--controller-dir", type=Path, default=None, metavar="DIR",
                   help="an eden controller DIR: certs from it, serials pre-registered through its admin API")
    p.add_argument("--root-cert", type=Path, default=None, metavar="FILE", help="controller root certificate (without --controller-dir)")
    p.add_argument("--onboard-cert", type=Path, default=None, metavar="FILE", help="onboarding certificate (without --controller-dir)")
    p.add_argument("--onboard-key", type=Path, default=None, metavar="FILE", help="onboarding key (without --controller-dir)")
    p.add_argument("--serial-prefix", default="emu-", help="serials are PREFIX00000, PREFIX00001, ... (default emu-)")
    p.add_argument("--profile", default="qemu-x86_64", help="hardware profile of every device (default qemu-x86_64)")
    p.add_argument("--image-version", default="13.4.0", help="EVE version installed at the factory (default 13.4.0)")
    p.add_argument("--boot-time", type=float, default=1.0, metavar="S", help="seconds from power-on to the first request (default 1)")
    p.add_argument("--config-item", action="append", default=[], metavar="K=V",
                   help="global configItem set on the controller before the run (needs --controller-dir), e.g. timer.config.interval=5")
    p.add_argument("--duration", type=float, default=60.0, metavar="S", help="run time in seconds, ramp included (default 60)")
    p.add_argument("--ramp", type=float, default=10.0, metavar="S", help="devices start evenly spread over S seconds (default 10)")
    p.add_argument("--warmup", type=float, default=0.0, metavar="S",
                   help="the measurement window starts S seconds after the ramp (let onboarding traffic settle; default 0)")
    p.add_argument("--connections", type=int, default=100, metavar="N", help="keep-alive connection pool size (default 100)")
    p.add_argument("--max-error-rate", type=float, default=DEFAULT_MAX_ERROR_RATE, metavar="R",
                   help=f"exit 1 above this fraction of failed requests (default {DEFAULT_MAX_ERROR_RATE})")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the summary here as JSON")
    p.add_argument("--no-live", action="store_true", help="plain progress lines instead of the live table")


# ------------------------------------------------------------------------------------- inputs --
def _bad(what: str, message: str, hint: str | None = None) -> InvalidInput:
    return InvalidInput.at(what, 0, 0, message, hint)


def parse_items(pairs: list[str]) -> dict[str, int | str | bool]:
    out: dict[str, int | str | bool] = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise _bad("--config-item", f"expected K=V, got {item!r}")
        # The value goes to the devices as text, exactly as typed (EVE trims nothing, spec §6).
        value: int | str | bool = int(raw) if raw.isascii() and raw.isdigit() else raw
        if not is_known(key):
            close = close_keys(key)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            print(f"warning: --config-item: unknown config item {key!r}: EVE reports it and ignores it{hint}", file=sys.stderr)
        elif problem := validate_item(key, value):
            raise _bad("--config-item", problem)
        out[key] = value
    return out


class Target:
    """Where the devices go and what they need to get there."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.admin = None
        if args.controller_dir is not None:
            from eden.controller.client import AdminClient
            from eden.controller.layout import Layout

            layout = Layout(args.controller_dir)
            if not layout.initialised():
                raise _bad(str(args.controller_dir), "not a controller directory", "eden controller init DIR")
            if not layout.serve_json.is_file():
                raise InfrastructureError(f"{args.controller_dir}: no serve.json; is `eden controller serve` running?")
            info = json.loads(layout.serve_json.read_text())
            self.url: str = args.controller or info["api_url"]
            self.root_pem = layout.root_cert.read_bytes()
            self.onboard = pki.load_pem(layout.cert("onboard"), layout.key("onboard"))
            self.admin = AdminClient.for_dir(args.controller_dir)
        else:
            missing = [f for f, v in (("--controller", args.controller), ("--root-cert", args.root_cert),
                                      ("--onboard-cert", args.onboard_cert), ("--onboard-key", args.onboard_key)) if v is None]
            if missing:
                raise _bad("eden emulate", f"without --controller-dir, {', '.join(missing)} must be given")
            if args.config_item:
                raise _bad("--config-item", "configItems are set through the controller's admin API",
                           "use --controller-dir, or set them on your controller")
            for f in (args.root_cert, args.onboard_cert, args.onboard_key):
                if not f.is_file():
                    raise _bad(str(f), "no such file")
            self.url = args.controller
            self.root_pem = args.root_cert.read_bytes()
            try:
                self.onboard = pki.load_pem(args.onboard_cert, args.onboard_key)
            except ValueError as exc:
                raise _bad(str(args.onboard_cert), f"cannot load the onboarding certificate/key: {exc}") from None
        if not self.url.startswith(("https://", "http://")):
            raise _bad("--controller", f"bad URL {self.url!r}", "https://HOST:PORT")


def _check(args: argparse.Namespace) -> AgentSpec:
    if args.count < 1:
        raise _bad("--count", "must be at least 1")
    if not args.duration > 0 or args.ramp < 0 or args.warmup < 0 or args.connections < 1 or not 0 <= args.max_error_rate <= 1 or not args.boot_time > 0:
        raise _bad("eden emulate", "need --duration > 0, --ramp >= 0, --warmup >= 0, --connections >= 1, --boot-time > 0, 0 <= --max-error-rate <= 1")
    template = AgentSpec.model_validate({"serial": "template", "profile": args.profile, "image": "base",
                                          "images": {"base": {"version": args.image_version}}, "boot_time": args.boot_time})
    template.node_params()  # unknown profile -> InvalidInput now
    return template


def run(args: argparse.Namespace) -> int:
    template = _check(args)
    items = parse_items(args.config_item)
    target = Target(args)
    summary = asyncio.run(emulate(args, template, items, target))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return int(summary["exit_code"])


# ------------------------------------------------------------------------------------ the run --
def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size in MiB."""
    now = peak = 0.0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return now, peak


async def emulate(args: argparse.Namespace, template: AgentSpec, items: dict[str, Any], target: Target) -> dict[str, Any]:
    console = Console(stderr=True)
    recorder = Recorder()
    rss_before, _ = rss_mb()
    transport = MeasuredTransport(target.root_pem, recorder, connections=args.connections)
    why = await transport.probe(target.url)
    if why is not None:
        await transport.close()
        raise InfrastructureError(f"controller {target.url} unreachable: {why}")
    t0 = time.perf_counter()
    fleet = Fleet(template=template, count=args.count, serial_prefix=args.serial_prefix, transport=transport,
                  url=target.url, onboard=target.onboard)
    startup: dict[str, Any] = {"identities_s": round(fleet.identity_seconds, 3),
                               "identity_ms_per_device": round(fleet.identity_seconds / args.count * 1e3, 4),
                               "build_s": round(time.perf_counter() - t0, 3)}
    try:
        if target.admin is not None:
            t1 = time.perf_counter()
            ref = template.attestation_reference()
            await asyncio.to_thread(_preregister, target.admin, [d.spec.serial for d in fleet.devices], ref)
            if items:
                await asyncio.to_thread(target.admin.set_items, items)
            startup["preregister_s"] = round(time.perf_counter() - t1, 3)
    except Exception:
        await transport.close()
        raise
    rss_built, _ = rss_mb()
    collector.freeze()  # the fleet lives for the whole run: keep it out of the cyclic collector's scans
    gc.set_threshold(*collector.RUN_THRESHOLDS)  # refcounting frees the per-request garbage
    pauses = GcPauses()
    lag = LoopLag()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    interrupted: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        interrupted.append(sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    refreeze = loop.call_later(args.ramp + args.boot_time + 5.0, gc.freeze)  # what onboarding built, likewise
    lag_task = loop.create_task(lag.run())
    try:
        fleet.start(args.ramp)
        start = fleet.events.start
        display = Display(fleet, recorder, args, console)
        end = start + args.duration
        if args.no_live:
            await display.plain(stop, end)
        else:
            with Live(display.table(), console=console, refresh_per_second=4, transient=False) as live:
                await display.live(live, stop, end)
        stopped = time.monotonic()
        rss_run, rss_peak = rss_mb()
        await fleet.stop()
    finally:
        refreeze.cancel()
        lag_task.cancel()
        pauses.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await transport.close()
    controller_stats: Mapping[str, object] | None = None
    if target.admin is not None:
        try:
            controller_stats = await asyncio.to_thread(target.admin.stats)
        except Exception as exc:  # the figures are a bonus; the run's result does not depend on them
            controller_stats = {"error": str(exc)}
    summary = build_summary(args, fleet, recorder, start, stopped, startup, interrupted, items,
                            rss={"before_mb": rss_before, "built_mb": rss_built, "end_mb": rss_run, "peak_mb": rss_peak},
                            controller_stats=controller_stats)
    summary["gc"] = pauses.summary()
    summary["loop_lag"] = lag.summary(start + args.ramp + args.warmup)
    out = Console()
    print_summary(summary, out if out.is_terminal else Console(width=160))
    return summary


class LoopLag:
    """How late the event loop wakes a 50 ms sleep: when it is late, every device's requests are
    (a busy or stalled emulator inflates the client-side latencies by as much)."""

    PERIOD = 0.05

    def __init__(self) -> None:
        self.t: list[float] = []
        self.late: list[float] = []

    async def run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.PERIOD)
            now = time.monotonic()
            self.t.append(now)
            self.late.append(now - before - self.PERIOD)

    def summary(self, since: float) -> dict[str, Any]:
        late = np.array([x for t, x in zip(self.t, self.late) if t >= since] or self.late or [0.0])
        p50, p99 = np.percentile(late, [50, 99])
        return {"p50_ms": round(float(p50) * 1e3, 2), "p99_ms": round(float(p99) * 1e3, 2), "max_ms": round(float(late.max()) * 1e3, 2)}


class GcPauses:
    """Time spent in Python's cyclic garbage collector during the run (it stops every device)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.pauses: list[float] = []
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self.started)

    def close(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        return {"collections": len(self.pauses), "total_s": round(sum(self.pauses), 3),
                "max_ms": round(max(self.pauses, default=0.0) * 1e3, 2)}


def _preregister(admin: Any, serials: list[str], ref: dict[str, Any]) -> None:
    for i in range(0, len(serials), PREREGISTER_CHUNK):
        admin.preregister_many([{"serial": s, "firmware": ref["firmware"], "images": ref["images"], "learn": True, "config": {}}
                                for s in serials[i:i + PREREGISTER_CHUNK]])


# ----------------------------------------------------------------------------------- display --
class Display:
    """Per-endpoint rate and latency over the last refresh interval (~1 s)."""

    def __init__(self, fleet: Fleet, recorder: Recorder, args: argparse.Namespace, console: Console) -> None:
        self.fleet, self.recorder, self.args, self.console = fleet, recorder, args, console
        self.marks: dict[str, int] = {}
        self.last = time.monotonic()
        self.rows: dict[str, tuple[float, dict[str, float | None]]] = {}

    def sample(self) -> None:
        now = time.monotonic()
        span = max(now - self.last, 1e-6)
        self.last = now
        for kind, ep in list(self.recorder.endpoints.items()):
            mark = self.marks.get(kind, 0)
            n = len(ep)
            lat = np.array(ep.lat[mark:n])
            self.marks[kind] = n
            self.rows[kind] = (lat.size / span, percentiles_ms(lat))

    def table(self) -> Table:
        f, r = self.fleet, self.recorder
        elapsed = time.monotonic() - f.events.start
        rss, _ = rss_mb()
        t = Table(title=f"eden emulate: {elapsed:5.0f}/{self.args.duration:.0f} s   devices {f.started}/{len(f.devices)} started, "
                        f"{f.onboarded} onboarded   requests {r.total()} errors {r.errors()}   RSS {rss:.0f} MiB")
        for col in ("endpoint", "req/s", "p50 ms", "p95 ms", "p99 ms", "total", "status", "errors"):
            t.add_column(col, justify="left" if col in ("endpoint", "status", "errors") else "right")
        for kind, ep in r.summary(0, 0).items():
            rate, pct = self.rows.get(kind, (0.0, percentiles_ms(np.empty(0))))
            t.add_row(kind, f"{rate:.0f}", *(_ms(pct[k]) for k in ("p50_ms", "p95_ms", "p99_ms")), str(ep["requests"]),
                      " ".join(f"{k}:{v}" for k, v in ep["status"].items()), " ".join(f"{k}:{v}" for k, v in ep["errors"].items()))
        return t

    async def live(self, live: Live, stop: asyncio.Event, end: float) -> None:
        while not await _wait(stop, min(1.0, end - time.monotonic())):
            if time.monotonic() >= end:
                return
            self.sample()
            live.update(self.table())

    async def plain(self, stop: asyncio.Event, end: float) -> None:
        f, r = self.fleet, self.recorder
        last, count = time.monotonic(), 0
        while not await _wait(stop, min(5.0, end - time.monotonic())):
            now = time.monotonic()
            total = r.total()
            print(f"t={now - f.events.start:.0f}s devices {f.started}/{len(f.devices)} onboarded {f.onboarded} "
                  f"req/s {(total - count) / max(now - last, 1e-6):.0f} requests {total} errors {r.errors()}", flush=True)
            last, count = now, total
            if now >= end:
                return


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """True when ``stop`` is set within ``seconds``."""
    if seconds <= 0:
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


# ----------------------------------------------------------------------------------- summary --
def build_summary(args: argparse.Namespace, fleet: Fleet, recorder: Recorder, start: float, stopped: float,
                  startup: dict[str, Any], interrupted: list[str], items: dict[str, Any], *, rss: dict[str, float],
                  controller_stats: Mapping[str, object] | None) -> dict[str, Any]:
    steady = start + args.ramp + args.warmup
    window_start = steady if steady < stopped else start
    endpoints = recorder.summary(window_start, stopped)
    total = recorder.total()
    errors = recorder.errors()
    window_requests = sum(e["window_requests"] for e in endpoints.values())
    onboard = np.array(fleet.onboarding_seconds())
    completed = not interrupted
    failed_devices = sum(1 for d in fleet.devices if d.failure is not None)
    reasons = []
    error_rate = errors / total if total else 0.0
    if error_rate > args.max_error_rate:
        reasons.append(f"error rate {error_rate:.4f} > {args.max_error_rate}")
    if completed and fleet.onboarded < len(fleet.devices):
        reasons.append(f"{len(fleet.devices) - fleet.onboarded} device(s) never onboarded")
    if failed_devices:
        reasons.append(f"{failed_devices} device(s) stopped on an error")
    if total == 0:
        reasons.append("no request was made")
    n = len(fleet.devices)
    return {
        "count": n, "controller": fleet.urls.default, "profile": args.profile, "image_version": args.image_version,
        "config_items": items, "duration_s": round(stopped - start, 3), "ramp_s": args.ramp, "warmup_s": args.warmup,
        "window": {"start_s": round(window_start - start, 3), "end_s": round(stopped - start, 3),
                   "steady": steady < stopped},
        "completed": completed, "interrupted_by": interrupted[0] if interrupted else None,
        "startup": startup,
        "devices": {
            "started": fleet.started, "onboarded": fleet.onboarded,
            "onboard_all_s": round(max(fleet.events.onboarded_at.values()) - start, 3) if fleet.onboarded == n else None,
            "onboard_p50_s": round(float(np.percentile(onboard, 50)), 3) if onboard.size else None,
            "onboard_p99_s": round(float(np.percentile(onboard, 99)), 3) if onboard.size else None,
            "reboots": sum(d.reboots for d in fleet.devices), "failed": failed_devices,
        },
        "endpoints": endpoints,
        "total": {"requests": total, "errors": errors, "error_rate": round(error_rate, 6),
                  "window_requests": window_requests,
                  "rate_per_s": round(window_requests / max(stopped - window_start, 1e-9), 2)},
        "events": dict(sorted(fleet.events.counts.items())),
        "rss": {**{k: round(v, 1) for k, v in rss.items()},
                "per_device_kb": round((rss["peak_mb"] - rss["before_mb"]) * 1024 / n, 2)},
        "controller_stats": controller_stats,
        "result": "ok" if not reasons else "; ".join(reasons),
        "exit_code": EXIT_OK if not reasons else EXIT_FAILED,
    }


def print_summary(s: dict[str, Any], console: Console) -> None:
    w = s["window"]
    t = Table(title=f"{s['count']} devices, {s['duration_s']:.0f} s; window {w['start_s']:.0f}-{w['end_s']:.0f} s "
                    f"({'steady state' if w['steady'] else 'no steady state: the whole run'})")
    for col in ("endpoint", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "requests", "status", "errors"):
        t.add_column(col, justify="left" if col in ("endpoint", "status", "errors") else "right")
    for kind, e in s["endpoints"].items():
        t.add_row(kind, f"{e['rate_per_s']:.1f}", *(_ms(e[k]) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")), str(e["requests"]),
                  " ".join(f"{k}:{v}" for k, v in e["status"].items()), " ".join(f"{k}:{v}" for k, v in e["errors"].items()))
    console.print(t)
    d, tot, st, rss = s["devices"], s["total"], s["startup"], s["rss"]
    onboard_all = "-" if d["onboard_all_s"] is None else f"{d['onboard_all_s']:.1f} s"
    console.print(f"devices: {d['started']} started, {d['onboarded']} onboarded (all by {onboard_all}; per device p50 "
                  f"{d['onboard_p50_s']} s p99 {d['onboard_p99_s']} s), {d['reboots']} reboots, {d['failed']} failed", markup=False)
    console.print(f"requests: {tot['requests']} total, {tot['rate_per_s']:.1f}/s in the window, {tot['errors']} errors "
                  f"({tot['error_rate']:.4%})", markup=False)
    console.print(f"startup: identities {st['identities_s']} s ({st['identity_ms_per_device']} ms/device)"
                  + (f", pre-registration {st['preregister_s']} s" if "preregister_s" in st else ""), markup=False)
    console.print(f"memory: RSS {rss['end_mb']} MiB at the end, peak {rss['peak_mb']} MiB, "
                  f"{rss['per_device_kb']} KiB per device above the {rss['before_mb']} MiB baseline", markup=False)
    if "gc" in s:
        g = s["gc"]
        console.print(f"gc: {g['collections']} collections, {g['total_s']} s, longest {g['max_ms']} ms", markup=False)
    if "loop_lag" in s:
        g = s["loop_lag"]
        console.print(f"event loop lag in the window: p50 {g['p50_ms']} ms, p99 {g['p99_ms']} ms, max {g['max_ms']} ms", markup=False)
    console.print(f"result: {s['result']} (exit {s['exit_code']})", markup=False)
    sys.stdout.flush()
