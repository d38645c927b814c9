#!/usr/bin/env python3
"""What ``eden validate`` costs on large and hostile files: wall seconds, peak RSS and exit code.

    python benchmarks/bench_validate.py

Each case is written to a temporary directory and validated by ``python -m eden validate`` in a
fresh interpreter, so the figures include interpreter start and imports (about 1 s) and the peak
RSS is that run's alone. The hostile cases are refused (exit 2) by one of the limits of
``eden/limits.py``; the million-device case raises ``EDEN_MAX_DEVICES`` as docs/scenario-language.md
("Limits") says a real million-node run does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD = "name: big\nfleet:\n  - {profile: qemu-x86_64, count: COUNT}\nimages:\n  base: {version: 13.4.0}\n"
MIB = 2**20


def cases() -> list[tuple[str, str, dict[str, str]]]:
    one = HEAD.replace("COUNT", "1")
    alias = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 10)}]\n" for p, k in zip("abcdefgh", "bcdefghi")
    )
    return [
        ("fleet of 100,000 devices (the default limit)", HEAD.replace("COUNT", "100000"), {}),
        ("fleet of 1,000,000 devices, EDEN_MAX_DEVICES=1000000", HEAD.replace("COUNT", "1000000"), {"EDEN_MAX_DEVICES": "1000000"}),
        ("fleet count 10^9 (refused)", HEAD.replace("COUNT", "1000000000"), {}),
        ("10,000 steps (the default limit)", one + "steps:\n" + "  - wait: 1s\n" * 10_000, {}),
        ("1 MiB of steps (refused)", one + "steps:\n" + "  - wait: 1s\n" * ((MIB - 200) // 13), {}),
        ("1 MiB of small values in one list (refused)", one + "metrics: [" + "1," * ((MIB - 200) // 2) + "1]\n", {}),
        ("alias bomb of 10^9 values (refused)", alias, {}),
        ("nesting 100,000 deep (refused)", one + "description: " + "[" * 100_000 + "]" * 100_000 + "\n", {}),
    ]


_CHILD = (
    "import resource, sys\n"
    "from eden.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def measure(path: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, the child's own peak RSS in MB, and its exit code."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "validate", str(path)], env={**os.environ, **env}, capture_output=True, timeout=600
    )
    wall = time.perf_counter() - t0
    err = done.stderr.decode(errors="replace")
    if "Traceback" in err:
        raise SystemExit(f"{path.name}: traceback\n{err[-2000:]}")
    rss = next(int(line.split()[1]) for line in err.splitlines() if line.startswith("MAXRSS "))
    return wall, rss / 1024, done.returncode


def main() -> int:
    print(f"{'case':<56} {'bytes':>10} {'exit':>4} {'wall s':>7} {'peak RSS MB':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, text, env) in enumerate(cases()):
            path = Path(tmp) / f"case{i}.yaml"
            path.write_text(text)
            wall, peak, code = measure(path, env)
            print(f"{name:<56} {len(text):>10,} {code:>4} {wall:>7.2f} {peak:>12.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
