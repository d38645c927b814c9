"""Hardware profiles: what a class of device looks like to the simulator and harness.

One YAML file per profile in ``hw_profiles/`` (override with ``EDEN_PROFILES_DIR``);
the file stem is the profile name that scenarios refer to.
"""

from __future__ import annotations

import math
import os
from functools import cached_property
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, WithJsonSchema, field_validator

from eden.errors import HintedValueError, InvalidInput, Problem, explain_validation_error, issue_at, validate_model
from eden.physical_io import PhysicalIO, inventory_problems, with_nic_entries
from eden.units import ByteSize, Duration, Fraction, Rate, format_bytes, format_duration
from eden.yamlsrc import ScalarStr, load_yaml_file, scalar_text
from eve.placement import IoMember

DEFAULT_PROFILES_DIR = Path(__file__).resolve().parent.parent / "hw_profiles"
PROFILES_ENV = "EDEN_PROFILES_DIR"

MIN_BOOT_SECONDS = 1.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Storage(_Strict):
    size: ByteSize
    kind: Literal["sd", "emmc", "ssd", "nvme", "hdd", "virtio"]
    smart_power_cycles: bool | None = None
    """Whether smartctl reads a power-cycle count on this disk (SATA attribute 12, NVMe). EVE tells
    a power cut from another reset only with it; without it both report UNKNOWN (spec §7).
    Default: by ``kind`` (ssd, nvme, hdd: yes; sd, emmc, virtio: no)."""

    @property
    def reports_power_cycles(self) -> bool:
        if self.smart_power_cycles is not None:
            return self.smart_power_cycles
        return self.kind in ("ssd", "nvme", "hdd")


class Firmware(_Strict):
    kind: Literal["uefi", "bios", "u-boot"]
    version: ScalarStr


class Nic(_Strict):
    name: str
    kind: Literal["ethernet", "wifi", "wwan"]
    mgmt: bool = True
    cost: int = Field(0, ge=0, le=255)
    speed: Rate | None = None


class BootTime(_Strict):
    """Time from power-on until EVE's agents run.

    ``mean`` and ``sd`` are the moments of the distribution itself (also for
    lognormal and uniform); ``min``/``max`` clip samples.
    """

    distribution: Literal["fixed", "uniform", "normal", "lognormal"]
    mean: Duration
    sd: Duration = 0.0
    min: Duration | None = None
    max: Duration | None = None

    @field_validator("min")
    @classmethod
    def _min_le_mean(cls, v: float | None, info: ValidationInfo) -> float | None:
        mean = info.data.get("mean")
        if v is not None and mean is not None and v > mean:
            raise ValueError(f"min ({format_duration(v)}) is larger than mean ({format_duration(mean)})")
        return v

    @field_validator("max")
    @classmethod
    def _max_ge_mean(cls, v: float | None, info: ValidationInfo) -> float | None:
        mean = info.data.get("mean")
        if v is not None and mean is not None and v < mean:
            raise ValueError(f"max ({format_duration(v)}) is smaller than mean ({format_duration(mean)})")
        return v

    def sample(self, rng: np.random.Generator) -> float:
        """One boot time in seconds, clipped to [min, max] and at least 1 s."""
        mean, sd = self.mean, self.sd
        if self.distribution == "fixed" or sd == 0:
            value = mean
        elif self.distribution == "normal":
            value = float(rng.normal(mean, sd))
        elif self.distribution == "uniform":
            half = sd * math.sqrt(3.0)
            value = float(rng.uniform(mean - half, mean + half))
        elif mean <= 0:
            value = mean
        else:  # lognormal with the given arithmetic mean and sd
            sigma2 = math.log1p((sd / mean) ** 2)
            value = float(rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2)))
        if self.min is not None:
            value = max(value, self.min)
        if self.max is not None:
            value = min(value, self.max)
        return max(value, MIN_BOOT_SECONDS)


class Console(_Strict):
    device: str = "ttyS0"
    baud: int = Field(gt=0)
    boot_marker: str
    login_marker: str


