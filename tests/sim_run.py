"""Run a scenario file on the simulator the way ``eden run`` does and read back what it wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eden.run import execute, load_for_backend


def run_sim(path: Path, out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's summary.json and its events.jsonl (one dict per timeline event)."""
    execute(load_for_backend(path, "sim"), backend_name="sim", out_dir=out)
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    return json.loads((out / "summary.json").read_text()), events
