"""Metrics cut from the run's timeline, the device views and the controller's counters.

Timings (seconds) come from timeline events, so every backend that records the same events gets
the same metrics: ``boot.time`` (boot start -> agents up), ``onboarding.time`` (first boot start ->
onboarded), ``update.duration`` (new base-OS config seen, or a retry, -> committed; failed attempts
are not timed: count them with ``rollbacks``), ``rollback.time`` (start of the new image's one test
boot -> the fallback boot is up, crash-on-boot included), ``reconnect.time`` (network / controller restored -> first successful
contact), ``attestation.time`` (boot -> attestation COMPLETE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np

from eden.backends.observe import ViewSummary, view_summary
from eden.timeline import Timeline

if TYPE_CHECKING:
    from eden.backends.base import Backend
    from eden.runner import Runner

TIMINGS = ("boot.time", "onboarding.time", "update.duration", "rollback.time", "reconnect.time", "attestation.time")
STATS = ("count", "mean", "p50", "p95", "p99", "min", "max")

Stat = float | int | None
"""One statistic: ``count`` is an int, the others a float (None without values)."""
Stats = dict[str, Stat]
"""A timing's statistics, keyed by the names in STATS (:func:`summarize`)."""
MetricValue = Stat | str | Stats | dict[str, int] | dict[str | None, int]
"""What :func:`compute_metric` gives: a number, a timing's Stats, ``devices.by_*`` counts, a rollout
state, or None when the run has no value for it."""


class Cache(TypedDict, total=False):
    """What was already cut from a run (see :func:`compute_metric`)."""

    timings: dict[str, list[float]]
    counters: dict[str, int]
    devices: ViewSummary
    controller: dict[str, Any]  # Backend.controller_stats(), typed there


class RunMetrics(TypedDict):
    """A run summary's ``metrics`` (:func:`all_metrics`)."""

    timings: dict[str, Stats]
    counters: dict[str, int]
    devices: ViewSummary
    controller: dict[str, Any]  # Backend.controller_stats(), typed there
    requested: NotRequired[dict[str, MetricValue]]


def timings(timeline: Timeline) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in TIMINGS}
    boot_start: dict[str, float] = {}
    first_boot: dict[str, float] = {}
    booted_at: dict[str, float] = {}
    test_boot: dict[str, float] = {}
    update_seen: dict[tuple[str, str], float] = {}
    restored_all: float | None = None
    restored: dict[str, float] = {}
    reconnected: dict[str, float] = {}
    onboarded: set[str] = set()
    for e in timeline.events:
        d, what = e.device, e.what
        if e.source == "harness":
            if what in ("network_up", "controller_restore"):
                if d is None:
                    restored_all = e.t
                else:
                    restored[d] = e.t
            continue
        if d is None:
            continue
        if what == "boot_start":
            boot_start[d] = e.t
            first_boot.setdefault(d, e.t)
            if e.data.get("test_boot"):
                test_boot[d] = e.t  # the new image's one boot: a rollback is timed from here
        elif what == "booted":
            if d in boot_start:
                out["boot.time"].append(e.t - boot_start[d])
            if e.data.get("rolled_back") is not None:  # by partition outcome, not boot reason (§3)
                if d in test_boot:
                    out["rollback.time"].append(e.t - test_boot.pop(d))
                # the failed attempt is over; a retry is timed from its own start
                for key in [k for k in update_seen if k[0] == d]:
                    del update_seen[key]
            elif not e.data.get("testing"):
                test_boot.pop(d, None)
            booted_at[d] = e.t
        elif what == "onboarded" and d in first_boot and d not in onboarded:
            # once per device: real backends see it from both ends (the agent and the controller)
            onboarded.add(d)
            out["onboarding.time"].append(e.t - first_boot[d])
        elif what == "baseos_config":
            update_seen.setdefault((d, str(e.data.get("version"))), e.t)
        elif what == "baseos_retry":
            update_seen[(d, str(e.data.get("version")))] = e.t
        elif what == "update_committed":
            t0 = update_seen.pop((d, str(e.data.get("version"))), None)
            if t0 is not None:
                out["update.duration"].append(e.t - t0)
        elif what == "attested" and d in booted_at:
            out["attestation.time"].append(e.t - booted_at.pop(d))
        elif what == "controller_reachable":
            ref = max(restored.get(d, -1.0), restored_all if restored_all is not None else -1.0)
            if ref >= 0 and reconnected.get(d, -1.0) < ref:
                out["reconnect.time"].append(e.t - ref)
                reconnected[d] = e.t
    return out


def stat(values: list[float], which: str) -> Stat:
    if which == "count":
        return len(values)
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    if which == "mean":
        return float(arr.mean())
    if which == "min":
        return float(arr.min())
    if which == "max":
        return float(arr.max())
    q = {"p50": 50, "p95": 95, "p99": 99}[which]
    return float(np.percentile(arr, q, method="higher"))


