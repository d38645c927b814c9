"""The scenario file format.

These pydantic models *are* the file format: every field is a YAML key, validation runs once at load
(`eden.scenario.load`), and `eden schema` prints their JSON Schema for editors.

A step or fault is a mapping with exactly one *action* key (``- power_cycle: {off_for: 5s}``) plus a
few envelope keys (``target``, ``name``; faults add ``at`` / ``when`` / ``after``). The action key is
the discriminator, so an error inside ``baseos_update`` is reported against that key only, and an
unknown action gets a did-you-mean hint instead of a wall of union errors.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from eden.physical_io import IoType
from eden.units import ByteSize, Duration, Fraction, parse_duration, parse_fraction
from eden.yamlsrc import scalar_text
from eve.images import Behaviour, DownloadBehaviour
from eve.enums import (
    AttestState,
    BaseOsStatus,
    BootReason,
    DPCState,
    MaintenanceModeReason,
    ZDeviceState,
    ZSwState,
)


class Base(BaseModel):
    """Every model forbids unknown keys: a typo is an error with a hint, never silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _names_literal(enum_cls: Any) -> Any:
    names = tuple(m.name for m in enum_cls)
    return Annotated[Literal[names], BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)]


DeviceStateName = _names_literal(ZDeviceState)
BaseOsStatusName = _names_literal(BaseOsStatus)
BootReasonName = _names_literal(BootReason)
AttestStateName = _names_literal(AttestState)
MaintenanceReasonName = _names_literal(MaintenanceModeReason)
DPCStateName = _names_literal(DPCState)
AppStateName = Annotated[
    Literal[tuple(m.name for m in ZSwState) + ("ABSENT",)],
    BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
]
"""ZSwState names, plus ABSENT for an app the device no longer reports."""

Version = Annotated[str, BeforeValidator(lambda v: scalar_text(v) if isinstance(v, (int, float)) else v)]
"""A version string; ``version: 12.10`` in YAML stays "12.10" (not the float 12.1)."""

ConfigValue = Annotated[
    Union[bool, int, str], BeforeValidator(lambda v: scalar_text(v) if isinstance(v, float) else v)
]
"""A configItem value as YAML gives it; checked against EVE's spellings in spec §6.1 (YAML's
``on`` is the boolean true, which a tri-state item does not take: the error says to quote it)."""

NAME_RE = r"^[a-z0-9][a-z0-9._-]*$"
NAME_MAX = 64
"""Names become file and directory names (results, work directories): well under NAME_MAX of a file system."""
Name = Annotated[str, Field(pattern=NAME_RE, max_length=NAME_MAX)]
SEED_MAX = 2**63 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
"""Seeds feed numpy's SeedSequence (no negatives) and the results database (a signed 64-bit column)."""


def _parse_quantity(value: Any) -> float:
    """A threshold: a number, a duration ("200ms") or a percentage ("99%")."""
    if isinstance(value, bool):
        raise ValueError("expected a number, a duration or a percentage")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().endswith("%"):
        return parse_fraction(value)
    return parse_duration(value)


Quantity = Annotated[float, BeforeValidator(_parse_quantity)]


def _none_is_empty(value: Any) -> Any:
    return {} if value is None else value


# --------------------------------------------------------------------------------------------------
# Targets: which devices a step, fault or expectation applies to.


class TargetSpec(Base):
    """Select devices by group, profile or id, then optionally a deterministic sample of them."""

    group: str | None = None
    profile: str | None = None
    devices: list[str] | None = None
    fraction: Fraction | None = None
    count: Annotated[int, Field(ge=1)] | None = None
    wave: Annotated[int, Field(ge=1)] | None = None
    """The devices of this wave of a rollout step (1 = the first wave): who they are follows from
    the seed, as the rollout's own order does."""
    rollout: Annotated[int, Field(ge=0)] | str | None = None
    """With ``wave``: which ``rollout`` step (its index in ``steps`` or its ``name``); default the only one."""

    @model_validator(mode="after")
    def _one_sample(self) -> "TargetSpec":
        if self.fraction is not None and self.count is not None:
            raise ValueError("give either 'fraction' or 'count', not both")
        if self.rollout is not None and self.wave is None:
            raise ValueError("'rollout' names the rollout whose 'wave' is targeted; give 'wave' too")
        return self


