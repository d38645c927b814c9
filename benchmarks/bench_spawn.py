"""What the start-up guard of a child process costs (issue 14 item 17).

Every child of a real-time run starts as ``setpriv --pdeathsig KILL -- sh -c <parent check> ...``
(eden.runtime.procs). This starts N short children (``/bin/true``) through ProcessGroup three
ways, one at a time, and prints the mean start-to-exit time of each: bare, setpriv alone (before
the fix) and setpriv + sh (now), and what ``eden run`` spends drawing report.html.

    python benchmarks/bench_spawn.py [--n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from eden.runtime import procs


async def _spawn_all(n: int, wrap: str) -> float:
    true = shutil.which("true") or "/bin/true"
    saved = procs.with_parent_death_signal
    if wrap == "bare":
        procs.with_parent_death_signal = lambda argv, parent=None: list(argv)  # type: ignore[assignment]
    elif wrap == "setpriv":
        procs.with_parent_death_signal = lambda argv, parent=None: [procs._SETPRIV, "--pdeathsig", "KILL", "--", *argv]  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            group = procs.ProcessGroup(Path(tmp))
            t0 = time.perf_counter()
            for i in range(n):
                p = await group.start(f"c{i % 4}", [true])
                await p.wait(30)
            elapsed = time.perf_counter() - t0
            await group.close()
    finally:
        procs.with_parent_death_signal = saved
    return elapsed / n


def _report_html() -> float:
    from eden.reports.render import write_run_html
    from eden.run import execute, load_for_backend

    loaded = load_for_backend(Path("scenarios/baseos-update.yaml"), "sim")
    with tempfile.TemporaryDirectory() as tmp:
        execute(loaded, out_dir=Path(tmp))
        t0 = time.perf_counter()
        write_run_html(Path(tmp))
        return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    if procs._SETPRIV is None:
        print("setpriv not found: children start unguarded here", file=sys.stderr)
        return 2
    for wrap in ("bare", "setpriv", "setpriv+sh"):
        mean = asyncio.run(_spawn_all(args.n, wrap))
        print(f"{wrap:<12} {mean * 1000:7.2f} ms per child start+exit (n={args.n})")
    print(f"report.html of one eden run (baseos-update, sim): {_report_html() * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
