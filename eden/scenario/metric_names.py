"""Names a scenario may list under ``metrics:`` and test in ``metric:`` conditions.

Distribution metrics (durations measured per device and event) are also
available with a statistic suffix, e.g. ``boot.time.p95``.
"""

from __future__ import annotations

import difflib

STATISTICS: dict[str, str] = {
    "count": "number of samples",
    "mean": "arithmetic mean",
    "p50": "median",
    "p95": "95th percentile",
    "p99": "99th percentile",
    "min": "smallest sample",
    "max": "largest sample",
}

DISTRIBUTIONS: dict[str, str] = {
    "boot.time": "seconds from power-on until EVE's agents run, per boot",
    "onboarding.time": "seconds from first power-on until the controller registered the device",
    "update.duration": "seconds from a base-OS update (or a retry) being configured until it is committed; failed attempts are counted by 'rollbacks'",
    "rollback.time": "seconds from the start of the new image's one test boot until the device is up on the previous image",
    "reconnect.time": "seconds from connectivity returning until the device reaches the controller",
    "attestation.time": "seconds from an attestation request until the device's quote is verified",
}

CONTROLLER_KINDS: tuple[str, ...] = ("certs", "register", "uuid", "config", "info", "metrics", "attest", "ping", "logs")
LATENCY_STATS: tuple[str, ...] = ("p50", "p95", "p99", "max", "mean")
ANSWER_STATUSES: tuple[str, ...] = ("200", "201", "304", "400", "401", "403", "404", "409", "422", "429", "500", "503")
"""HTTP statuses eden's controllers answer (:meth:`eve.controller.Controller.answer` and
:mod:`eden.controller.api`; 503 for overload, the answer switch or a busy database; spec §2, §2.1)."""

_PLAIN: dict[str, str] = {
    "controller.requests": "requests the controller received",
    "controller.rejected_503": "requests the controller answered with 503 (overload or injected)",
    "controller.request_rate": "mean controller requests per second over the run",
    "devices.total": "number of devices in the fleet",
    "devices.bricked": "devices that cannot boot any partition or crash-loop",
    "devices.by_state": "devices per ZDeviceState at the end of the run",
    "devices.by_version": "devices per running base-OS version at the end of the run",
    "rollbacks": "base-OS rollbacks to the previous partition",
    "reboots": "device reboots, for any reason",
    "updates.committed": "base-OS updates that passed testing and were committed",
    "updates.failed": "base-OS updates that failed (download, write, test or rollback)",
    "dpc.switches": "switches of a device to another DPC after failed connectivity tests (spec §4)",
    "rollout.waves_completed": "rollout waves that finished successfully",
    "rollout.devices_updated": "devices the rollout brought to its target image",
    "rollout.state": "rollout state: running, paused, stopped or completed",
}

NON_NUMERIC: frozenset[str] = frozenset({"devices.by_state", "devices.by_version", "rollout.state"})
"""Breakdowns and states: reported, but not comparable with ``min``/``max``."""


def _build() -> dict[str, str]:
    metrics: dict[str, str] = {}
    for base, doc in DISTRIBUTIONS.items():
        metrics[base] = doc + " (all statistics)"
        for stat, stat_doc in STATISTICS.items():
            metrics[f"{base}.{stat}"] = f"{stat_doc} of {base}"
    metrics.update(_PLAIN)
    for stat in LATENCY_STATS:
        metrics[f"controller.latency.{stat}"] = f"{STATISTICS[stat]} controller response latency, seconds"
    for code in ANSWER_STATUSES:
        metrics[f"controller.answers.{code}"] = f"requests of any kind the controller answered with HTTP {code}"
    for kind in CONTROLLER_KINDS:
        metrics[f"controller.requests.{kind}"] = f"'{kind}' requests the controller received"
        for code in ANSWER_STATUSES:
            metrics[f"controller.requests.{kind}.{code}"] = f"'{kind}' requests the controller answered with HTTP {code}"
        for stat in LATENCY_STATS:
            metrics[f"controller.latency.{kind}.{stat}"] = (
                f"{STATISTICS[stat]} latency of '{kind}' requests, seconds"
            )
    return metrics


METRICS: dict[str, str] = _build()
"""Every known metric name -> one-line description."""


def is_known(name: str) -> bool:
    """True when ``name`` is a metric the harness reports."""
    return name in METRICS


def is_numeric(name: str) -> bool:
    """True when ``name`` is a number that ``min``/``max`` can be compared with."""
    return name in METRICS and name not in NON_NUMERIC


def close_names(name: str, n: int = 3) -> list[str]:
    """Known names similar to ``name`` (for did-you-mean hints)."""
    return difflib.get_close_matches(name, list(METRICS), n=n, cutoff=0.6)
