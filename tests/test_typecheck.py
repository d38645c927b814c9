"""The type checker and the linter run with the suite.

mypy checks ``eden/`` and ``simulator/`` against a per-file baseline (``tests/mypy-baseline.txt``)
that may only go down: a file with more errors than its baseline, or errors in a file the baseline
does not list, fails. When a file improves, the test says so and the baseline should be lowered
(``python tests/test_typecheck.py --write``). ruff (pyflakes rules) must be clean.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "tests" / "mypy-baseline.txt"
TARGETS = ["eve", "simulator", "eden"]
ERROR = re.compile(r"^(?P<file>[^:\s]+\.py):\d+: error: ")


def mypy_errors(cache: Path) -> Counter[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", *TARGETS, "--cache-dir", str(cache), "--no-error-summary", "--no-color-output"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )
    if proc.returncode not in (0, 1):
        raise AssertionError(f"mypy failed to run ({proc.returncode}): {proc.stderr[-2000:]}")
    return Counter(m["file"] for line in proc.stdout.splitlines() if (m := ERROR.match(line)))


def read_baseline() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in BASELINE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            count, path = line.split(None, 1)
            out[path.strip()] = int(count)
    return out


@pytest.mark.slow
def test_mypy_errors_never_exceed_the_baseline(tmp_path_factory: pytest.TempPathFactory) -> None:
    errors = mypy_errors(tmp_path_factory.mktemp("mypy-cache"))
    baseline = read_baseline()
    worse = {f: (n, baseline.get(f, 0)) for f, n in errors.items() if n > baseline.get(f, 0)}
    assert not worse, "mypy errors above the baseline (file: now, baseline): " + ", ".join(
        f"{f}: {n} > {b}" for f, (n, b) in sorted(worse.items()))
    better = {f: (errors.get(f, 0), b) for f, b in baseline.items() if errors.get(f, 0) < b}
    if better:
        print("mypy: fewer errors than the baseline, lower it (python tests/test_typecheck.py --write):",
              ", ".join(f"{f}: {n} < {b}" for f, (n, b) in sorted(better.items())))


ANY_LIMIT = 373
"""Uses of ``typing.Any`` under ``eden/`` (676 before the typed views and admin answers): may only go
down. Where a value really is arbitrary, ``object`` and narrowing is the type; lower this when the
count drops."""


def any_count() -> int:
    word = re.compile(r"\bAny\b")
    return sum(len(word.findall(path.read_text(encoding="utf-8")))
               for path in (ROOT / "eden").rglob("*.py") if "gen" not in path.relative_to(ROOT / "eden").parts[:2])


def test_any_never_grows_under_eden() -> None:
    assert any_count() <= ANY_LIMIT, f"{any_count()} uses of Any under eden/ (limit {ANY_LIMIT}): type the new code"


def test_ruff_is_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", *TARGETS,
                           "tests", "benchmarks", "scripts"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


if __name__ == "__main__":  # python tests/test_typecheck.py --write: record the current counts
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_typecheck.py --write")
    with tempfile.TemporaryDirectory() as tmp:
        counts = mypy_errors(Path(tmp))
    lines = ["# mypy errors per file (tests/test_typecheck.py); the counts may only go down"]
    lines += [f"{n} {f}" for f, n in sorted(counts.items())]
    BASELINE.write_text("\n".join(lines) + "\n")
    print(f"{sum(counts.values())} errors in {len(counts)} files -> {BASELINE}")
