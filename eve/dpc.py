"""The DPC list of nim's dpcmanager (spec §4): controller-pushed network configs, their test
results, and the rules that pick which one to try (P:dpcmanager/dpc.go, P:dpcmanager/verify.go,
P:types/dpc.go). Pure data and functions; :class:`eve.node.Node` drives them."""

from __future__ import annotations

from dataclasses import dataclass

from eve.enums import DPCState

MIN_TIME_SINCE_FAILURE = 300.0
"""§4: re-verify skips a DPC that failed in the last 5 min (``DpcMinTimeSinceFailure``)."""
WAIT_FOR_INTF_RETRIES = 2
"""§4 verify.go ``waitForIfRetries``: a missing interface is waited for 2 x timer.port.testduration."""


@dataclass
class Dpc:
    """One DevicePortConfig: its management ports and its last test results."""

    key: str
    ports: tuple[str, ...]
    prio: float
    """TimePriority: newer first (§4)."""
    broken: bool = False
    """The ports come up with IP and DNS but cannot reach the controller (e.g. a wrong gateway)."""
    last_failed: float | None = None
    last_succeeded: float | None = None
    state: DPCState = DPCState.NONE
    last_error: str = ""

    def same_config(self, other: "Dpc") -> bool:
        """``MostlyEqual``: everything but the time priority and the test results."""
        return self.key == other.key and self.ports == other.ports and self.broken == other.broken

    def was_working(self) -> bool:
        """``WasDPCWorking``: the last result is a success."""
        return self.last_succeeded is not None and (self.last_failed is None or self.last_succeeded > self.last_failed)

    def testable(self, now: float) -> bool:
        """``IsDPCTestable``: usable (has a management port) and not failed in the last 5 min."""
        if not self.ports:
            return False
        if self.last_failed is None or self.was_working() or self.last_failed > now:
            return True
        return now - self.last_failed >= MIN_TIME_SINCE_FAILURE


def insert(dpcs: list[Dpc], new: Dpc) -> int:
    """Add a controller DPC (``updateDPCListAndPublish``): an equal config moves to the top and keeps
    its results; any other goes in before the first DPC it outranks (a controller DPC outranks
    every non-controller one, otherwise newer first). Returns its index."""
    for n, d in enumerate(dpcs):
        if d.same_config(new):
            del dpcs[n]
            new.last_failed, new.last_succeeded, new.state, new.last_error = d.last_failed, d.last_succeeded, d.state, d.last_error
            break
    for n, d in enumerate(dpcs):
        if (new.key == "zedagent" and d.key != "zedagent") or new.prio > d.prio:
            dpcs.insert(n, new)
            return n
    dpcs.append(new)
    return len(dpcs) - 1


def compress(dpcs: list[Dpc], current: int) -> tuple[list[Dpc], int]:
    """``compressDPCL``: keep index 0, the current DPC, the most recent working one and the most
    recent of each key while no controller DPC ever worked; drop the rest. Returns the new list and
    the current index moved with it."""
    controller_worked = any(d.key == "zedagent" and d.last_succeeded is not None for d in dpcs)
    kept: list[Dpc] = []
    keys: set[str] = set()
    kept_working = False
    new_current = current
    for n, d in enumerate(dpcs):
        keep = n == 0 or n == current or (not kept_working and d.was_working())
        keep = keep or (d.key not in keys and (d.key == "zedagent" or not controller_worked))
        if keep:
            kept.append(d)
            kept_working = kept_working or d.was_working()
            keys.add(d.key)
        elif n <= current:
            new_current -= 1
    return kept, new_current


def next_testable(dpcs: list[Dpc], start: int, now: float) -> int:
    """``getNextTestableDPCIndex``: from ``start``, wrapping once around; -1 when none is testable."""
    if not dpcs:
        return -1
    for k in range(len(dpcs)):
        n = (start + k) % len(dpcs)
        if dpcs[n].testable(now):
            return n
    return -1
