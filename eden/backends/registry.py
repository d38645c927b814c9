"""The backends eden knows: name -> how to build one, what it is, whether it runs here.

What a backend can do is read from its ports' class-level capabilities through the action table
(:func:`eden.backends.actions.performed_actions`), so ``eden validate --backend X``, ``eden run``
and the runner agree by construction. A new backend is one :class:`BackendEntry` here plus its
class (a clock, a :class:`~eden.backends.ports.ControllerPort` and a
:class:`~eden.backends.ports.DevicePort`).

Building the entry's class is deferred to first use: validation of a scenario for ``sim`` does
not import the real-time backends, and the CLI's parsers need only the names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eden.backends.actions import RUNNER_ACTIONS, performed_actions, refusal_reasons
from eden.errors import InfrastructureError
from eden.scenario.model import ACTIONS

if TYPE_CHECKING:
    from eden.backends.base import Backend, BackendClass
    from eden.scenario.load import LoadedScenario
    from eden.timeline import Timeline

NOT_PERFORMED = "its ports do not perform it"


@dataclass(frozen=True)
class BackendEntry:
    name: str
    description: str
    max_devices: int | None
    factory: str | None
    """``module:Class`` of the backend, or None for one that is not built yet."""
    runner_actions: frozenset[str] = RUNNER_ACTIONS
    """The runner's own actions this backend's clock and observation support."""
    planned_actions: frozenset[str] = frozenset()
    """What a backend without a factory is meant to do (documented, validated against)."""

    @property
    def runnable(self) -> bool:
        return self.factory is not None

    def backend_class(self) -> BackendClass:
        if self.factory is None:
            raise InfrastructureError(f"backend '{self.name}' is not available")
        module, attr = self.factory.split(":")
        cls: BackendClass = getattr(importlib.import_module(module), attr)
        return cls

    def actions(self) -> frozenset[str]:
        """Every scenario action this backend performs."""
        if self.factory is None:
            return self.planned_actions
        cls = self.backend_class()
        return performed_actions(cls.controller_port_type, cls.device_port_type, self.runner_actions)

    def capabilities(self) -> frozenset[str]:
        """The capability names (``ACTIONS``) of the actions it performs."""
        return frozenset(ACTIONS[a][1] for a in self.actions())

    def refusals(self) -> dict[str, str]:
        """Actions refused although the backend has their capability, with the reason shown."""
        performed = self.actions()
        caps = self.capabilities()
        reasons: dict[str, str] = {}
        if self.factory is not None:
            cls = self.backend_class()
            reasons = refusal_reasons(cls.controller_port_type, cls.device_port_type)
        return {
            a: reasons.get(a, NOT_PERFORMED)
            for a, (_arg, cap, _f) in ACTIONS.items()
            if a not in performed and cap in caps
        }

    def make(self, loaded: LoadedScenario, *, seed: int, timeline: Timeline, out_dir: Path | None = None) -> Backend:
        return self.backend_class()(loaded, seed=seed, timeline=timeline, out_dir=out_dir)


REGISTRY: dict[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        BackendEntry(
            "sim", "discrete-event simulator: EVE node models in simulated time", None, "eden.backends.sim:SimBackend"
        ),
        BackendEntry(
            "emulated",
            "one device-agent process per device against a real TLS controller, in real time",
            200,
            "eden.backends.emulated:EmulatedBackend",
        ),
        BackendEntry(
            "qemu",
            "QEMU VMs booting the reference image with swtpm and a serial console, in real time",
            4,
            "eden.backends.qemu:QemuBackend",
            # docs/qemu.md: no rollouts (their waves and halts are not exercised on VMs).
            runner_actions=frozenset({"wait", "expect"}),
        ),
        BackendEntry(
            "board",
            "boards in a lab (lab file: --lab), through their power, console, media and link drivers, in real time",
            16,
            "eden.backends.board:BoardBackend",
            # docs/board.md: no rollouts, as on qemu (their waves and halts are not exercised on boards).
            runner_actions=frozenset({"wait", "expect"}),
        ),
    )
}
"""Known backends: the one table ``eden validate --backend X`` and ``eden run`` check a scenario
against (any backend for validate; run needs a runnable one)."""


def entry(name: str) -> BackendEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise InfrastructureError(f"backend '{name}' is not available") from None


def backend_capabilities(name: str) -> tuple[frozenset[str], int | None]:
    e = REGISTRY[name]
    return e.capabilities(), e.max_devices


def refused_actions(name: str) -> dict[str, str]:
    """Actions backend ``name`` refuses although it has their capability, with the reason."""
    e = REGISTRY.get(name)
    return e.refusals() if e is not None else {}


def backend_actions(name: str) -> frozenset[str]:
    """Every action backend ``name`` performs (what validation lets through)."""
    return REGISTRY[name].actions()


def runnable_backends() -> list[str]:
    return sorted(name for name, e in REGISTRY.items() if e.runnable)


def make_backend(name: str, loaded: LoadedScenario, seed: int, timeline: Timeline, out_dir: Path | None = None) -> Backend:
    return entry(name).make(loaded, seed=seed, timeline=timeline, out_dir=out_dir)