class Power(_Strict):
    kind: Literal["qmp", "pdu", "relay", "usb-hub", "ipmi", "manual"]
    port: ScalarStr | None = None


class Failures(_Strict):
    boot_hang: Fraction = 0.0
    """Probability per boot that boot hangs (the watchdog has to recover it)."""
    hang_per_day: float = Field(0.0, ge=0)
    """Spontaneous agent hangs per device-day."""
    write_error: Fraction = 0.0
    """Probability that writing a base-OS image fails."""


class Qemu(_Strict):
    machine: str
    cpu: str
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    firmware: Literal["bios", "ovmf"] = "bios"
    image: Literal["reference", "eve"] = "reference"
    """What the QEMU backend boots: eden's reference image, or a real EVE-OS live image (the file
    named by ``EDEN_EVE_IMAGE``; docs/real-eve.md)."""


def _normalise_tpm(value: Any) -> Any:
    """YAML reads ``tpm: 2.0`` as a float and ``tpm: no`` as false; accept both."""
    if value is False:
        return "none"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = scalar_text(value)
        if float(value) == 2.0:
            return "2.0"
        value = text
    if isinstance(value, str) and value.strip() not in ("none", "2.0"):
        if value.strip() == "2":
            return "2.0"
        raise HintedValueError(
            f"'{value}' is not a supported TPM; EVE-OS needs TPM 2.0 or none",
            "write tpm: \"2.0\" or tpm: none",
        )
    return value.strip() if isinstance(value, str) else value


Tpm = Annotated[
    Literal["none", "2.0"],
    BeforeValidator(_normalise_tpm),
    WithJsonSchema({"anyOf": [{"enum": ["none", "2.0"]}, {"const": 2.0}, {"const": False}]}),
]


class HwProfile(_Strict):
    name: str
    description: str
    arch: Literal["x86_64", "aarch64"]
    cores: int = Field(ge=1)
    eve_max_vcpus: int = Field(1, ge=1)
    """CPUs EVE keeps for its services: no app gets them pinned (kernel argument ``eve_max_vcpus``,
    1 in EVE's GRUB config; P:cpuallocator/cpuallocator.go). Must be less than ``cores``."""
    memory: ByteSize
    reserved_memory: ByteSize = 1024**3
    """Memory EVE itself (dom0, agents) keeps away from applications."""
    storage: Storage
    tpm: Tpm
    firmware: Firmware
    nics: list[Nic] = Field(min_length=1)
    """The network ports (EVE's SystemAdapters); with ``physical_io``, each NIC's name is the
    ``phyaddrs.ifname`` of a PhysicalIO of its kind."""
    physical_io: list[PhysicalIO] | None = None
    """The device model's I/O adapters (api:proto/config/devmodel.proto ``PhysicalIO``): what
    apps can be given (``deploy_app`` ``adapters``). None: not described, nothing is assignable."""
    boot_time: BootTime
    image_write_speed: Rate
    """Bytes/s when writing a base-OS image to the other partition."""
    console: Console
    power: Power
    failures: Failures = Field(default_factory=Failures)
    qemu: Qemu | None = None

    @field_validator("reserved_memory")
    @classmethod
    def _reserved_below_memory(cls, v: int, info: ValidationInfo) -> int:
        memory = info.data.get("memory")
        if memory is not None and v >= memory:
            raise ValueError(
                f"reserved_memory ({format_bytes(v)}) must be less than memory ({format_bytes(memory)})"
            )
        return v


    @field_validator("nics")
    @classmethod
    def _nics_sane(cls, nics: list[Nic]) -> list[Nic]:
        seen: set[str] = set()
        for nic in nics:
            if nic.name in seen:
                raise HintedValueError(f"NIC name '{nic.name}' is used more than once", "NIC names must be unique")
            seen.add(nic.name)
        if not any(nic.mgmt for nic in nics):
            raise HintedValueError(
                "no management NIC: EVE needs at least one NIC with mgmt: true to reach its controller"
            )
        return nics

    @property
    def mgmt_nics(self) -> list[Nic]:
        return [n for n in self.nics if n.mgmt]

    @cached_property
    def io_members(self) -> tuple[IoMember, ...]:
        """``physical_io`` as domainmgr's members, built once per profile (shared by its devices)."""
        return tuple(io.member() for io in self.physical_io or ())

    def inventory_problems(self) -> list[Problem]:
        """NICs against ``physical_io`` (checked after validation, with positions)."""
        return inventory_problems(self.nics, self.physical_io) if self.physical_io is not None else []


