"""The one table from a scenario action to the port method that carries it out.

Each entry names the port (``controller`` or ``device``), the method and an argument adapter that
turns the step's parsed arguments into the method's. :func:`perform` is every backend's
``apply``: it records the action on the timeline, calls the method and, for actions that end a
fault, records what came back. The actions the runner carries out itself (``wait``, ``expect``,
rollouts) are not here: they are made of other actions.

To add an action: its argument model and capability in :data:`eden.scenario.model.ACTIONS`, a
row here, and the port method on each backend that can perform it (listed in the port's
``capabilities``). Validation then accepts it exactly where a port performs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Protocol

from pydantic import BaseModel

from eden.backends.ports import ControllerPort, DevicePort
from eden.errors import InfrastructureError
from eden.scenario.load import LoadedScenario
from eden.scenario.model import ACTIONS

PortName = Literal["controller", "device"]
Call = tuple[tuple[Any, ...], dict[str, Any]]
RUNNER_ACTIONS = frozenset({"wait", "expect", "rollout", "resume_rollout"})
"""Actions :mod:`eden.runner` performs from other actions and its clock."""


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What an argument adapter may need beyond the step: image versions, the fleet's size."""

    loaded: LoadedScenario

    def version(self, image: str) -> str:
        return self.loaded.scenario.images[image].version

    def is_everyone(self, devices: list[str]) -> bool:
        return len(devices) == len(self.loaded.devices)


Adapter = Callable[[ActionContext, list[str], Any], Call]


@dataclass(frozen=True, slots=True)
class Action:
    port: PortName
    method: str
    adapt: Adapter
    then_record: str | None = None
    """A timeline record added once the method returned (``network_restored``)."""


def _devices(_ctx: ActionContext, devices: list[str], _args: Any) -> Call:
    return (devices,), {}


def _nothing(_ctx: ActionContext, _devices: list[str], _args: Any) -> Call:
    return (), {}


def _links(up: bool) -> Adapter:
    def adapt(_ctx: ActionContext, devices: list[str], args: Any) -> Call:
        ports = getattr(args, "ports", None)
        ports = list(ports) if ports is not None else None
        return (devices, ports, up), {}

    return adapt


def _app_spec(args: Any) -> dict[str, Any]:
    spec = {"kind": args.kind, "cpus": args.cpus, "memory": int(args.memory), "size": int(args.size), "activate": args.activate}
    if args.download != "ok":
        spec["download"] = args.download  # the sim only: refused at validation elsewhere (scenario.load)
    if args.adapters:  # the sim only, like download
        spec["adapters"] = [{"name": a.name, "type": None if a.type is None else int(a.type)} for a in args.adapter_refs()]
    if args.pin_cpus:
        spec["pin_cpus"] = True
    return spec