Target = Union[str, TargetSpec]
"""``all``, a group name, a device id (``<group>-<n>``), or a TargetSpec mapping."""


# --------------------------------------------------------------------------------------------------
# Conditions and expectations.


class PartitionCond(Base):
    state: Literal["active", "updating", "inprogress", "unused"] | None = None
    version: Version | None = None
    """An image name from ``images`` or a literal version string."""


class AppCond(Base):
    name: str
    state: AppStateName
    error: str | None = None
    """Text the app's appErr (ZInfoApp field 14) must contain; "" means no error at all."""
    adapters: list[str] | None = None
    """The phylabels the app holds (ZInfoApp assignedAdapters), in any order; [] means none."""


class MetricCond(Base):
    name: str
    max: Quantity | None = None
    min: Quantity | None = None

    @model_validator(mode="after")
    def _bound(self) -> "MetricCond":
        if self.max is None and self.min is None:
            raise ValueError("a metric condition needs 'max' or 'min'")
        return self


class DpcCond(Base):
    """The device's DPC list (spec §4): the index in use (systemAdapter.currentIndex) and the state
    of that DPC."""

    index: Annotated[int, Field(ge=0)] | None = None
    state: DPCStateName | None = None  # type: ignore[valid-type]  # a pydantic Literal built at runtime
    ports: list[str] | None = None
    """The management ports of the DPC in use, in any order."""

    @model_validator(mode="after")
    def _some(self) -> "DpcCond":
        if self.index is None and self.state is None and self.ports is None:
            raise ValueError("a dpc condition needs 'index', 'state' or 'ports'")
        return self


