"""Suite pass criteria, judged on an entry's stored ``summary.json`` (never on a live backend).

Metric names are those of :mod:`eden.scenario.metric_names`, looked up in the summary:
``<timing>.<stat>`` in ``metrics.timings``, counters in ``metrics.counters``,
``controller.latency[.<kind>].<stat>``/``controller.requests[.<kind>[.<status>]]``/
``controller.answers.<status>``/``controller.rejected_503`` in ``metrics.controller``, anything
the scenario listed under ``metrics:`` in ``metrics.requested``.
"""

from __future__ import annotations

import math
from typing import Sequence

from eden.metrics import STATS, TIMINGS
from eden.reports.model import CriterionResult, RunSummary
from eden.suite.model import Criteria, Threshold
from eden.units import format_duration

_DURATION_PREFIXES = (*TIMINGS, "controller.latency")


def _mapping(value: object) -> dict[str, object]:
    """``value`` when it is a dict (a block of the summary), else an empty one."""
    return value if isinstance(value, dict) else {}


def metric_value(summary: RunSummary, name: str) -> object:
    """The value of metric ``name`` in a run summary, or None when the run did not measure it."""
    metrics = summary.get("metrics") or {}
    requested = metrics.get("requested") or {}
    if name in requested and not isinstance(requested[name], dict):
        return requested[name]
    base, _, stat = name.rpartition(".")
    timings = metrics.get("timings") or {}
    if base in TIMINGS and stat in STATS:
        return _mapping(timings.get(base)).get(stat)
    counters = metrics.get("counters") or {}
    if name in counters:
        return counters[name]
    controller = metrics.get("controller") or {}
    parts = name.split(".")
    if parts[0] == "controller" and controller:
        every = controller.get("all") or {}
        if name == "controller.requests":
            return every.get("requests")
        if name == "controller.rejected_503":
            return every.get("rejected_503")
        if name == "controller.request_rate":
            sim = summary.get("simulated_seconds") or 0
            requests = every.get("requests", 0)
            return requests / sim if sim and isinstance(requests, (int, float)) else None
        if len(parts) == 3 and parts[1] == "latency":
            return every.get(parts[2])
        if len(parts) == 3 and parts[1] == "answers":
            return _mapping(every.get("status")).get(parts[2], 0)
        if parts[1] == "requests" and len(parts) in (3, 4) and parts[2] in controller:
            kind = _mapping(controller.get(parts[2]))
            return kind.get("requests") if len(parts) == 3 else _mapping(kind.get("status")).get(parts[3], 0)
        if len(parts) == 4 and parts[1] == "latency":
            return _mapping(controller.get(parts[2])).get(parts[3])
    if name == "devices.total":
        return summary.get("devices")
    rollouts = summary.get("rollouts") or []
    if name.startswith("rollout.") and rollouts:
        waves = rollouts[-1].get("waves") or []
        if name == "rollout.waves_completed":
            return sum(1 for w in waves if w.get("outcome") == "passed")
        if name == "rollout.devices_updated":
            return sum(w.get("succeeded", 0) for w in waves)
    return None


def _show(name: str, value: float) -> str:
    if name.startswith(_DURATION_PREFIXES) and not name.endswith(".count"):
        return format_duration(value) if value >= 1 else f"{value * 1000:.0f}ms"
    return f"{value:g}"


def _unit(name: str) -> str:
    """The unit of metric ``name``'s value, for the reports."""
    if name.startswith(_DURATION_PREFIXES) and not name.endswith(".count"):
        return "s"
    return "req/s" if name == "controller.request_rate" else ""


def judge_threshold(t: Threshold, summary: RunSummary) -> CriterionResult:
    """One threshold on one summary: passed, or failed with why (unmeasured counts as failed)."""
    bounds = []
    if t.min is not None:
        bounds.append(f">= {_show(t.metric, t.min)}")
    if t.max is not None:
        bounds.append(f"<= {_show(t.metric, t.max)}")
    name = t.name or f"{t.metric} {' and '.join(bounds)}"
    value = metric_value(summary, t.metric)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return CriterionResult(name=name, status="failed", observed=None, why="not measured in this run", unit=_unit(t.metric))
    if t.max is not None and value > t.max:
        return CriterionResult(name=name, status="failed", observed=value, why=f"{_show(t.metric, value)} > {_show(t.metric, t.max)}", unit=_unit(t.metric))
    if t.min is not None and value < t.min:
        return CriterionResult(name=name, status="failed", observed=value, why=f"{_show(t.metric, value)} < {_show(t.metric, t.min)}", unit=_unit(t.metric))
    return CriterionResult(name=name, status="passed", observed=value, unit=_unit(t.metric))


def judge(criteria: Criteria, thresholds: Sequence[Threshold], summary: RunSummary) -> list[CriterionResult]:
    """Every criterion that applies to an entry, judged on its summary."""
    out: list[CriterionResult] = []
    if criteria.all_expectations:
        exps = summary.get("expectations") or []
        passed = sum(1 for e in exps if e.get("status") == "passed")
        ok = summary.get("verdict") == "passed"
        out.append(
            CriterionResult(
                name="all expectations pass",
                status="passed" if ok else "failed",
                observed=f"{passed}/{len(exps)} passed",
                why="" if ok else (f"{len(exps) - passed} of {len(exps)} not met" if passed < len(exps) else "the run failed"),
            )
        )
    out.extend(judge_threshold(t, summary) for t in thresholds)
    return out
