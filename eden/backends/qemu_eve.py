"""Real EVE-OS devices on the ``qemu`` backend (docs/real-eve.md "Running scenarios on EVE").

The rule: a device is an **EVE device** when its hardware profile says ``qemu.image: eve``
(``hw_profiles/eve-qemu-x86_64.yaml``). Every EVE device of a run boots a per-VM copy of the one
live image named by ``EDEN_EVE_IMAGE`` (raw or qcow2, never written itself); the other devices
boot eden's reference image as before. ``EDEN_EVE_IMAGE`` without an EVE device in the fleet, or
an EVE device without ``EDEN_EVE_IMAGE``, is invalid input, so nobody mistakes a reference-image
run for an EVE run.

Base-OS content for EVE devices: a scenario image with ``path:`` names EVE's rootfs image (e.g.
``rootfs.img`` of a release) that the controller's datastore serves for base-OS updates; the
path is relative to the scenario file. Images without ``path`` cannot be installed on EVE.

What the backend does per EVE device is shared with the reference image wherever it can be:
the controller, its pre-registration and ``eden controller device-config`` output
(LiveBackend._provision), the NICs, QMP power and links, console capture, the admin-API views.
What differs is here: the disk (:func:`~eden.qemu.eve_image.prepare_eve_disk`), the CONFIG
partition (FAT, :func:`~eden.qemu.eve_image.write_eve_config`), the machine (OVMF + swtpm,
:func:`~eden.qemu.eve_image.eve_machine_config`) and the observation: EVE's console has no
``EDEN-BOOT:`` markers or agent event lines, so boot progress is the profile's
``console.boot_marker`` and onboarding is what the controller reports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eden.errors import InvalidInput, Issue, issue_at

if TYPE_CHECKING:  # pragma: no cover
    from eden.profiles import HwProfile
    from eden.qemu.eve_image import GptPartition
    from eden.scenario.load import LoadedScenario

EVE_IMAGE_ENV = "EDEN_EVE_IMAGE"
EVE_PROFILE_HINT = "use a profile with qemu.image: eve, e.g. eve-qemu-x86_64 (docs/real-eve.md)"


def is_eve_profile(profile: HwProfile) -> bool:
    """The device boots a real EVE-OS live image (``qemu.image: eve``), not the reference image."""
    return profile.qemu is not None and profile.qemu.image == "eve"


def eve_device_ids(loaded: LoadedScenario) -> set[str]:
    return {d.id for d in loaded.devices if is_eve_profile(d.profile)}


@dataclass(frozen=True)
class EvePlan:
    """What a run needs for its EVE devices, checked before anything starts."""

    live_image: Path
    content: dict[str, Path]  # scenario image name -> EVE rootfs image for the datastore


def input_issues(loaded: LoadedScenario, env: Mapping[str, str] | None = None) -> list[Issue]:
    """Every way a scenario's real-image inputs are wrong for ``--backend qemu``, each at its
    file:line:col: ``path:`` images that are missing or used without (or beside non-) EVE devices,
    EVE devices without ``EDEN_EVE_IMAGE`` (or the variable without EVE devices), an
    ``EDEN_EVE_IMAGE`` that is not an EVE disk. ``eden validate --backend qemu`` and ``eden run``
    report them before anything starts."""
    from eden.qemu.eve_image import CONFIG_PARTITION, disk_format, find_partition

    env = os.environ if env is None else env
    located = loaded.located
    ids = eve_device_ids(loaded)
    value = env.get(EVE_IMAGE_ENV, "").strip()
    eve_entries = [i for i, entry in enumerate(loaded.scenario.fleet)
                   if any(d.id in ids for d in loaded.devices if d.entry == i)]
    at_fleet: tuple[str | int, ...] = ("fleet", eve_entries[0], "profile") if eve_entries else ("fleet",)
    out: list[Issue] = []
    everyone = bool(ids) and len(ids) == len(loaded.devices)
    for name, img in loaded.scenario.images.items():
        if img.path is None:
            continue
        where = ("images", name, "path")
        if not ids:
            out.append(issue_at(located, where, f"image {name}: a path: image is an EVE rootfs image, and no device of "
                                "the fleet runs EVE-OS", EVE_PROFILE_HINT))
            continue
        if not everyone:
            out.append(issue_at(located, where, "images with path: are EVE rootfs images; a fleet that mixes EVE and "
                                "reference-image devices cannot use them", "run the EVE devices in a scenario of their own"))
        p = Path(img.path).expanduser()
        if not p.is_absolute():
            p = loaded.path.parent / p
        if not p.is_file():
            out.append(issue_at(located, where, f"image {name}: path {img.path!r} not found (looked at {p})",
                                "path: names EVE's rootfs image for base-OS updates, relative to the scenario file"))
    if not ids:
        if value:
            out.append(issue_at(located, ("fleet",), f"{EVE_IMAGE_ENV} is set but no device of the fleet is an EVE device",
                                f"{EVE_PROFILE_HINT}, or unset {EVE_IMAGE_ENV} to boot eden's reference image", key=True))
        return out
    profiles = sorted({d.profile_name for d in loaded.devices if d.id in ids})
    if not value:
        out.append(issue_at(located, at_fleet, f"the fleet has EVE devices (profile {', '.join(profiles)}) but "
                            f"{EVE_IMAGE_ENV} is not set", f"set {EVE_IMAGE_ENV}=/path/to/live.raw (docker run lfedge/eve live)"))
        return out
    image = Path(value).expanduser()
    if not image.is_file():
        out.append(issue_at(located, at_fleet, f"{EVE_IMAGE_ENV}: EVE image not found ({value})",
                            "give a raw or qcow2 EVE live image (docs/real-eve.md step 1)"))
    elif disk_format(image) == "raw":  # a qcow2 is checked once converted (prepare_eve_disk)
        try:
            find_partition(image, CONFIG_PARTITION)
        except InvalidInput as exc:
            out.append(issue_at(located, at_fleet, f"{EVE_IMAGE_ENV}={value}: {exc.issues[0].message}", exc.issues[0].hint))
    return out


def eve_plan(loaded: LoadedScenario, env: Mapping[str, str] | None = None) -> EvePlan | None:
    """The live image and base-OS content for the run's EVE devices; ``None`` without any.

    Raises :class:`InvalidInput` (exit 2) for every way the input can be wrong: no
    ``EDEN_EVE_IMAGE`` for EVE devices (or one without EVE devices), a file that is not a disk
    with EVE's CONFIG partition, a missing ``path:`` file.
    """
    from eden.qemu.eve_image import CONFIG_PARTITION, disk_format, find_partition

    issues = input_issues(loaded, env)
    if issues:
        raise InvalidInput(issues)
    env = os.environ if env is None else env
    ids = eve_device_ids(loaded)
    value = env.get(EVE_IMAGE_ENV, "").strip()
    where = str(loaded.path)
    if not ids:
        if value:
            raise InvalidInput.at(where, 0, 0, f"{EVE_IMAGE_ENV} is set but no device of the fleet is an EVE device",
                                  f"{EVE_PROFILE_HINT}, or unset {EVE_IMAGE_ENV} to boot eden's reference image")
        return None
    profiles = sorted({d.profile_name for d in loaded.devices if d.id in ids})
    if not value:
        raise InvalidInput.at(where, 0, 0, f"the fleet has EVE devices (profile {', '.join(profiles)}) but {EVE_IMAGE_ENV} "
                                           "is not set", f"set {EVE_IMAGE_ENV}=/path/to/live.raw (docker run lfedge/eve live)")
    image = Path(value).expanduser()
    if not image.is_file():
        raise InvalidInput.at(value, 0, 0, f"{EVE_IMAGE_ENV}: EVE image not found",
                              "give a raw or qcow2 EVE live image (docs/real-eve.md step 1)")
    if disk_format(image) == "raw":  # a qcow2 is checked once converted (prepare_eve_disk)
        find_partition(image, CONFIG_PARTITION)
    content: dict[str, Path] = {}
    for name, img in loaded.scenario.images.items():
        if img.path is None:
            continue
        p = Path(img.path).expanduser()
        if not p.is_absolute():
            p = loaded.path.parent / p
        if not p.is_file():
            raise InvalidInput.at(where, 0, 0, f"image {name}: path {img.path!r} not found (looked at {p})",
                                  "path: names EVE's rootfs image for base-OS updates, relative to the scenario file")
        content[name] = p.resolve()
    return EvePlan(image.resolve(), content)


def write_device_config(disk: Path, config_dir: Path, serial: str) -> GptPartition:
    """EVE's CONFIG from the ``device-config`` directory (server already rewritten to the guest's
    view), with the pre-registered serial as ``soft_serial``; eden-only files are left out."""
    from eden.qemu.eve_image import eve_config_files, write_eve_config

    return write_eve_config(disk, eve_config_files(config_dir, soft_serial=serial))


def host_kernel() -> Path | None:
    """A kernel of the host to probe KVM with when no reference image is built (``None``: TCG)."""
    for k in sorted(Path("/boot").glob("vmlinuz-*"), reverse=True):
        if os.access(k, os.R_OK):
            return k
    return None
