"""``eden validate`` under mutated scenario files (hypothesis).

Each example takes a shipped scenario (or hardware profile, which ``validate`` checks too) and mutates its text - cuts, repeats and swaps of lines and
spans, YAML punctuation and control characters dropped in, indentation changed, numbers made huge,
negative or fractional, names made long, values nested deep, keys misspelt. Whatever comes out,
``eden validate`` ends with exit 0 or 2, never an exception (a traceback), an exit 2 names the file
with a line and column, and one file takes bounded time and memory.
"""

from __future__ import annotations

import re
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eden import cli

REPO = Path(__file__).resolve().parents[1]
SEEDS = sorted((REPO / "scenarios").glob("*.yaml")) + sorted((REPO / "hw_profiles").glob("*.yaml"))
TEXTS = [p.read_text() for p in SEEDS]
ISSUE_RE = re.compile(r"^(?P<file>\S+?):(?P<line>\d+):(?P<col>\d+): error: ", re.M)

MAX_SECONDS = 20.0
"""Per file, traced (tracemalloc slows Python ~4x): the 10,000-device shipped fleet takes 0.9 s."""
MAX_PEAK_BYTES = 200 * 2**20
"""Per file, Python allocations traced by tracemalloc (a clean validate peaks at a few MB)."""

PUNCTUATION = list(":-[]{}&*!|>'\"#%@`,?~") + ["\t", "\n", "\x00", "\x07", "\ufeff", "\u2028", " ", "  ", "<<: "]
VALUES = [
    "-1", "0", "1e309", "-0", "0x7fffffffffffffffffff", "9" * 40, ".inf", "-.inf", ".nan", "1.5", "null", "~",
    "true", "yes", "[]", "{}", "''", "'x'", "&a 1", "*a", "!!binary aGk=", "!!python/object:os.system", "2026-12-02",
    "10 parsecs", "-5s", "1e9s", "100%", "-3%", "x" * 300, "[" * 200 + "]" * 200, "{a: " * 100 + "1" + "}" * 100,
]
WORDS = ["name", "seed", "fleet", "count", "profile", "group", "images", "version", "steps", "faults", "expect",
         "target", "within", "at", "when", "duration", "power_on", "wait", "controller_503", "rollout", "waves"]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(1, 6))):
        lines = text.splitlines(keepends=True) or [""]
        kind = draw(st.sampled_from(
            ["cut", "repeat", "swap", "punct", "value", "indent", "word", "truncate", "nest", "dup-line"]
        ))
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(i, min(len(lines), i + 8)))
        if kind == "cut":
            del lines[i:j]
        elif kind == "repeat":
            lines[i:i] = lines[i:j] * draw(st.integers(1, 12))  # (x12 of a 3,000-device entry: 36,000)
        elif kind == "swap":
            lines[i], lines[j - 1] = lines[j - 1], lines[i]
        elif kind == "dup-line":
            lines.insert(i, lines[i])
        elif kind == "indent":
            lines[i] = draw(st.sampled_from(["", " ", "   ", "\t", "        "])) + lines[i].lstrip(" ")
        elif kind == "truncate":
            flat = "".join(lines)
            lines = [flat[: draw(st.integers(0, len(flat)))]]
        else:
            line = lines[i]
            at = draw(st.integers(0, len(line)))
            if kind == "punct":
                piece = draw(st.sampled_from(PUNCTUATION))
            elif kind == "word":
                piece = draw(st.sampled_from(WORDS)) + draw(st.sampled_from(["", "s", "_", ": ", ":"]))
            elif kind == "nest":
                depth = draw(st.integers(1, 120))
                piece = "[" * depth + "]" * depth
            else:
                # replace the value after a ':' with a hostile one, or drop it in at a random place
                value = draw(st.sampled_from(VALUES))
                colon = line.find(": ")
                if colon >= 0 and draw(st.booleans()):
                    line, at, piece = line[: colon + 2] + "\n" * line.endswith("\n"), colon + 2, value
                else:
                    piece = value
            lines[i] = line[:at] + piece + line[at:]
        text = "".join(lines)
    return text


@pytest.fixture(scope="module", autouse=True)
def warm() -> None:
    """Imports and model building happen once, before anything is timed or traced."""
    assert cli.main(["validate", str(SEEDS[0])]) == 0


def _validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str, float, int]:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        code = cli.main(["validate", str(path)])
    finally:
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    captured = capsys.readouterr()
    return code, captured.out, captured.err, seconds, peak


@settings(
    max_examples=50,
    deadline=timedelta(seconds=MAX_SECONDS * 2),  # the explicit bound below says more; this ends a hang
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(text=mutated())
def test_mutated_scenarios_end_in_0_or_2(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mutated.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    code, out, err, seconds, peak = _validate(path, capsys)
    assert code in (0, 2), err
    assert "Traceback" not in out + err
    if code == 2:
        files = {m["file"] for m in ISSUE_RE.finditer(err)}
        assert files == {str(path)}, err
    else:
        assert out.startswith(f"{path}: ok ("), out
    assert seconds < MAX_SECONDS, f"validate took {seconds:.1f} s"
    assert peak < MAX_PEAK_BYTES, f"validate peaked at {peak / 2**20:.0f} MB"

