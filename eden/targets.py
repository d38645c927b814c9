"""Resolve a scenario ``target`` to device ids, deterministically.

A sample (``fraction`` / ``count``) is drawn from a random stream derived from the run's seed and
the place in the scenario the target comes from, so the same scenario and seed always pick the
same devices, and adding a step elsewhere does not reshuffle this one.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np

from eden.scenario.load import DeviceSpec
from eden.scenario.model import TargetSpec


def stream(seed: int, label: str) -> np.random.Generator:
    """An independent generator for one purpose (``label``) of a run seeded with ``seed``."""
    key = int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, key]))


def select(target: str | TargetSpec, devices: Sequence[DeviceSpec], *, seed: int, label: str) -> list[str]:
    """Device ids selected by ``target``, in fleet order."""
    if isinstance(target, str):
        if target == "all":
            return [d.id for d in devices]
        by_group = [d.id for d in devices if d.group == target]
        if by_group:
            return by_group
        return [d.id for d in devices if d.id == target]
    chosen = [
        d
        for d in devices
        if (target.group is None or d.group == target.group)
        and (target.profile is None or d.profile_name == target.profile)
        and (target.devices is None or d.id in target.devices)
    ]
    n = len(chosen)
    if target.fraction is not None:
        k = int(round(target.fraction * n))
    elif target.count is not None:
        k = min(target.count, n)
    else:
        return [d.id for d in chosen]
    if k >= n:
        return [d.id for d in chosen]
    picked = stream(seed, "target:" + label).choice(n, size=k, replace=False)
    return [chosen[j].id for j in sorted(picked.tolist())]


def wave_sizes(total: int, waves: Sequence[tuple[float | None, int | None]]) -> list[int]:
    """Cumulative device counts after each wave: fractions are cumulative, counts add on."""
    out: list[int] = []
    done = 0
    for fraction, count in waves:
        if fraction is not None:
            done = max(done, min(total, math.ceil(fraction * total - 1e-9)))
        else:
            done = min(total, done + int(count or 0))
        out.append(done)
    return out
