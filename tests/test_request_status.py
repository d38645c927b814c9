"""Per-kind request counts by HTTP status (issue 16 §4): ``status`` in the controller stats, the
``controller.requests.<kind>.<status>`` / ``controller.answers.<status>`` metrics, on the simulator
and on the real backends' admin stats (summed across controller restarts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eden.backends.live import LiveBackend, add_endpoint_stats
from eden.controller.admin_types import EndpointSummary
from eden.run import execute, load_for_backend
from eden.scenario import metric_names
from eden.suite.criteria import metric_value
from eve.controller import SETTLED_STATUS, Controller
from eve.vocab import PERIODIC

BASE = """
name: {name}
seed: 5
fleet:
  - profile: qemu-x86_64
    group: dut
    count: 3
images:
  base: {{version: 1.0}}
controller:
  config_items:
    timer.config.interval: 10
"""


def run(tmp_path: Path, name: str, body: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """summary.json and run.json of one simulator run of ``BASE`` + ``body``."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(BASE.format(name=name) + body)
    result = execute(load_for_backend(path, "sim"), out_dir=tmp_path / f"out-{name}")
    return result.summary, json.loads((result.out_dir / "run.json").read_text())


def _check_consistent(controller: dict[str, Any]) -> None:
    """Every kind's status counts add up to its requests, and ``all`` is the sum over the kinds."""
    every: dict[str, int] = {}
    for kind, st in controller.items():
        assert sum(st["status"].values()) == st["requests"], kind
        assert st["status"].get("503", 0) == st["rejected_503"], kind
        if kind != "all":
            for code, n in st["status"].items():
                every[code] = every.get(code, 0) + n
    assert controller["all"]["status"] == every


def test_settled_status_is_what_the_rules_answer_a_settled_device() -> None:
    ctl = Controller(global_items={}, enforce_attestation=False)
    i = ctl.add_device("S1", "fw", {})
    assert ctl.answer(i, "register", {"cert": "pem"})[0] == 201
    assert ctl.answer(i, "uuid", {})[0] == 200
    status, body = ctl.answer(i, "config", {})
    assert status == 200
    settled = {"config": {"hash": body["config"]["hash"]}}
    assert set(SETTLED_STATUS) == {p.request for p in PERIODIC.values()}  # every kind the bulk path answers
    for kind, want in SETTLED_STATUS.items():
        assert ctl.answer(i, kind, settled.get(kind, {}))[0] == want, kind


def test_settled_fleet_counts_304_polls_and_a_metric_condition_on_them(tmp_path: Path) -> None:
    summary, run_info = run(
        tmp_path,
        "settled",
        """
metrics: [controller.requests.config.304, controller.requests.config.200, controller.answers.201]
steps:
  - power_on: {}
  - expect: {device_state: ONLINE, within: 5m}
  - wait: 30m
expect:
  - name: settled polls are answered 304
    metric: {name: controller.requests.config.304, min: 10}
  - name: no config poll is answered 304
    metric: {name: controller.requests.config.304, max: 0}
""",
    )
    assert run_info["bulk_requests"] > 0  # the bulk path (SETTLED_STATUS) took part
    controller = summary["metrics"]["controller"]
    _check_consistent(controller)
    config = controller["config"]["status"]
    assert config["304"] > 0 and config["200"] >= 1
    info = controller["info"]["status"]
    assert info and all(code.startswith("2") for code in info)
    requested = summary["metrics"]["requested"]
    assert requested["controller.requests.config.304"] == config["304"]
    assert requested["controller.requests.config.200"] == config["200"]
    assert requested["controller.answers.201"] == controller["all"]["status"]["201"]
    stored = {**summary, "metrics": {k: v for k, v in summary["metrics"].items() if k != "requested"}}
    for name, value in requested.items():  # suite criteria read the same figures from summary.json
        assert metric_value(stored, name) == value, name  # type: ignore[arg-type]
    verdicts = {e["name"]: e["status"] for e in summary["expectations"]}
    assert verdicts["settled polls are answered 304"] == "passed"
    assert verdicts["no config poll is answered 304"] == "failed"
    assert summary["verdict"] == "failed"


