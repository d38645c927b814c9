"""The bulk (vectorised) path must produce the same traffic EVE's timers imply.

Cross-checks against analytic formulas: with polls every U[0.3, 1.0] x interval, a settled fleet of
N nodes sends N / (0.65 x interval) config requests per second (spec §1, §9), and as many metrics.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eden.run import execute, load_for_backend

FLEET = """
name: steady
seed: 21
duration: {hours}h
fleet:
  - {{profile: qemu-x86_64, count: {n}}}
images:
  base: {{version: 1.0}}
controller:
  capacity: {{workers: 16}}
steps:
  - power_on: {{spread: 5m}}
expect:
  - {{device_state: ONLINE, at_least: 100%}}
metrics: [controller.requests]
"""


def run_fleet(tmp_path: Path, n: int, hours: float) -> tuple[dict, dict]:
    path = tmp_path / "steady.yaml"
    path.write_text(FLEET.format(n=n, hours=hours))
    result = execute(load_for_backend(path, "sim"), out_dir=tmp_path / "out")
    import json

    run = json.loads((tmp_path / "out" / "run.json").read_text())
    return result.summary, run


def test_request_rates_match_the_timer_formulas(tmp_path: Path) -> None:
    n, hours = 2000, 3.0
    summary, run = run_fleet(tmp_path, n, hours)
    assert summary["verdict"] == "passed"
    series = summary["series"]["controller"]
    step = series["step"]
    # Look at the settled second half of the run only.
    half = len(series["requests"]) // 2
    minutes = series["requests"][half:-1]
    per_second = sum(minutes) / (len(minutes) * step)
    config = n / (0.65 * 60)  # U[0.3,1] x 60 s, spec §1
    metrics = n / (0.65 * 60)  # same law for timer.metric.interval
    info = n / 600.0  # forced device info every U[0.8,1.2] x 600 s
    ping = n / 300.0  # port test every timer.port.testinterval
    logs = n / 300.0  # one newlogd file per 300 s, each uploaded once (loguploader, §1)
    expected = config + metrics + info + ping + logs
    assert per_second == pytest.approx(expected, rel=0.03)
    # Nearly all of it is answered in bulk, not node by node.
    assert run["bulk_requests"] > 0.9 * summary["metrics"]["controller"]["all"]["requests"]


def test_series_accounts_for_every_device(tmp_path: Path) -> None:
    n = 300
    summary, _ = run_fleet(tmp_path, n, 0.5)
    series = summary["series"]
    for i in range(len(series["t"])):
        assert sum(col[i] for col in series["by_state"].values()) == n
    assert series["by_state"]["ONLINE"][-1] == n
    assert series["connected"][-1] == n
    assert series["by_version"]["1.0"][-1] == n
