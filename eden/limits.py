"""Limits on what an input file may ask for, each with an environment variable that raises it.

A careless or hostile file must end in a clear error, not in gigabytes of memory or minutes of
work: a fleet ``count`` of 10^9 or a 50 MB list of steps is refused at validation. The defaults fit
every shipped scenario many times over; a real million-device run raises them on purpose, e.g.
``EDEN_MAX_DEVICES=2000000 eden run big.yaml`` (docs/scenario-language.md, "Limits").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from eden.errors import InvalidInput, Issue


@dataclass(frozen=True)
class Limit:
    env: str
    default: int
    what: str
    """What is counted, for messages and the docs table."""


LIMITS: dict[str, Limit] = {
    "file_bytes": Limit("EDEN_MAX_FILE_BYTES", 2**20, "bytes in one YAML file"),
    "yaml_depth": Limit("EDEN_MAX_YAML_DEPTH", 64, "levels of nested lists and mappings"),
    "yaml_nodes": Limit("EDEN_MAX_YAML_NODES", 100_000, "YAML values in one file, aliases counted each time they are used"),
    "devices": Limit("EDEN_MAX_DEVICES", 100_000, "devices in one scenario's fleet"),
    "entries": Limit("EDEN_MAX_STEPS", 10_000, "entries in one list or mapping of a scenario (steps, faults, expect, ...)"),
}


def limit(name: str) -> int:
    """The limit ``name`` now: its environment variable if set (a positive integer), else the default."""
    spec = LIMITS[name]
    raw = os.environ.get(spec.env)
    if raw is None or raw.strip() == "":
        return spec.default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidInput(
            Issue(f"${spec.env}", 0, 0, f"{spec.env}={raw!r} is not a positive integer", f"the default is {spec.default}")
        )
    return value


def raise_hint(name: str) -> str:
    spec = LIMITS[name]
    return f"the limit is {limit(name):,} {spec.what}; set {spec.env} to raise it"