def test_503_counts_match_rejected_under_controller_503(tmp_path: Path) -> None:
    summary, _ = run(
        tmp_path,
        "busy",
        """
metrics: [controller.answers.503, controller.rejected_503, controller.requests.config.503]
steps:
  - power_on: {}
  - expect: {device_state: ONLINE, within: 5m}
  - controller_503: {duration: 3m}
  - wait: 10m
expect:
  - metric: {name: controller.answers.503, min: 1}
""",
    )
    assert summary["verdict"] == "passed", summary["expectations"]
    controller = summary["metrics"]["controller"]
    _check_consistent(controller)
    requested = summary["metrics"]["requested"]
    assert requested["controller.answers.503"] == requested["controller.rejected_503"] == controller["all"]["rejected_503"] > 0
    assert requested["controller.requests.config.503"] == controller["config"]["rejected_503"] > 0


def test_status_metric_names_are_known() -> None:
    for code in metric_names.ANSWER_STATUSES:
        assert metric_names.is_numeric(f"controller.answers.{code}")
        for kind in metric_names.CONTROLLER_KINDS:
            assert metric_names.is_numeric(f"controller.requests.{kind}.{code}")
    assert not metric_names.is_known("controller.requests.config.999")


# ---------------------------------------------------------------------- real backends --
def _endpoint(requests: dict[str, int], p95_ms: float) -> EndpointSummary:
    return {"requests": sum(requests.values()), "status": requests, "p50_ms": p95_ms / 2, "p95_ms": p95_ms,
            "p99_ms": p95_ms * 2, "window": sum(requests.values())}


def test_add_endpoint_stats_adds_counts_and_keeps_the_larger_percentile() -> None:
    before = {"config": _endpoint({"200": 2, "304": 5}, 40.0), "ping": _endpoint({"200": 3}, 5.0)}
    latest = {"config": _endpoint({"304": 7, "503": 1}, 10.0), "info": _endpoint({"201": 4}, 8.0)}
    merged = add_endpoint_stats(before, latest)
    assert merged["config"]["status"] == {"200": 2, "304": 12, "503": 1}
    assert merged["config"]["requests"] == 15
    assert merged["config"]["p95_ms"] == 40.0 and merged["config"]["p99_ms"] == 80.0
    assert merged["ping"] == before["ping"] and merged["info"] == latest["info"]
    assert add_endpoint_stats({}, latest) == latest


class _Admin:
    """The admin API's ``GET /v1/stats`` of the controller process that is running."""

    def __init__(self) -> None:
        self.answer: dict[str, EndpointSummary] = {}

    def stats(self) -> dict[str, EndpointSummary]:
        return self.answer


class _Process:
    running = True

    def kill(self) -> None:
        self.running = False


@pytest.fixture
def live(tmp_path: Path) -> tuple[LiveBackend[Any], _Admin]:
    path = tmp_path / "live.yaml"
    path.write_text(BASE.format(name="live") + "steps:\n  - power_on: {}\n")
    be: LiveBackend[Any] = LiveBackend(load_for_backend(path, "emulated"), seed=1)
    admin = _Admin()
    be.admin = admin  # type: ignore[assignment]
    be.controller = _Process()  # type: ignore[assignment]
    return be, admin


def test_admin_stats_add_up_across_a_controller_restart(live: tuple[LiveBackend[Any], _Admin]) -> None:
    be, admin = live
    admin.answer = {"config": _endpoint({"200": 1, "304": 6}, 30.0), "info": _endpoint({"201": 2}, 4.0)}
    first = be.admin_stats()
    assert first["config"]["status"] == {"200": 1, "304": 6} and first["all"]["status"] == {"200": 1, "201": 2, "304": 6}
    admin.answer = {**admin.answer, "config": _endpoint({"200": 1, "304": 9}, 30.0)}  # polls until the outage
    be.controller_outage()
    during = be.admin_stats()  # the process is gone: what it counted is kept
    assert during["config"]["status"] == {"200": 1, "304": 9} and during["all"]["requests"] == 12
    # the restarted process (as _restart_controller makes it) counts from zero
    be.controller, be.controller_down = _Process(), False  # type: ignore[assignment]
    admin.answer = {"config": _endpoint({"200": 1, "304": 2, "503": 1}, 12.0)}
    after = be.admin_stats()
    assert after["config"]["status"] == {"200": 2, "304": 11, "503": 1}
    assert after["config"]["requests"] == 14 and after["config"]["rejected_503"] == 1
    assert after["info"]["status"] == {"201": 2}
    assert after["all"] == {"requests": 16, "rejected_503": 1, "status": {"200": 2, "201": 2, "304": 11, "503": 1}}
    assert after["config"]["p95"] == pytest.approx(0.030)  # the larger of the two processes'
