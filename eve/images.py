"""What an image does once booted, and which builds a controller approves (spec §3, §5).

A scenario names an image's behaviour with one of :data:`BEHAVIOURS`; the node model, the
reference device image and every backend read these names from here. A ``changes-pcrs`` build
boots like a good one but measures differently, so it is never a released (approved) build.
"""

from __future__ import annotations

from typing import Literal, Mapping, Protocol, get_args

Behaviour = Literal["good", "crash-on-boot", "no-controller", "changes-pcrs"]
BEHAVIOURS: tuple[Behaviour, ...] = get_args(Behaviour)
GOOD: Behaviour = "good"
CRASH_ON_BOOT: Behaviour = "crash-on-boot"
NO_CONTROLLER: Behaviour = "no-controller"
CHANGES_PCRS: Behaviour = "changes-pcrs"

DownloadBehaviour = Literal["ok", "corrupt"]
"""``corrupt``: every download of the image fails verification (spec §4)."""
CORRUPT: DownloadBehaviour = "corrupt"


class Release(Protocol):
    """An image as a scenario or a node declares it."""

    @property
    def version(self) -> str: ...

    @property
    def behaviour(self) -> str: ...


def rootfs_measurement(name: str, version: str, behaviour: str) -> str:
    """What stage-2 GRUB measures into PCR 13 (§1): a changes-pcrs build differs from the release."""
    base = f"{name}:{version}"
    return base + ":unexpected-measurement" if behaviour == CHANGES_PCRS else base


def approved_measurements(images: Mapping[str, Release]) -> dict[str, tuple[str, str]]:
    """Image name -> (version, rootfs measurement) of every released build a controller approves (§5)."""
    return {
        name: (str(img.version), rootfs_measurement(name, str(img.version), GOOD))
        for name, img in images.items()
        if img.behaviour != CHANGES_PCRS
    }