ACTION_TABLE: Mapping[str, Action] = {
    "power_on": Action("device", "power_on", lambda _c, d, a: ((d, float(getattr(a, "spread", 0.0) or 0.0)), {})),
    "power_off": Action("device", "power_off", _devices),
    "power_cycle": Action("device", "power_cycle", lambda _c, d, a: ((d, float(a.off_for)), {})),
    "graceful_poweroff": Action("device", "graceful_poweroff", _devices),
    "network_down": Action("device", "set_links", _links(False)),
    "network_flap": Action("device", "set_links", _links(False)),
    "network_up": Action("device", "set_links", _links(True), then_record="network_restored"),
    "tamper": Action("device", "tamper", lambda _c, d, a: ((d, a.stage), {})),
    "hang": Action("device", "hang", lambda _c, d, a: ((d, a.agent), {})),
    "crash": Action("device", "crash", lambda _c, d, a: ((d, a.kind, a.agent or "zedagent"), {})),
    "low_disk_space": Action("device", "low_disk_space", lambda _c, d, a: ((d, bool(a.enable)), {})),
    "tpm_failure": Action("device", "tpm_failure", lambda _c, d, a: ((d, bool(a.enable)), {})),
    "reboot": Action("controller", "reboot", _devices),
    "shutdown": Action("controller", "shutdown", _devices),
    "delete_device": Action("controller", "delete_device", lambda _c, d, a: ((d, a.recreate), {})),
    "refuse_device_certs": Action("controller", "refuse_certs", lambda _c, d, a: ((d, bool(a.enable)), {})),
    "baseos_update": Action(
        "controller", "set_baseos", lambda c, d, a: ((d, a.image, c.version(a.image), bool(a.activate)), {})
    ),
    "retry_update": Action("controller", "retry_update", _devices),
    "force_fallback": Action("controller", "force_fallback", _devices),
    "request_attestation": Action("controller", "revoke_token", _devices),
    "set_config": Action("controller", "set_items", lambda c, d, a: ((d, dict(a)), {"everyone": c.is_everyone(d)})),
    "deploy_app": Action("controller", "set_app", lambda _c, d, a: ((d, a.name, _app_spec(a)), {})),
    "remove_app": Action("controller", "set_app", lambda _c, d, a: ((d, a.name, None), {})),
    "maintenance_mode": Action("controller", "set_maintenance", lambda _c, d, a: ((d, bool(a.enable)), {})),
    "set_network": Action("controller", "set_network", lambda _c, d, a: ((d, list(a.mgmt), bool(a.broken)), {})),
    "controller_outage": Action("controller", "outage", _nothing),
    "controller_503": Action("controller", "answer_503", _nothing),
    "controller_hang": Action("controller", "hang", _nothing),
    "controller_restore": Action("controller", "restore", _nothing),
}
assert set(ACTION_TABLE) | RUNNER_ACTIONS == set(ACTIONS), "every scenario action has a row or is the runner's"


class PortedBackend(Protocol):
    """What :func:`perform` needs of a backend."""

    @property
    def loaded(self) -> LoadedScenario: ...

    @property
    def controller_port(self) -> ControllerPort: ...

    @property
    def device_port(self) -> DevicePort: ...

    def record(self, what: str, data: dict[str, Any], device: str | None = None) -> None: ...


def perform(backend: PortedBackend, action: str, devices: list[str], args: object) -> None:
    """Carry out one scenario action on ``backend``'s ports, recorded on its timeline."""
    row = ACTION_TABLE.get(action)
    if row is None:
        raise InfrastructureError(f"'{action}' is not an action a backend performs")
    backend.record(action, args_record(args) | {"devices": len(devices)}, devices[0] if len(devices) == 1 else None)
    port: ControllerPort | DevicePort = backend.controller_port if row.port == "controller" else backend.device_port
    call_args, call_kwargs = row.adapt(ActionContext(backend.loaded), devices, args)
    getattr(port, row.method)(*call_args, **call_kwargs)
    if row.then_record is not None:
        backend.record(row.then_record, {"devices": len(devices)})


def performed_actions(controller: type[ControllerPort], device: type[DevicePort], runner: frozenset[str]) -> frozenset[str]:
    """Every scenario action a backend with these ports (and these runner actions) performs."""
    methods = {"controller": controller.capabilities, "device": device.capabilities}
    return frozenset(a for a, row in ACTION_TABLE.items() if row.method in methods[row.port]) | runner


def refusal_reasons(controller: type[ControllerPort], device: type[DevicePort]) -> dict[str, str]:
    """Scenario action -> why these ports refuse it, for the actions their ``refusals`` name."""
    reasons = {"controller": controller.refusals, "device": device.refusals}
    return {a: reasons[row.port][row.method] for a, row in ACTION_TABLE.items() if row.method in reasons[row.port]}


def args_record(args: object) -> dict[str, Any]:
    """A step's arguments as the timeline records them."""
    if args is None:
        return {}
    if isinstance(args, BaseModel):
        return {k: v for k, v in args.model_dump(mode="json").items() if v is not None}
    if isinstance(args, dict):
        return dict(args)
    return {"value": args}