def summarize(values: list[float]) -> Stats:
    return {s: _round(stat(values, s)) for s in STATS}


def _round(v: Stat) -> Stat:
    return round(v, 6) if isinstance(v, float) else v


def counters(timeline: Timeline) -> dict[str, int]:
    c = {"rollbacks": 0, "reboots": 0, "updates.committed": 0, "updates.failed": 0, "devices.bricked": 0, "dpc.switches": 0}
    bricked: set[str] = set()
    for e in timeline.events:
        if e.source != "device":
            continue
        if e.what == "booted" and e.data.get("rolled_back") is not None:
            # §3: a rollback is the old image booting after the new one's test boot, whatever the
            # boot reason says (a power cut reports POWER_FAIL/UNKNOWN, an early death a stale UPDATE).
            c["rollbacks"] += 1
            c["updates.failed"] += 1
        elif e.what == "reset":
            c["reboots"] += 1
        elif e.what == "update_committed":
            c["updates.committed"] += 1
        elif e.what == "dpc_switch":
            c["dpc.switches"] += 1
        elif e.what == "bricked" and e.device:
            bricked.add(e.device)
    c["devices.bricked"] = len(bricked)
    return c


def compute_metric(name: str, backend: Backend, runner: Runner | None = None, cache: Cache | None = None) -> MetricValue:
    """The value of one named metric (see ``eden.scenario.metric_names``).

    ``cache`` holds what was already cut from the run (``timings``, ``counters``, ``devices``,
    ``controller`` as :func:`all_metrics` computes them), so several metrics of one finished run
    scan the timeline once."""
    timeline: Timeline = backend.timeline
    if cache is None:
        cache = {}
    base, _, suffix = name.rpartition(".")
    if base in TIMINGS and suffix in STATS or name in TIMINGS:
        if "timings" not in cache:
            cache["timings"] = timings(timeline)
        if name in TIMINGS:
            return summarize(cache["timings"][name])
        return _round(stat(cache["timings"][base], suffix))
    if name.startswith("controller."):
        if "controller" not in cache:
            cache["controller"] = backend.controller_stats()
        return _controller_metric(name, backend, cache["controller"])
    if name in ("devices.by_state", "devices.by_version"):
        if "devices" not in cache:
            cache["devices"] = view_summary(backend.views())
        devices = cache["devices"]
        return devices["by_state"] if name == "devices.by_state" else devices["by_version"]
    if name == "devices.total":
        return len(backend.views())
    if name == "devices.bricked":
        return sum(1 for v in backend.views().values() if v.get("bricked"))
    if name in ("rollbacks", "reboots", "updates.committed", "updates.failed", "dpc.switches"):
        if "counters" not in cache:
            cache["counters"] = counters(timeline)
        return cache["counters"][name]
    if name.startswith("rollout."):
        rollouts = runner.rollouts if runner is not None else []
        if not rollouts:
            return None
        last = rollouts[-1]
        if name == "rollout.state":
            return last.state
        if name == "rollout.waves_completed":
            return sum(1 for w in last.waves if w.get("outcome") == "passed")
        if name == "rollout.devices_updated":
            return sum(w.get("succeeded", 0) for w in last.waves)
    return None


def _controller_metric(name: str, backend: Backend, summary: dict[str, Any]) -> Stat:
    parts = name.split(".")
    if name == "controller.requests":
        return summary["all"]["requests"]
    if name == "controller.rejected_503":
        return summary["all"]["rejected_503"]
    if parts[1] == "requests" and len(parts) == 3:
        return summary[parts[2]]["requests"] if parts[2] in summary else None
    if parts[1] == "requests" and len(parts) == 4:  # controller.requests.<kind>.<status>
        return summary[parts[2]].get("status", {}).get(parts[3], 0) if parts[2] in summary else None
    if parts[1] == "answers" and len(parts) == 3:  # controller.answers.<status>
        return summary["all"].get("status", {}).get(parts[2], 0)
    if name == "controller.request_rate":
        return _round(summary["all"]["requests"] / backend.now()) if backend.now() > 0 else 0.0
    if parts[1] == "latency":
        if len(parts) == 3:
            return _round(summary["all"].get(parts[2]))
        if len(parts) == 4 and parts[2] in summary:
            return _round(summary[parts[2]].get(parts[3]))
    return None


def all_metrics(backend: Backend, runner: Runner | None, names: list[str]) -> RunMetrics:
    """The metrics a scenario asks for, plus the always-reported core set."""
    cache: Cache = {
        "timings": timings(backend.timeline),
        "counters": counters(backend.timeline),
        "devices": view_summary(backend.views()),
        "controller": backend.controller_stats(),
    }
    out: RunMetrics = {"timings": {k: summarize(v) for k, v in cache["timings"].items()},
                       "counters": dict(cache["counters"]), "devices": cache["devices"], "controller": cache["controller"]}
    if names:
        out["requested"] = {n: compute_metric(n, backend, runner, cache) for n in names}
    return out