class CountRange(Base):
    min: Annotated[int, Field(ge=0)] | None = None
    max: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _bound(self) -> "CountRange":
        if self.min is None and self.max is None:
            raise ValueError("a counter range needs 'min' or 'max'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


Count = Annotated[int, Field(ge=0)] | CountRange


class CountersCond(Base):
    """The counters of the device's last ZInfoDevice (spec §1, §3, §7), each an exact value or a
    range: ``restart`` (restartCounter: boots since the device was first installed), ``reboot``
    (rebootConfigCounter: the controller's reboot command counter last processed),
    ``shutdown`` (the shutdown command counter last processed) and ``baseos_update``
    (baseos_update_counter: the forced base-OS update counter last processed)."""

    restart: Count | None = None
    reboot: Count | None = None
    shutdown: Count | None = None
    baseos_update: Count | None = None

    @model_validator(mode="after")
    def _some(self) -> "CountersCond":
        if not self.given():
            raise ValueError("a counters condition needs one of " + ", ".join(COUNTER_KEYS))
        return self

    def given(self) -> dict[str, Count]:
        return {k: v for k in COUNTER_KEYS if (v := getattr(self, k)) is not None}


COUNTER_KEYS = ("restart", "reboot", "shutdown", "baseos_update")
"""Condition key -> ZInfoDevice field: restartCounter, rebootConfigCounter, shutdown_config_counter, baseos_update_counter."""


ConfigItemKey = Annotated[str, Field(min_length=1)]
"""A configItem key as the controller sent it (known to EVE or not: an unknown key is an error too)."""


class RolloutCond(Base):
    state: Literal["running", "paused", "stopped", "completed"]


DEVICE_CONDITIONS = (
    "device_state",
    "onboarded",
    "connected",
    "version",
    "current_partition",
    "other_partition",
    "baseos_status",
    "boot_reason",
    "attestation",
    "maintenance_mode",
    "app",
    "bricked",
    "dpc",
    "vault",
    "reboot_reason",
    "counters",
    "config_item_error",
    "config_item_errors",
)
FLEET_CONDITIONS = ("metric", "rollout")


class Condition(Base):
    """A predicate. Device conditions are ANDed per device; fleet conditions stand alone."""

    device_state: DeviceStateName | None = None
    onboarded: bool | None = None
    connected: bool | None = None
    """The controller heard from the device within its dormant time (3 x timer.metric.interval,
    spec §1). Device state alone is what the device last said, however long ago."""
    version: Version | None = None
    """The running base-OS version: an image name or a version string."""
    current_partition: PartitionCond | None = None
    other_partition: PartitionCond | None = None
    baseos_status: BaseOsStatusName | None = None
    """userStatus of the newest base-OS entry in the device's swList (spec §3)."""
    boot_reason: BootReasonName | list[BootReasonName] | None = None
    """The last boot reason, or a list of accepted ones: what a device reports after an unrecorded
    reset depends on its disk (POWER_FAIL with SMART power-cycle counters, else UNKNOWN; spec §7)."""
    attestation: AttestStateName | None = None
    maintenance_mode: MaintenanceReasonName | None = None
    app: AppCond | None = None
    bricked: bool | None = None
    """True when no partition can boot, or the device crash-loops; ``bricked: false`` over ``all``
    is the fleet form "no device bricked"."""
    dpc: DpcCond | None = None
    """The DPC in use and its state (spec §4)."""
    vault: Literal["locked", "unlocked"] | None = None
    """The app vault (dataSecAtRestInfo, spec §5): unlocked once attestation released its key."""
    reboot_reason: str | None = None
    """Text the last reboot reason (ZInfoDevice.lastRebootReason) contains, e.g. ``NORMAL: baseos-update``."""
    counters: CountersCond | None = None
    config_item_error: ConfigItemKey | None = None
    """A configItem the device reports with an error in configItemStatus (spec §6): a value it
    refused (bad or out of range: the previous value stays) or a key it does not know."""
    config_item_errors: list[ConfigItemKey] | None = None
    """Exactly the configItems reported with an error, in any order; ``[]``: none."""
    metric: MetricCond | None = None
    rollout: RolloutCond | None = None

    def set_keys(self) -> list[str]:
        return [k for k in DEVICE_CONDITIONS + FLEET_CONDITIONS if getattr(self, k) is not None]

    @property
    def is_fleet_level(self) -> bool:
        return self.metric is not None or self.rollout is not None

    @model_validator(mode="after")
    def _shape(self) -> "Condition":
        keys = self.set_keys()
        if not keys:
            raise ValueError(
                "an expectation needs at least one condition: " + ", ".join(DEVICE_CONDITIONS + FLEET_CONDITIONS)
            )
        fleet = [k for k in keys if k in FLEET_CONDITIONS]
        if fleet and len(keys) > 1:
            raise ValueError(f"'{fleet[0]}' is a fleet-level condition and must stand alone in its expectation")
        return self


class PointCond(Condition):
    """A device condition marking a point in each device's run (``from:``). A bare name stands
    for that condition being true: ``from: onboarded`` is ``from: {onboarded: true}``."""

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, data: object) -> object:
        if isinstance(data, str):
            if data not in POINT_NAMES:
                raise ValueError(f"'{data}' is not a point: give one of {', '.join(POINT_NAMES)}, or a device condition")
            return {data: True}
        return data

    @classmethod
    def __get_pydantic_json_schema__(cls, core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """The schema says what the file may hold: a bare point name, or a device condition."""
        return {"anyOf": [{"type": "string", "enum": list(POINT_NAMES)}, handler(core)]}

    @model_validator(mode="after")
    def _device_only(self) -> "PointCond":
        if self.is_fleet_level:
            raise ValueError("a point is a device condition; metric and rollout are fleet-level")
        return self


POINT_NAMES = ("onboarded", "connected", "bricked")
"""Boolean device conditions that may be named alone as a ``from`` point."""


class Expectation(Condition):
    """A condition with a deadline and a quantifier over the targeted devices."""

    name: str | None = None
    target: Target = "all"
    within: Duration | None = None
    """Deadline. Top-level: counted from the end of the steps. Inline ``expect`` step: from the step's
    start. Omitted: checked once - at the end of the run for top-level expectations (after
    ``duration`` when set), at that moment for an inline ``expect`` step."""
    at_least: Fraction = 1.0
    """Fraction of the targeted devices that must satisfy the condition ("≥ 99 % on version X")."""
    always: bool = False
    """Invariant: must hold at every check from the start of the run (or ``from`` / ``after``) to its end."""
    from_: PointCond | None = Field(default=None, alias="from")
    """With ``always``: per device, the invariant holds from the first check where this device
    condition held for it (``from: onboarded`` or ``from: {device_state: ONLINE}``); devices that
    never got there are not judged."""
    after: Annotated[int, Field(ge=0)] | str | None = None
    """With ``always``: the invariant holds from the end of this step (its index in ``steps``, as
    in ``steps[3]``, or its ``name``); not judged when that step never passes."""

    inline: ClassVar[bool] = False
    """An ``expect`` step's arguments (it starts at its step), not a top-level expectation."""

    @model_validator(mode="after")
    def _modes(self) -> "Expectation":
        if self.always and self.within is not None:
            raise ValueError("'always' expectations hold for the whole run; drop 'within'")
        if self.inline and (self.from_ is not None or self.after is not None):
            raise ValueError("an inline expect starts at its own step; 'from' and 'after' are for top-level "
                             "'always' expectations")
        for key, value in (("from", self.from_), ("after", self.after)):
            if value is not None and not self.always:
                raise ValueError(f"'{key}' starts an 'always' invariant later; it needs 'always: true'")
        if self.from_ is not None and self.is_fleet_level:
            raise ValueError("'from' is a point per device; a fleet-level condition (metric, rollout) cannot have one: "
                             "use 'after' (a step)")
        return self


# --------------------------------------------------------------------------------------------------
# Action arguments.


class NoArgs(Base):
    pass


class PowerOnArgs(Base):
    spread: Duration = 0.0
    """Stagger power-on uniformly over this window (fleet experiments)."""


class PowerCycleArgs(Base):
    off_for: Duration = 5.0


class BaseOsUpdateArgs(Base):
    image: str
    activate: bool = True


class PortsArgs(Base):
    ports: list[str] | None = None
    """NIC names; default: every port of the device."""


class NetworkFlapArgs(PortsArgs):
    down: Duration = 30.0
    up: Duration = 30.0
    cycles: Annotated[int, Field(ge=1)] = 3


class OutageArgs(Base):
    duration: Duration | None = None
    """How long; omitted: until ``controller_restore``."""


class TamperArgs(Base):
    stage: Literal["firmware", "bootloader", "rootfs", "config"] = "firmware"
    """What an attacker changed; measured boot extends it into PCR 0 / 8 / 13 / 14 (spec §1)."""


class HangArgs(Base):
    agent: str = "zedagent"


class CrashArgs(Base):
    """A running device's agents die (spec §3 "Controller view of a rollback", §7)."""

    kind: Literal["kernel", "oom", "fatal", "agent_exit"]
    """``kernel``: a kernel panic (kdump records KERNEL where the profile has it, and the device resets
    120 s later); ``oom``: the OOM killer reaps the agent (OOM); ``fatal``: the agent calls log.Fatal
    (FATAL); ``agent_exit``: the agent's process dies (WATCHDOG_PID)."""
    agent: str | None = None
    """The agent that dies (default zedagent); not for ``kernel``, which stops every agent."""

    @field_validator("agent")
    @classmethod
    def _agent_applies(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("kind") == "kernel":
            raise ValueError("'agent' does not apply to kind 'kernel': a kernel panic stops every agent")
        return v


class AdapterRef(Base):
    """One ``AppInstanceConfig.adapters`` entry (api:proto/config/devcommon.proto ``Adapter``)."""

    name: Annotated[str, Field(min_length=1)]
    """An assignment group, phylabel or logical label of the device's ``physical_io``."""
    type: IoType | None = None
    """``Adapter.type`` (a PhyIoType name); default: the type of the first PhysicalIO it names."""


class DeployAppArgs(Base):
    name: Name
    kind: Literal["vm", "container"] = "container"
    cpus: Annotated[int, Field(ge=1)] = 1
    memory: ByteSize = 256 * 2**20
    size: ByteSize = 100 * 2**20
    """Image size to download."""
    activate: bool = True
    download: DownloadBehaviour = "ok"
    """Simulator only: ``corrupt`` - every download of the app's image fails verification (spec §4,
    blob.download.max.retries): the app stays DOWNLOAD_STARTED with the verifier's error. Real
    backends download the real image."""
    adapters: list[Annotated[str, Field(min_length=1)] | AdapterRef] = []
    """Simulator only: PhysicalIO to pass through (AppInstanceConfig.adapters); a name or
    ``{name, type}``. domainmgr reserves each one's whole assignment group at activation (§8)."""
    pin_cpus: bool = False
    """Simulator only: VmConfig.pin_cpu: ``cpus`` CPUs of the app's own from the CPU allocator (§8)."""

    def adapter_refs(self) -> list[AdapterRef]:
        """``adapters`` with each bare name as ``{name}``."""
        return [AdapterRef(name=a) if isinstance(a, str) else a for a in self.adapters]


class RemoveAppArgs(Base):
    name: str


class SetNetworkArgs(Base):
    """A controller network config (system adapters, spec §4): it becomes a new DPC at index 0."""

    mgmt: Annotated[list[str], Field(min_length=1)]
    """The management ports (NIC names) of the new config."""
    broken: bool = False
    """The config cannot reach the controller (e.g. a wrong static gateway): its test fails."""

    @model_validator(mode="after")
    def _unique(self) -> "SetNetworkArgs":
        twice = sorted({p for p in self.mgmt if self.mgmt.count(p) > 1})
        if twice:
            raise ValueError(f"'mgmt' names {', '.join(twice)} more than once")
        return self


class MaintenanceArgs(Base):
    enable: bool = True


class LocalFaultArgs(Base):
    """A device-local condition that puts EVE in maintenance mode while it lasts (spec §7)."""

    enable: bool = True
    """False: the condition is over (space freed, the TPM passes its check again)."""


class RefuseCertsArgs(Base):
    """The controller refuses the devices' certificates (ATTEST_REQ_CERT, spec §5)."""

    enable: bool = True
    """False: the controller accepts them again."""


class DeleteDeviceArgs(Base):
    """The controller deletes the device's record (spec §1 "404/400"), and maybe creates it again."""

    recreate: Literal["none", "onboarding", "cert"] = "onboarding"
    """``none``: gone for good (404; a register is refused, 403). ``onboarding``: pre-registered
    again by serial, the old cert unknown: 404 until the device registers again at its next boot.
    ``cert``: created again with the device's cert under a new UUID, which the device's uuid
    lookup (at most every 10 min, the first 10 min after zedagent start) finds without a reboot."""


class Wave(Base):
    fraction: Fraction | None = None
    """Cumulative share of the selected devices updated once this wave is done."""
    count: Annotated[int, Field(ge=1)] | None = None
    """Number of devices in this wave."""

    @model_validator(mode="after")
    def _one(self) -> "Wave":
        if (self.fraction is None) == (self.count is None):
            raise ValueError("a wave needs exactly one of 'fraction' or 'count'")
        return self


class RolloutArgs(Base):
    """A staged base-OS rollout, as fleet update managers run them (waves, thresholds)."""

    image: str
    activate: bool = True
    waves: Annotated[list[Wave], Field(min_length=1)]
    success_threshold: Fraction = 0.95
    """Share of a wave that must succeed before the next wave starts."""
    error_threshold: Fraction = 0.05
    """Share of a wave whose failure triggers ``on_error``."""
    on_error: Literal["pause", "stop"] = "stop"
    wave_timeout: Duration = 7200.0
    """A device not done by then counts as failed for the wave."""
    soak: Duration = 0.0
    """Wait between a successful wave and the next one."""
    wait: bool = True
    """Block the step list until the rollout completes, stops or pauses."""


class ExpectArgs(Expectation):
    inline: ClassVar[bool] = True


# --------------------------------------------------------------------------------------------------
# The action table: key -> (argument type, capability, allowed in faults).

ACTIONS: dict[str, tuple[Any, str, bool]] = {
    "power_on": (PowerOnArgs, "power", True),
    "power_off": (NoArgs, "power", True),
    "power_cycle": (PowerCycleArgs, "power", True),
    "graceful_poweroff": (NoArgs, "power", True),
    "reboot": (NoArgs, "controller_ops", True),
    "shutdown": (NoArgs, "controller_ops", True),
    "delete_device": (DeleteDeviceArgs, "controller_ops", True),
    "refuse_device_certs": (RefuseCertsArgs, "controller_ops", True),
    "low_disk_space": (LocalFaultArgs, "hardware_faults", True),
    "tpm_failure": (LocalFaultArgs, "hardware_faults", True),
    "wait": (Duration, "wait", False),
    "expect": (ExpectArgs, "observe", False),
    "baseos_update": (BaseOsUpdateArgs, "baseos", False),
    "retry_update": (NoArgs, "baseos", True),
    "force_fallback": (NoArgs, "baseos", True),
    "network_down": (PortsArgs, "network", True),
    "network_up": (PortsArgs, "network", True),
    "network_flap": (NetworkFlapArgs, "network", True),
    "controller_outage": (OutageArgs, "controller_faults", True),
    "controller_restore": (NoArgs, "controller_faults", True),
    "controller_503": (OutageArgs, "controller_faults", True),
    "controller_hang": (OutageArgs, "controller_faults", True),
    "request_attestation": (NoArgs, "attestation", True),
    "tamper": (TamperArgs, "tamper", True),
    "hang": (HangArgs, "hang", True),
    "crash": (CrashArgs, "crash", True),
    "set_config": (dict[str, ConfigValue], "config", True),
    "deploy_app": (DeployAppArgs, "apps", False),
    "remove_app": (RemoveAppArgs, "apps", False),
    "maintenance_mode": (MaintenanceArgs, "config", True),
    "set_network": (SetNetworkArgs, "netconfig", True),
    "rollout": (RolloutArgs, "rollout", False),
    "resume_rollout": (NoArgs, "rollout", False),
}
CONTROLLER_PERIODS = frozenset({"controller_outage", "controller_503", "controller_hang"})
"""Controller faults that last for their ``duration``, or until ``controller_restore``."""
CONTROLLER_FAULTS = CONTROLLER_PERIODS | {"controller_restore"}
"""The controller faults: they act on the controller, not on selected devices."""
CONTROLLER_ACTIONS = CONTROLLER_FAULTS | {"wait", "rollout", "resume_rollout", "expect"}
"""Actions that act on the controller or the run, not on selected devices: ``target`` is refused."""


class StepBase(Base):
    name: str | None = None
    target: Target = "all"

    @property
    def action(self) -> str:
        for key in ACTIONS:
            if key in self.model_fields_set or key in type(self).model_fields:
                return key
        raise AssertionError("step without action")  # pragma: no cover - the union guarantees one

    @property
    def args(self) -> Any:
        return getattr(self, self.action)

    @model_validator(mode="after")
    def _target_allowed(self) -> "StepBase":
        if self.action in CONTROLLER_ACTIONS and "target" in self.model_fields_set:
            where = "the 'expect' mapping" if self.action == "expect" else "the controller or the run"
            raise ValueError(f"'{self.action}' acts on {where}; 'target' does not apply here")
        return self


class FaultBase(StepBase):
    at: Duration | None = None
    """Inject at this simulated/real time after the run starts."""
    when: Condition | None = None
    """Inject into each targeted device the first time it satisfies this condition."""
    after: Duration = 0.0
    """Delay between the trigger and the injection."""

    @model_validator(mode="after")
    def _trigger(self) -> "FaultBase":
        if (self.at is None) == (self.when is None):
            raise ValueError("a fault needs exactly one trigger: 'at' (a time) or 'when' (a condition)")
        if self.when is not None and self.when.is_fleet_level:
            raise ValueError("'when' takes device conditions only")
        return self


def _action_models(base: type[StepBase], suffix: str, faults_only: bool) -> dict[str, type[StepBase]]:
    models: dict[str, type[StepBase]] = {}
    for key, (arg_type, _cap, in_faults) in ACTIONS.items():
        if faults_only and not in_faults:
            continue
        camel = "".join(part.title() for part in key.split("_"))
        annotated = Annotated[arg_type, BeforeValidator(_none_is_empty)] if arg_type is not Duration else arg_type
        models[key] = create_model(  # type: ignore[call-overload]
            f"{camel}{suffix}", __base__=base, __module__=__name__, **{key: (annotated, ...)}
        )
    return models


STEP_MODELS = _action_models(StepBase, "Step", faults_only=False)
FAULT_MODELS = _action_models(FaultBase, "Fault", faults_only=True)
_ENVELOPE = {"name", "target", "at", "when", "after"}


def _discriminator(allowed: dict[str, type[StepBase]]) -> Any:
    def tag(value: Any) -> str:
        if isinstance(value, StepBase):
            return value.action
        if not isinstance(value, dict):
            return "invalid"
        found = [k for k in value if k in allowed]
        return found[0] if len(found) == 1 else "invalid"

    return tag


class _InvalidAction(Base):
    """Stands in for a step/fault whose action key is missing, unknown or repeated."""

    model_config = ConfigDict(extra="allow")
    allowed_actions: ClassVar[tuple[str, ...]] = tuple(ACTIONS)
    """The actions of the list this stands in for (steps or faults)."""

    @model_validator(mode="before")
    @classmethod
    def _explain(cls, value: Any) -> Any:
        names = list(cls.allowed_actions)
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping with one action key, e.g. '- power_on: {{}}'; got {value!r}")
        actions = [k for k in value if k in ACTIONS]
        if len(actions) > 1:
            raise ValueError(f"one action per entry, found {', '.join(actions)}; split them into separate entries")
        if actions:
            raise ValueError(f"'{actions[0]}' cannot be used here; allowed: {', '.join(names)}")
        unknown = [k for k in value if k not in _ENVELOPE]
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; actions are: {', '.join(names)}"
            raise ValueError(f"unknown action '{unknown[0]}'{hint}")
        raise ValueError(f"no action given; actions are: {', '.join(names)}")


class _InvalidStep(_InvalidAction):
    allowed_actions: ClassVar[tuple[str, ...]] = tuple(STEP_MODELS)


class _InvalidFault(_InvalidAction):
    allowed_actions: ClassVar[tuple[str, ...]] = tuple(FAULT_MODELS)


def _union(models: dict[str, type[StepBase]], invalid: type[_InvalidAction]) -> Any:
    members = [Annotated[m, Tag(k)] for k, m in models.items()]
    members.append(Annotated[invalid, Tag("invalid")])
    return Annotated[Union[tuple(members)], Discriminator(_discriminator(models))]


if TYPE_CHECKING:  # what a validated entry is: one of the per-action models (an invalid one never validates)
    Step = StepBase
    Fault = FaultBase
else:
    Step = _union(STEP_MODELS, _InvalidStep)
    Fault = _union(FAULT_MODELS, _InvalidFault)


# --------------------------------------------------------------------------------------------------
# Fleet, images, controller, scenario.


class ImageVariant(Base):
    """A different behaviour for a share of one profile's devices (e.g. a 2 % bad-image rate)."""

    profile: str
    fraction: Fraction
    behaviour: Behaviour


class Image(Base):
    version: Version
    behaviour: Behaviour = "good"
    """Simulator only: how the image behaves after it boots. Real backends run the real image."""
    size: ByteSize = 300 * 2**20
    download: DownloadBehaviour = "ok"
    """Simulator only: ``corrupt`` - every download of it fails verification (spec §4,
    blob.download.max.retries). Real backends serve the real image and refuse it."""
    variants: list[ImageVariant] = Field(default_factory=list)
    path: str | None = None
    """Real backends: the image file to hand to the device."""


class FleetEntry(Base):
    profile: str
    count: Annotated[int, Field(ge=1)] = 1
    group: Name | None = None
    """Name used in targets; devices are ``<group>-<index>``. Default: the profile name."""
    image: str | None = None
    """Image installed in partition IMGA at the start. Default: the first image in ``images``."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """Profile fields to change for this entry (deep-merged, validated like the profile)."""

    @property
    def group_name(self) -> str:
        return self.group or self.profile


class Capacity(Base):
    """Simulator only: the controller's service capacity."""

    workers: Annotated[int, Field(ge=1)] = 8
    service_time: Duration = 0.005
    queue_limit: Annotated[int, Field(ge=0)] = 2000
    """Requests waiting beyond this are answered 503."""


class AttestationPolicy(Base):
    enforce: bool = True
    """Check quotes against the approved PCR templates (the known images on the known firmware)."""


class ControllerSpec(Base):
    config_items: dict[str, ConfigValue] = Field(default_factory=dict)
    capacity: Capacity = Field(default_factory=Capacity)
    attestation: AttestationPolicy = Field(default_factory=AttestationPolicy)


class Scenario(Base):
    """One test or fleet experiment, runnable on every backend that has the capabilities it uses."""

    name: Name
    description: str = ""
    seed: Seed = 0
    duration: Duration | None = None
    """Fleet experiments: simulate exactly this long. Tests: a cap (default: until decided)."""
    check_interval: Duration | None = None
    """How often expectations are evaluated (default: 1 s, coarser for large fleets)."""
    fleet: Annotated[list[FleetEntry], Field(min_length=1)]
    controller: ControllerSpec = Field(default_factory=ControllerSpec)
    images: Annotated[dict[str, Image], Field(min_length=1)]
    steps: list[Step] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)

    @field_validator("images")
    @classmethod
    def _image_names(cls, images: dict[str, Image]) -> dict[str, Image]:
        for name in images:
            if not re.match(NAME_RE, name) or len(name) > NAME_MAX:
                raise ValueError(
                    f"image name '{name[:NAME_MAX]}{'...' if len(name) > NAME_MAX else ''}' must be lower-case "
                    f"letters, digits, '.', '_' or '-', at most {NAME_MAX} characters"
                )
        return images

    @property
    def device_count(self) -> int:
        return sum(e.count for e in self.fleet)


def rollout_step(steps: "list[StepBase]", ref: int | str | None) -> int | str:
    """The index of the ``rollout`` step a wave target means (``ref``: index, name, or ``None``
    for the only one); a message saying why when there is no such single rollout step."""
    rollouts = [i for i, st in enumerate(steps) if st.action == "rollout"]
    if ref is None:
        if len(rollouts) == 1:
            return rollouts[0]
        return ("no step is a rollout" if not rollouts else
                f"{len(rollouts)} steps are rollouts (steps {', '.join(map(str, rollouts))}): say which with 'rollout'")
    found = [i for i in rollouts if i == ref or steps[i].name == ref]
    if len(found) == 1:
        return found[0]
    what = f"steps[{ref}]" if isinstance(ref, int) else f"'{ref}'"
    return f"{what} is not a rollout step" if not found else f"{len(found)} rollout steps are named '{ref}'"
