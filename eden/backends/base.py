"""The one small protocol every backend implements, and the clock-neutral run primitives.

The step runner (:mod:`eden.runner`) is written once as generators that *yield* what they want
from the clock: :class:`Sleep` (let time pass) or :class:`Spawn` (start a concurrent activity,
e.g. a fault or a rollout). The simulator backend turns those into SimPy timeouts and processes;
a real-time backend turns them into ``asyncio.sleep`` and tasks. No scenario rule is written twice.

A backend declares its capabilities up front, so a step it cannot perform is refused when the
scenario is validated, before anything starts (``eden.scenario.load``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, Mapping, Protocol

from eden.scenario.model import ACTIONS


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Spawn:
    gen: "RunGen"
    name: str = ""


RunGen = Generator[Sleep | Spawn, None, Any]

ALL_CAPABILITIES = frozenset(cap for _arg, cap, _f in ACTIONS.values())


class Backend(Protocol):
    name: str
    capabilities: frozenset[str]
    max_devices: int | None

    def now(self) -> float:
        """Seconds since the run started, on this backend's clock (simulated or real)."""

    def apply(self, action: str, devices: list[str], args: Any) -> None:
        """Carry out one device or controller action now (power, network, base OS, apps, ...)."""

    def views(self) -> Mapping[str, Mapping[str, Any]]:
        """The device views (see :mod:`eden.conditions`), keyed by device id."""

    def changes(self, since: int) -> tuple[int, list[str] | None]:
        """Devices whose view changed after sequence ``since``: (new sequence, ids or None = all)."""

    def controller_stats(self) -> dict[str, Any]:
        """Request counts and latency percentiles per request kind, plus ``all``."""

    def record(self, what: str, data: dict[str, Any], device: str | None = None) -> None:
        """Add a harness event to the run's timeline."""


BACKENDS: dict[str, dict[str, Any]] = {
    "sim": {
        "available": True,
        "capabilities": ALL_CAPABILITIES,
        "refuses": {},
        "max_devices": None,
        "description": "discrete-event simulator: EVE node models in simulated time",
    },
    "emulated": {
        "available": True,
        # An agent cannot be told to hang from outside; its controller puts no network config
        # (system adapters) on the wire, so set_network has no effect there (netconfig).
        "capabilities": ALL_CAPABILITIES - {"hang", "netconfig"},
        # Actions refused although the backend has their capability (with the reason shown).
        "refuses": {"controller_503": "its controller has no switch that answers 503; use controller_outage"},
        "max_devices": 200,
        "description": "one device-agent process per device against a real TLS controller, in real time",
    },
    "qemu": {
        "available": True,
        # docs/qemu.md: power, NIC links, config, base-OS updates through the controller (the agent
        # writes the other slot itself) and attestation with the VM's real TPM work on the reference
        # image; hang, apps, controller faults and rollouts do not, so such scenarios are refused at
        # validation.
        "capabilities": frozenset({"power", "network", "config", "observe", "wait", "attestation", "baseos", "tamper"}),
        "refuses": {},
        "max_devices": 4,
        "description": "QEMU VMs booting the reference image with swtpm and a serial console, in real time",
    },
    "board": {
        "available": False,
        "capabilities": ALL_CAPABILITIES - {"tamper", "hang", "netconfig"},
        "refuses": {},
        "max_devices": 16,
        "description": "physical boards behind power switches and serial consoles (planned)",
    },
}
"""Known backends and what they can do: the one table ``eden validate --backend X`` and ``eden run``
check a scenario against (any backend for validate; run needs an available one). An action is
performed iff the backend has its capability (``ACTIONS``) and does not list it in ``refuses``."""


def backend_capabilities(name: str) -> tuple[frozenset[str], int | None]:
    entry = BACKENDS[name]
    return entry["capabilities"], entry["max_devices"]


def refused_actions(name: str) -> dict[str, str]:
    """Actions backend ``name`` refuses although it has their capability, with the reason."""
    entry = BACKENDS.get(name)
    return dict(entry["refuses"]) if entry is not None else {}


def backend_actions(name: str) -> frozenset[str]:
    """Every action backend ``name`` performs (what validation lets through)."""
    caps = BACKENDS[name]["capabilities"]
    refused = refused_actions(name)
    return frozenset(a for a, (_arg, cap, _f) in ACTIONS.items() if cap in caps and a not in refused)


def runnable_backends() -> list[str]:
    return sorted(name for name, entry in BACKENDS.items() if entry["available"])


def view_summary(views: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts of devices per state and per running version (for reports and progress)."""
    states: dict[str, int] = {}
    versions: dict[str, int] = {}
    for v in views.values():
        state = v.get("state") if v.get("reported") else ("BRICKED" if v.get("bricked") else "UNREPORTED")
        states[state] = states.get(state, 0) + 1
        sw = v.get("sw") or []
        ver = sw[0].get("version") if sw else None
        if ver is not None:
            versions[ver] = versions.get(ver, 0) + 1
    return {"by_state": dict(sorted(states.items())), "by_version": dict(sorted(versions.items()))}
