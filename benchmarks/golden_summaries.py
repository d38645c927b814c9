#!/usr/bin/env python3
"""Digests of the simulator's ``summary.json`` for every shipped scenario: the refactoring guard.

    python benchmarks/golden_summaries.py            # compare with benchmarks/golden-summaries.json
    python benchmarks/golden_summaries.py --write    # record the current digests (after a model change)
    python benchmarks/golden_summaries.py --skip fleet-rollout-10k   # leave out the slow one

A simulator run is a pure function of (scenario, seed), so a change that only moves code (the
seams work) must leave every digest unchanged; a change to the EVE model changes some, and the
commit that makes it records the new digests with ``--write``. Each scenario runs on its own seed
and on seed 7, in a fresh interpreter (``python -m eden run --backend sim``), and the figure printed
is the wall time of each run. Exit 1 when a digest differs, 2 when a run fails to produce a summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden-summaries.json"
EXTRA_SEED = 7


def run_digest(scenario: Path, seed: int | None, out: Path) -> tuple[str, float]:
    """sha256 of the summary.json one simulator run writes, and the run's wall seconds."""
    cmd = [sys.executable, "-m", "eden", "run", str(scenario), "--backend", "sim", "--quiet", "--no-html", "--out", str(out)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=1800)
    wall = time.perf_counter() - t0
    summary = out / "summary.json"
    if done.returncode not in (0, 1) or not summary.is_file():
        sys.stderr.write(done.stderr.decode(errors="replace")[-2000:])
        raise SystemExit(f"{scenario.name} (seed {seed}): exit {done.returncode}, no summary.json")
    return hashlib.sha256(summary.read_bytes()).hexdigest(), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="record the digests instead of comparing")
    ap.add_argument("--skip", action="append", default=[], help="scenario name to leave out (repeatable)")
    args = ap.parse_args()
    golden: dict[str, str] = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    current: dict[str, str] = {}
    differ = 0
    with tempfile.TemporaryDirectory(prefix="eden-golden-") as tmp:
        for scenario in sorted((ROOT / "scenarios").glob("*.yaml")):
            if scenario.stem in args.skip:
                continue
            for seed in (None, EXTRA_SEED):
                key = f"{scenario.stem}@{'own' if seed is None else seed}"
                digest, wall = run_digest(scenario, seed, Path(tmp) / key)
                current[key] = digest
                want = golden.get(key)
                mark = "same" if want == digest else ("new" if want is None else "DIFFERS")
                differ += mark == "DIFFERS"
                print(f"{key:45s} {wall:7.1f} s  {digest[:16]}  {mark}", flush=True)
    if args.write:
        GOLDEN.write_text(json.dumps({**golden, **current}, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(current)} digests to {GOLDEN.relative_to(ROOT)}")
        return 0
    print(f"{len(current) - differ}/{len(current)} digests unchanged")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
