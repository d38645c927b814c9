"""The device spec file: what the harness writes for one emulated device (``eden agent --spec``).

JSON (or YAML) with these keys; only ``serial``, ``profile``, ``image`` and ``images`` are required::

    {"serial": "dev-1", "profile": "qemu-x86_64", "image": "base",
     "images": {"base": {"version": "13.4.0"},
                "next": {"version": "13.5.0", "behaviour": "crash-on-boot", "size": 1048576}},
     "seed": 7, "boot_time": 1.0, "config_items": {"timer.config.interval": 5}}

``behaviour`` is the scenario vocabulary (good | crash-on-boot | no-controller | changes-pcrs): an
emulated device has no real image to boot, so the image's catalogue entry says how it behaves.
``boot_time`` (seconds) replaces the profile's boot-time distribution; ``config_items`` are the
device's values before the controller's first config (EVE applies the controller's full set then).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from eden.device_params import images_for, node_params
from eden.errors import InvalidInput, did_you_mean, validate_model
from eden.profiles import HwProfile, apply_overrides, load_profiles
from eden.yamlsrc import load_yaml_file
from eve.config_items import is_known, validate_item
from eve.images import Behaviour, approved_measurements
from eve.node import ImageInfo, NodeParams



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageEntry(_Strict):
    version: str = Field(min_length=1)
    behaviour: Behaviour = "good"
    size: int = Field(default=300 * 2**20, ge=0)
    """bytes; download and partition-write times scale with it."""


class AgentSpec(_Strict):
    """What one ``eden agent`` plays (its spec file): identity, hardware profile, image catalogue.
    The emulated backend writes one for each fleet device of a scenario (:class:`eden.scenario.DeviceSpec`)."""

    serial: str = Field(min_length=1)
    device_id: str | None = None
    """Name used by the node model and in events; default: the serial."""
    profile: str = Field(min_length=1)
    """A hardware profile name (``eden profiles``)."""
    profile_overrides: dict[str, Any] = Field(default_factory=dict)
    image: str
    """The image installed in partition IMGA at the factory."""
    images: dict[str, ImageEntry]
    seed: int = 0
    boot_time: float | None = Field(default=None, gt=0)
    config_items: dict[str, int | str | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "AgentSpec":
        if self.image not in self.images:
            raise ValueError(f"image '{self.image}' is not in images; {did_you_mean(self.image, self.images, 'image')}")
        for key, value in self.config_items.items():
            # An unknown key is EVE's to report (configItemStatus), not a reason to refuse the device.
            problem = validate_item(key, value) if is_known(key) else None
            if problem:
                raise ValueError(f"config_items: {problem}")
        return self

    @property
    def name(self) -> str:
        return self.device_id or self.serial

    def hw_profile(self, profiles: dict[str, HwProfile] | None = None) -> HwProfile:
        known = profiles if profiles is not None else load_profiles()
        if self.profile not in known:
            raise InvalidInput.at("spec", 0, 0, f"unknown hardware profile '{self.profile}'", did_you_mean(self.profile, known, "profile"))
        base = known[self.profile]
        return apply_overrides(base, self.profile_overrides) if self.profile_overrides else base

    def image_infos(self) -> dict[str, ImageInfo]:
        # Behaviours are already resolved per device (no variants): no draw is made.
        infos, _ = images_for(self.images, self.profile, np.random.default_rng(0))
        return infos

    def node_params(self, profiles: dict[str, HwProfile] | None = None) -> NodeParams:
        fixed = self.boot_time
        return node_params(
            device_id=self.name,
            serial=self.serial,
            profile_name=self.profile,
            profile=self.hw_profile(profiles),
            images=self.image_infos(),
            boot_time=(lambda _rng: fixed) if fixed is not None else None,
        )

    def attestation_reference(self, profiles: dict[str, HwProfile] | None = None) -> dict[str, Any]:
        """What a controller needs to approve this device's clean boots (§5): the firmware
        identity and each released image's rootfs measurement (``changes-pcrs`` builds are not
        released ones, as in the simulator backend). For ``eden controller preregister --firmware
        F --image NAME=VERSION:MEASUREMENT``."""
        params = self.node_params(profiles)
        return {
            "firmware": params.firmware,
            "images": {
                name: {"version": version, "measurement": measurement}
                for name, (version, measurement) in approved_measurements(params.images).items()
            },
        }


def load_spec(path: str | Path) -> AgentSpec:
    """Load and validate a spec file; bad input raises :class:`InvalidInput` located in the file."""
    return validate_model(AgentSpec, load_yaml_file(path))
