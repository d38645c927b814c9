"""One device's static description (``NodeParams`` and its ``ImageInfo`` catalogue).

Shared by the simulator backend and the device agent (``eden agent``), so that a device built
from a scenario and a device built from an agent spec file get the same ports, firmware identity,
timings and image behaviours from the same hardware profile.
"""

from __future__ import annotations

from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from eden.profiles import HwProfile
from eve.images import CORRUPT
from eve.node import ImageInfo, NodeParams, Port

DEFAULT_PORT_SPEED = 12.5e6
"""bytes/s of a NIC whose profile gives no speed (a 100 Mbit/s link)."""


class _Variant(Protocol):
    profile: str
    fraction: float
    behaviour: str


class _ImageLike(Protocol):
    version: str
    behaviour: str
    size: int

    @property
    def variants(self) -> Sequence[_Variant]: ...


def images_for(
    images: Mapping[str, _ImageLike], profile_name: str, rng: np.random.Generator
) -> tuple[dict[str, ImageInfo], dict[str, str]]:
    """Resolve each image's behaviour for one device of ``profile_name``.

    A variant of the device's profile replaces the behaviour with probability ``fraction``; one
    draw from ``rng`` per matching variant, in declaration order. Returns the catalogue and the
    images whose behaviour a variant changed (name -> behaviour)."""
    out: dict[str, ImageInfo] = {}
    changed: dict[str, str] = {}
    for name, img in images.items():
        behaviour = img.behaviour
        for var in getattr(img, "variants", ()):
            if var.profile == profile_name and rng.random() < var.fraction:
                behaviour = var.behaviour
                changed[name] = behaviour
        verify_ok = getattr(img, "download", "ok") != CORRUPT
        out[name] = ImageInfo(name, img.version, behaviour, int(img.size), verify_ok)
    return out, changed


def _app_uuid(name: str) -> str:
    """The app's wire UUID (eden.wire.codec), imported only when an error text names another app."""
    from eden.wire.codec import app_uuid

    return app_uuid(name)


def node_params(
    *,
    device_id: str,
    serial: str,
    profile_name: str,
    profile: HwProfile,
    images: dict[str, ImageInfo],
    boot_time: Callable[[np.random.Generator], float] | None = None,
) -> NodeParams:
    """``NodeParams`` from a hardware profile; ``boot_time`` replaces the profile's distribution
    (an emulated device boots in seconds whatever hardware it stands for)."""
    p = profile
    ports = tuple(
        Port(n.name, n.kind, n.mgmt, n.cost, float(n.speed) if n.speed else DEFAULT_PORT_SPEED) for n in p.nics
    )
    return NodeParams(
        device_id=device_id,
        serial=serial,
        profile=profile_name,
        cores=p.cores,
        memory=p.memory,
        reserved_memory=p.reserved_memory,
        tpm=p.tpm == "2.0",
        firmware=f"{p.firmware.kind}:{p.firmware.version}:{p.arch}",
        ports=ports,
        boot_time=boot_time if boot_time is not None else p.boot_time.sample,
        write_speed=float(p.image_write_speed),
        images=images,
        boot_hang=p.failures.boot_hang,
        hang_per_day=p.failures.hang_per_day,
        write_error=p.failures.write_error,
        smart_power_cycles=p.storage.reports_power_cycles,
        # kdump needs GRUB's crashkernel= reservation: x86_64 (KVM) with >= 2 GiB (spec §7)
        kdump=p.arch == "x86_64" and p.memory >= 2 * 1024**3,
        io=p.io_members,
        eve_max_vcpus=p.eve_max_vcpus,
        app_uuid=_app_uuid,
    )
