"""QEMU backend figures: power-on to onboarded on the reference image, and scenario wall times.

    python benchmarks/bench_qemu.py --onboard 3           # onboarding-smoke three times, one VM
    python benchmarks/bench_qemu.py --scenarios baseos-update attestation-tamper

``--onboard N`` runs ``eden run scenarios/onboarding-smoke.yaml --backend qemu`` N times, one after
the other (a quiet host: nothing else should run), and prints the VM's power-on to agent-start and
power-on to onboarded (host wall seconds, from the run's ``device_timings``), with the issue's
target (onboarded <= 30 s under TCG). ``--scenarios`` runs each named scenario once on ``sim`` and
once on ``qemu`` and prints the qemu wall time next to the simulated run time. The image is built
(or found in the cache) before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_ONBOARD_S = 30.0


def _run(scenario: str, backend: str, out: Path) -> tuple[int, dict, dict, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "eden", "run", str(ROOT / "scenarios" / f"{scenario}.yaml"), "--backend", backend,
                           "--out", str(out), "--quiet"], cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if not (out / "summary.json").is_file():
        raise SystemExit(f"{scenario} on {backend}: no summary (rc={proc.returncode})\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.returncode, json.loads((out / "summary.json").read_text()), json.loads((out / "run.json").read_text()), wall


def onboard(n: int, work: Path) -> None:
    agent, onboarded = [], []
    for i in range(n):
        rc, _summary, run, wall = _run("onboarding-smoke", "qemu", work / f"onboard-{i}")
        t = run["device_timings"]["devices"]["dut-0"] if "dut-0" in run["device_timings"]["devices"] else next(iter(run["device_timings"]["devices"].values()))
        agent.append(t["power_on_to_agent_start"][0])
        onboarded.append(t["power_on_to_onboarded"][0])
        print(f"run {i + 1}: rc={rc} wall {wall:.1f} s, accel {run['device_timings']['accel']}, "
              f"power-on to agent-start {agent[-1]:.1f} s, to onboarded {onboarded[-1]:.1f} s", flush=True)
    print(f"power-on to agent-start: median {statistics.median(agent):.1f} s (min {min(agent):.1f}, max {max(agent):.1f})")
    print(f"power-on to onboarded:   median {statistics.median(onboarded):.1f} s (min {min(onboarded):.1f}, max {max(onboarded):.1f});"
          f" target <= {TARGET_ONBOARD_S:.0f} s: {'met' if max(onboarded) <= TARGET_ONBOARD_S else 'NOT met'}")


def scenarios(names: list[str], work: Path) -> None:
    print(f"{'scenario':28} {'sim: simulated':>15} {'sim: wall':>10} {'qemu: wall':>11} {'qemu: verdict':>14}")
    for name in names:
        _rc, sim, _run_sim, sim_wall = _run(name, "sim", work / f"{name}-sim")
        rc, q, _run_q, q_wall = _run(name, "qemu", work / f"{name}-qemu")
        print(f"{name:28} {sim['simulated_seconds']:>13.0f} s {sim_wall:>8.1f} s {q_wall:>9.0f} s {q['verdict']:>14}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onboard", type=int, default=0, metavar="N", help="onboarding-smoke N times on one VM")
    p.add_argument("--scenarios", nargs="*", default=[], metavar="NAME", help="scenarios/NAME.yaml on sim and on qemu")
    args = p.parse_args()
    if not args.onboard and not args.scenarios:
        args.onboard = 3
    subprocess.run([sys.executable, "-m", "eden", "image", "build"], cwd=ROOT, check=True, capture_output=True)
    with tempfile.TemporaryDirectory(prefix="eden-bench-qemu-") as tmp:
        if args.onboard:
            onboard(args.onboard, Path(tmp))
        if args.scenarios:
            scenarios(args.scenarios, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
