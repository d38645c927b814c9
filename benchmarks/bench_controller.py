#!/usr/bin/env python3
"""Benchmark the real controller (``eden controller serve``) under ``eden emulate`` load.

    python benchmarks/bench_controller.py                 # both: (a) config req/s, (b) 10,000 devices
    python benchmarks/bench_controller.py --only a --count-a 3500 --interval-a 5
    python benchmarks/bench_controller.py --only b --count-b 10000 --duration-b 300 --json

Each scenario gets a fresh controller directory and a controller subprocess on ephemeral ports
(``ServeProcess``); the emulator is a second process (``python -m eden emulate ... --json``), so
controller and emulator each get a core on a 2-core machine. Figures are the emulator's
client-side measurements (send -> verified answer, TLS and signing included) over the steady
window (after ramp + warmup), the controller's own handler percentiles (admin ``/v1/stats``), and
the CPU seconds each process used (``/proc/PID/stat``), which says which side is the limit.

(a) Signed config requests/s at shortened timers: N devices with ``timer.config.interval=I``
    poll config at U(0.3, 1.0) x I, i.e. ~N / (0.65 I) req/s. Target: >= 1,000 config req/s with
    p99 < 100 ms.
(b) One emulator process with 10,000 devices at default timers: time until all onboarded, steady
    request rate, p99, emulator RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eden.controller.setup import init  # noqa: E402
from eden.controller.testing import ServeProcess  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its waited-for children) in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK


def run_scenario(name: str, *, count: int, items: list[str], duration: float, ramp: float, warmup: float,
                 connections: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-ctl-{name}-") as tmp:
        root = Path(tmp) / "ctl"
        init(root)
        summary_file = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "eden", "emulate", "--count", str(count), "--controller-dir", str(root),
               "--duration", str(duration), "--ramp", str(ramp), "--warmup", str(warmup), "--connections", str(connections),
               "--no-live", "--json", str(summary_file)]
        for item in items:
            cmd += ["--config-item", item]
        with ServeProcess(root) as ctl:
            assert ctl.proc is not None
            ctl_cpu0 = cpu_seconds(ctl.proc.pid)
            load0 = os.getloadavg()[0]
            started = time.monotonic()
            children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            emu = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                out, _ = emu.communicate(timeout=duration + 600)
            finally:
                if emu.poll() is None:
                    emu.kill()
                    emu.wait()
            wall = time.monotonic() - started
            load1 = os.getloadavg()[0]
            children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the emulator (waited for); the controller still runs
            emu_cpu = (children.ru_utime + children.ru_stime) - (children0.ru_utime + children0.ru_stime)
            ctl_cpu = cpu_seconds(ctl.proc.pid) - ctl_cpu0
        if not summary_file.exists():
            raise SystemExit(f"emulator failed (exit {emu.returncode}):\n{out}")
        s = json.loads(summary_file.read_text())
    s["bench"] = {"name": name, "command": "eden " + " ".join(cmd[3:]).replace(str(root), "DIR").replace(str(summary_file), "FILE"),
                  "exit": emu.returncode, "wall_s": round(wall, 1), "controller_cpu_s": round(ctl_cpu, 1),
                  "controller_cpu_share": round(ctl_cpu / wall, 2),
                  "emulator_cpu_s": round(emu_cpu, 1), "loadavg_1min": [load0, load1], "emulator_cpu_share": round(emu_cpu / wall, 2), "emulator_stdout_tail": out.splitlines()[-12:]}
    return s


def report(s: dict[str, Any]) -> None:
    b, d, t = s["bench"], s["devices"], s["total"]
    print(f"\n== ({b['name']}) {s['count']} devices, items {s['config_items'] or 'default'}; exit {b['exit']} ({s['result']})")
    print(f"   command: {b['command']}")
    w = s["window"]
    print(f"   window {w['start_s']:.0f}-{w['end_s']:.0f} s; all {d['onboarded']}/{s['count']} onboarded by {d['onboard_all_s']} s "
          f"(per device p50 {d['onboard_p50_s']} s, p99 {d['onboard_p99_s']} s); identities {s['startup']['identities_s']} s, "
          f"pre-registration {s['startup'].get('preregister_s')} s")
    print(f"   total {t['rate_per_s']:.0f} req/s in the window, {t['requests']} requests, {t['errors']} errors")
    for kind, e in s["endpoints"].items():
        if e["window_requests"]:
            ctl = (s.get("controller_stats") or {}).get(kind, {})
            print(f"   {kind:9s} {e['rate_per_s']:8.1f} req/s  p50 {e['p50_ms']:7.2f}  p95 {e['p95_ms']:7.2f}  p99 {e['p99_ms']:7.2f} ms"
                  f"   (controller handler p99 {ctl.get('p99_ms', '-')} ms)")
    print(f"   emulator RSS peak {s['rss']['peak_mb']} MiB ({s['rss']['per_device_kb']} KiB/device); "
          f"CPU over {b['wall_s']} s wall: controller {b['controller_cpu_s']} s ({b['controller_cpu_share']:.0%} of a core), "
          f"emulator {b['emulator_cpu_s']} s ({b['emulator_cpu_share']:.0%})")
    print(f"   1-min load average before/after: {b['loadavg_1min'][0]:.2f}/{b['loadavg_1min'][1]:.2f} "
          f"(2 cores; above ~2 other processes compete with the two measured ones)")
    g = s.get("gc") or {}
    print(f"   emulator gc: {g.get('collections')} collections, {g.get('total_s')} s in total, longest {g.get('max_ms')} ms; "
          f"event loop lag in the window p99 {s.get('loop_lag', {}).get('p99_ms')} ms, max {s.get('loop_lag', {}).get('max_ms')} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("a", "b"), default=None)
    p.add_argument("--count-a", type=int, default=3500)
    p.add_argument("--interval-a", type=int, default=5, help="timer.config.interval for (a) (EVE minimum 5)")
    p.add_argument("--duration-a", type=float, default=110.0)
    p.add_argument("--ramp-a", type=float, default=30.0)
    p.add_argument("--warmup-a", type=float, default=20.0)
    p.add_argument("--count-b", type=int, default=10_000)
    p.add_argument("--duration-b", type=float, default=300.0)
    p.add_argument("--ramp-b", type=float, default=100.0)
    p.add_argument("--warmup-b", type=float, default=40.0)
    p.add_argument("--connections", type=int, default=100)
    p.add_argument("--json", action="store_true", help="print the summaries as one JSON object at the end")
    a = p.parse_args()
    results: dict[str, Any] = {}
    if a.only in (None, "a"):
        results["a"] = run_scenario("a", count=a.count_a, items=[f"timer.config.interval={a.interval_a}"], duration=a.duration_a,
                                    ramp=a.ramp_a, warmup=a.warmup_a, connections=a.connections)
        report(results["a"])
        cfg = results["a"]["endpoints"].get("config", {})
        met = cfg.get("rate_per_s", 0) >= 1000 and (cfg.get("p99_ms") or 1e9) < 100
        print(f"   target >= 1,000 config req/s with p99 < 100 ms: {'met' if met else 'MISSED'}")
    if a.only in (None, "b"):
        results["b"] = run_scenario("b", count=a.count_b, items=[], duration=a.duration_b, ramp=a.ramp_b, warmup=a.warmup_b,
                                    connections=a.connections)
        report(results["b"])
    if a.json:
        print(json.dumps(results, indent=1))
    return 0 if all(r["bench"]["exit"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
