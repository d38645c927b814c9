"""The simulator's summary.json for every shipped scenario matches its recorded digest.

A simulator run is a pure function of (scenario, seed); code that only moves rules around must leave
every digest unchanged, and a change to the EVE model records the new digests in the same commit
(``python benchmarks/golden_summaries.py --write``). The 10,000-node rollout is left to the script
(it takes over a minute per seed).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("golden_summaries", ROOT / "benchmarks" / "golden_summaries.py")
assert _spec is not None and _spec.loader is not None
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)

RECORDED: dict[str, str] = json.loads(golden.GOLDEN.read_text())
SCENARIOS = sorted(p for p in (ROOT / "scenarios").glob("*.yaml") if p.stem != "fleet-rollout-10k")


def test_every_shipped_scenario_has_a_digest() -> None:
    names = {p.stem for p in (ROOT / "scenarios").glob("*.yaml")}
    recorded = {key.split("@")[0] for key in RECORDED}
    assert names == recorded, f"record digests with benchmarks/golden_summaries.py --write: {sorted(names ^ recorded)}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_summary_matches_recorded_digest(scenario: Path, tmp_path: Path) -> None:
    for seed, tag in ((None, "own"), (golden.EXTRA_SEED, str(golden.EXTRA_SEED))):
        digest, _wall = golden.run_digest(scenario, seed, tmp_path / tag)
        assert digest == RECORDED[f"{scenario.stem}@{tag}"], (
            f"{scenario.stem} seed {tag}: summary.json changed; if the model change is intended, "
            "run python benchmarks/golden_summaries.py --write"
        )
