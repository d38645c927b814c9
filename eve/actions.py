"""What the node asks its driver to do: the outputs of :class:`eve.node.Node` (spec: none; this is
the sans-I/O seam). The simulator carries them out in simulated time, the device agent for real."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eve.enums import BootReason
from eve.vocab import TimerName


@dataclass(frozen=True, slots=True)
class Send:
    """Send a request to the controller. ``status`` 0 in the response means a transport error."""

    kind: str  # certs | register | uuid | config | info | metrics | attest | ping | logs
    rid: int
    body: dict[str, Any]
    ports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SetTimer:
    name: TimerName
    at: float


@dataclass(frozen=True, slots=True)
class CancelAll:
    """Drop every timer of this node (power lost or hardware reset)."""


@dataclass(frozen=True, slots=True)
class Reset:
    """The node resets its hardware; the driver powers it on again (a real reboot on real backends)."""

    reason: BootReason | None


@dataclass(frozen=True, slots=True)
class Note:
    """A timeline record: something a report or an expectation may want to know."""

    what: str
    data: dict[str, Any]


Action = Send | SetTimer | CancelAll | Reset | Note