def profiles_dir() -> Path:
    env = os.environ.get(PROFILES_ENV)
    return Path(env) if env else DEFAULT_PROFILES_DIR


def load_profile(path: str | Path) -> HwProfile:
    """Load and validate one profile file; its ``name`` must equal the file stem."""
    located = load_yaml_file(path)
    profile = validate_model(HwProfile, located)
    problems = profile.inventory_problems()
    if problems:
        raise InvalidInput([issue_at(located, p.path, p.message, p.hint) for p in problems])
    stem = Path(path).stem
    if profile.name != stem:
        raise InvalidInput(
            issue_at(
                located,
                ("name",),
                f"profile name '{profile.name}' does not match the file name '{Path(path).name}'",
                f"rename the file to {profile.name}{Path(path).suffix} or set name: {stem}",
            )
        )
    return profile


def load_profiles(directory: str | Path | None = None) -> dict[str, HwProfile]:
    """All profiles in ``directory`` (default: $EDEN_PROFILES_DIR or hw_profiles/), by name.

    Problems in every file are collected and raised together.
    """
    where = Path(directory) if directory is not None else profiles_dir()
    if not where.is_dir():
        raise InvalidInput.at(str(where), 0, 0, "hardware profile directory not found", f"set {PROFILES_ENV}")
    files = sorted([*where.glob("*.yaml"), *where.glob("*.yml")])
    profiles: dict[str, HwProfile] = {}
    issues = []
    for file in files:
        try:
            profile = load_profile(file)
        except InvalidInput as exc:
            issues.extend(exc.issues)
            continue
        if profile.name in profiles:
            issues.append(issue_at(load_yaml_file(file), ("name",), f"profile '{profile.name}' is defined twice"))
            continue
        profiles[profile.name] = profile
    if issues:
        raise InvalidInput(issues)
    return dict(sorted(profiles.items()))


class OverrideError(ValueError):
    """A profile override does not validate; ``problems`` are located by path in the override mapping."""

    def __init__(self, profile: str, problems: list[Problem]) -> None:
        self.profile = profile
        self.problems = problems
        lines = [f"{'.'.join(map(str, p.path)) or '<override>'}: {p.message}" for p in problems]
        super().__init__(f"bad override for hardware profile '{profile}': " + "; ".join(lines))


def _deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _deep_merge(base[key], value) if key in base else value
        return merged
    return override


def apply_overrides(profile: HwProfile, overrides: Mapping[str, Any]) -> HwProfile:
    """A copy of ``profile`` with ``overrides`` deep-merged in (lists are replaced), re-validated.

    Raises OverrideError (a ValueError) whose ``problems`` carry paths relative to
    ``overrides`` so the caller can point at its own file.
    """
    if not overrides:
        return profile
    data = _deep_merge(profile.model_dump(), overrides)
    try:
        changed = HwProfile.model_validate(data)
    except ValidationError as exc:
        raise OverrideError(profile.name, explain_validation_error(exc, HwProfile, data)) from None
    if "nics" in overrides and "physical_io" not in overrides and changed.physical_io is not None:
        # a NIC the override adds comes with its own (unassignable) PhysicalIO; a kind that
        # contradicts an existing entry is still an error
        changed = changed.model_copy(update={"physical_io": with_nic_entries(changed.nics, changed.physical_io)})
    problems = changed.inventory_problems()
    if problems:
        raise OverrideError(profile.name, problems)
    return changed
