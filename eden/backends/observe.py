"""What every backend observes the same way: which devices changed, the device series, the view summary.

* :class:`ChangeJournal`: a sequence number per change and the device it touched, so
  :meth:`~eden.backends.base.Backend.changes` hands a condition watch only the devices whose view
  may differ since it last looked (:class:`eden.conditions.DeviceWatch`).
* :class:`DeviceSeries`: the columns reports plot: devices connected, powered, per reported state
  and per running version, one sample per step. The simulator counts states incrementally from the
  controller's info journal, a real-time backend from its views; both append here.
* :func:`view_summary` and :func:`rollback_times`: the counts and instants reports and metrics
  cut from views and the timeline.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Generic, Hashable, Mapping, TypedDict, TypeVar

from eden.timeline import Timeline

if TYPE_CHECKING:
    from eden.backends.ports import DeviceView

K = TypeVar("K", bound=Hashable)
JOURNALED = frozenset({"booted", "bricked", "crash", "power_off", "powered_off", "reset", "onboarded", "hang"})
"""Device notes after which a device's view may have changed although the controller heard nothing."""


class ChangeJournal(Generic[K]):
    """Devices (by key) in the order their views changed, numbered."""

    def __init__(self) -> None:
        self.seq = 0
        self._seqs: list[int] = []
        self._keys: list[K] = []

    def touch(self, key: K) -> None:
        self.seq += 1
        self._seqs.append(self.seq)
        self._keys.append(key)

    def since(self, seq: int) -> list[K]:
        """The keys touched after ``seq``, each once, in first-touch order."""
        lo = bisect.bisect_right(self._seqs, seq)
        return list(dict.fromkeys(self._keys[lo:]))


class DeviceSeriesDoc(TypedDict):
    """:meth:`DeviceSeries.as_dict`: per sample, devices connected, powered, per state, per version."""

    step: float
    t: list[float]
    connected: list[int]
    powered: list[int]
    by_state: dict[str, list[int]]
    by_version: dict[str, list[int]]


ControllerSeries = dict[str, float | list[float]]
"""The simulated controller's load series: ``step`` (seconds) and per-step columns (requests,
latency, ..., ``<kind>_requests``)."""


class ViewSummary(TypedDict):
    """:func:`view_summary`: devices per reported state (``UNREPORTED``, ``BRICKED`` for the
    others; None for a report without a state) and per running version."""

    by_state: dict[str | None, int]
    by_version: dict[str, int]


class DeviceSeries:
    """Per-sample device counts; a state or version column starts at its first sample, zero-filled."""

    def __init__(self) -> None:
        self.t: list[float] = []
        self.connected: list[int] = []
        self.powered: list[int] = []
        self.by_state: dict[str, list[int]] = {}
        self.by_version: dict[str, list[int]] = {}

    def append(self, t: float, connected: int, powered: int, states: Mapping[str, int], versions: Mapping[str, int]) -> None:
        self.t.append(t)
        self.connected.append(connected)
        self.powered.append(powered)
        n = len(self.t)
        for counts, store in ((states, self.by_state), (versions, self.by_version)):
            for key in sorted(set(counts) | set(store)):
                column = store.setdefault(key, [0] * (n - 1))
                column.append(counts.get(key, 0))

    def as_dict(self, step: float) -> DeviceSeriesDoc:
        """The series for reports; columns that stayed zero are left out."""
        return {
            "step": step,
            "t": self.t,
            "connected": self.connected,
            "powered": self.powered,
            "by_state": {k: v for k, v in sorted(self.by_state.items()) if any(v)},
            "by_version": {k: v for k, v in sorted(self.by_version.items()) if any(v)},
        }


def rollback_times(timeline: Timeline) -> list[float]:
    """When devices booted back into their previous image, in timeline order."""
    return [round(e.t, 3) for e in timeline.events if e.what == "booted" and e.data.get("rolled_back") is not None]


def view_summary(views: Mapping[str, DeviceView]) -> ViewSummary:
    """Counts of devices per state and per running version (for reports and progress)."""
    states: dict[str | None, int] = {}
    versions: dict[str, int] = {}
    for v in views.values():
        state = v.get("state") if v.get("reported") else ("BRICKED" if v.get("bricked") else "UNREPORTED")
        states[state] = states.get(state, 0) + 1
        sw = v.get("sw") or []
        ver = sw[0].get("version") if sw else None
        if ver is not None:
            versions[ver] = versions.get(ver, 0) + 1
    return {"by_state": dict(sorted(states.items())), "by_version": dict(sorted(versions.items()))}
