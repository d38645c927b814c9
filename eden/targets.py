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
from eden.scenario.model import StepBase, TargetSpec, rollout_step


def stream(seed: int, label: str) -> np.random.Generator:
    """An independent generator for one purpose (``label``) of a run seeded with ``seed``."""
    key = int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, key]))


def rollout_waves(device_ids: Sequence[str], waves: Sequence[tuple[float | None, int | None]], *, seed: int,
                  label: str) -> list[list[str]]:
    """The devices of each wave of the rollout step at ``label`` (``steps[N]``): the rollout's
    devices in the order its seed shuffles them, cut at the cumulative wave sizes."""
    order = list(device_ids)
    stream(seed, "rollout:" + label).shuffle(order)
    out: list[list[str]] = []
    done = 0
    for upto in wave_sizes(len(order), waves):
        out.append(order[done:upto])
        done = upto
    return out


def select(target: str | TargetSpec, devices: Sequence[DeviceSpec], *, seed: int, label: str,
           steps: Sequence[StepBase] = ()) -> list[str]:
    """Device ids selected by ``target``, in fleet order (``steps``: the scenario's, for ``wave``)."""
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
    if target.wave is not None:
        chosen = _in_wave(chosen, target, devices, seed, steps)
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


def _in_wave(chosen: list[DeviceSpec], target: TargetSpec, devices: Sequence[DeviceSpec], seed: int,
             steps: Sequence[StepBase]) -> list[DeviceSpec]:
    """``chosen`` narrowed to the targeted wave (the loader checked the rollout and the wave exist)."""
    n = rollout_step(list(steps), target.rollout)
    assert isinstance(n, int) and target.wave is not None, n
    args = steps[n].args  # a rollout covers the whole fleet: its devices are all of them, in fleet order
    waves = rollout_waves([d.id for d in devices], [(w.fraction, w.count) for w in args.waves], seed=seed, label=f"steps[{n}]")
    members = set(waves[target.wave - 1])
    return [d for d in chosen if d.id in members]


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
