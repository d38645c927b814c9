"""The simulator's ports: the controller in process (:class:`simulator.controller.ControllerModel`)
and the devices as EVE node machines on the SimPy engine."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np

from eden.agent.faults import Fault, node_input
from eden.backends.ports import CONTROLLER_METHODS, DEVICE_METHODS, ControllerPort, ControllerStats, DevicePort, DeviceView

if TYPE_CHECKING:
    from eden.backends.sim import SimBackend




class SimControllerPort(ControllerPort):
    capabilities = CONTROLLER_METHODS
    backend_name = "sim"

    def __init__(self, backend: SimBackend) -> None:
        self.be = backend
        self.ctrl = backend.ctrl

    def _idx(self, devices: list[str]) -> list[int]:
        return [self.be.index[d] for d in devices]

    def set_items(self, devices: list[str], items: dict[str, Any], *, everyone: bool) -> None:
        self.ctrl.set_items(self._idx(devices), items, globally=everyone)

    def set_baseos(self, devices: list[str], image: str, version: str, activate: bool) -> None:
        self.ctrl.set_baseos(self._idx(devices), image, version, activate)

    def retry_update(self, devices: list[str]) -> None:
        self.ctrl.retry_update(self._idx(devices))

    def reboot(self, devices: list[str]) -> None:
        self.ctrl.reboot(self._idx(devices))

    def shutdown(self, devices: list[str]) -> None:
        self.ctrl.shutdown(self._idx(devices))

    def delete_device(self, devices: list[str], recreate: str) -> None:
        self.ctrl.delete_device(self._idx(devices), recreate)

    def force_fallback(self, devices: list[str]) -> None:
        self.ctrl.force_fallback(self._idx(devices))

    def set_app(self, devices: list[str], name: str, spec: dict[str, Any] | None) -> None:
        self.ctrl.set_app(self._idx(devices), name, spec)

    def set_network(self, devices: list[str], mgmt: list[str], broken: bool) -> None:
        self.ctrl.set_network(self._idx(devices), mgmt, broken)

    def refuse_certs(self, devices: list[str], enable: bool) -> None:
        self.ctrl.refuse_certs(self._idx(devices), enable)

    def set_maintenance(self, devices: list[str], enable: bool) -> None:
        self.ctrl.set_maintenance(self._idx(devices), enable)

    def revoke_token(self, devices: list[str]) -> None:
        self.ctrl.revoke_token(self._idx(devices))

    def outage(self) -> None:
        self.ctrl.mode = "down"

    def answer_503(self) -> None:
        self.ctrl.mode = "503"

    def hang(self) -> None:
        self.ctrl.mode = "hang"

    def restore(self) -> None:
        self.ctrl.mode = "up"
        self.be.record("controller_restored", {})

    def views(self) -> Mapping[str, DeviceView]:
        return _Views(self.be)

    def changes(self, since: int) -> tuple[int, list[str] | None]:
        return self.be.journal_changes(since)

    def stats(self) -> ControllerStats:
        return self.ctrl.latency_summary()


class SimDevicePort(DevicePort):
    capabilities = DEVICE_METHODS
    backend_name = "sim"

    def __init__(self, backend: SimBackend) -> None:
        self.be = backend

    def _idx(self, devices: list[str]) -> list[int]:
        return [self.be.index[d] for d in devices]

    def power_on(self, devices: list[str], spread: float) -> None:
        idx = self._idx(devices)
        delays = self.be.harness_rng.uniform(0.0, spread, len(idx)) if spread > 0 else np.zeros(len(idx))
        for i, delay in zip(idx, delays.tolist()):
            self.be.later(delay, partial(self.be.power, i, True))

    def power_off(self, devices: list[str]) -> None:
        for i in self._idx(devices):
            self.be.power(i, False)

    def power_cycle(self, devices: list[str], off_for: float) -> None:
        for i in self._idx(devices):
            self.be.power(i, False)
            self.be.later(off_for, partial(self.be.power, i, True))

    def graceful_poweroff(self, devices: list[str]) -> None:
        for i in self._idx(devices):
            self.be.engine.call(i, "poweroff_cmd")

    def set_links(self, devices: list[str], ports: list[str] | None, up: bool) -> None:
        for i in self._idx(devices):
            self.be.engine.set_ports(i, ports, up)

    def tamper(self, devices: list[str], stage: str) -> None:
        for i in self._idx(devices):
            self.be.engine.call(i, "tamper", stage)

    def hang(self, devices: list[str], agent: str) -> None:
        self._fault(devices, Fault(action="hang", agent=agent))

    def crash(self, devices: list[str], kind: str, agent: str) -> None:
        self._fault(devices, Fault.model_validate({"action": "crash", "kind": kind, "agent": agent}))

    def _fault(self, devices: list[str], fault: Fault) -> None:
        """The node input a device agent's fault inbox calls for the same fault (eden/agent/faults.py)."""
        method, args = node_input(fault)
        for i in self._idx(devices):
            self.be.engine.call(i, method, *args)

    def low_disk_space(self, devices: list[str], enable: bool) -> None:
        for i in self._idx(devices):
            self.be.engine.call(i, "disk_space", 0 if enable else 1)  # volumemgr's RemainingSpace

    def tpm_failure(self, devices: list[str], enable: bool) -> None:
        for i in self._idx(devices):
            self.be.engine.call(i, "tpm_sanity", not enable)


class _Views(Mapping[str, DeviceView]):
    """Lazy mapping: a device's view is built when asked for."""

    def __init__(self, be: SimBackend) -> None:
        self.be = be

    def __getitem__(self, key: str) -> DeviceView:
        return self.be.view(self.be.index[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self.be.ids)

    def __len__(self) -> int:
        return len(self.be.ids)
