"""Evaluate scenario conditions against what the controller knows about each device.

Every backend exposes the same *device view*: the latest device info the controller received
(state, swList, boot reason, attestation, maintenance, apps), plus ``onboarded`` (the controller
handed out a UUID) and two facts only the harness can know: ``bricked`` and ``powered``. A device
that never reported has ``reported: False`` and fails every condition but ``onboarded: false`` and
``bricked``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from eden.scenario.model import Condition, Count, Expectation

if TYPE_CHECKING:
    from eden.backends.base import Backend
    from eden.backends.ports import DeviceView as View  # what ``Backend.views()`` gives per device


class Matcher(Protocol):
    """What DeviceWatch evaluates: a predicate over a view that can also say what it looked at."""

    def __call__(self, view: View) -> bool: ...

    def describe(self, view: View) -> Mapping[str, object]: ...


def _sw(view: View, index: int) -> Mapping[str, object]:
    sw = view.get("sw") or []
    return sw[index] if len(sw) > index else {}


def observed(cond: Condition, view: View, key: str) -> Any:
    """The value the condition ``key`` looks at in ``view`` (for reports)."""
    if key == "onboarded":
        return bool(view.get("onboarded"))
    if key == "bricked":
        return bool(view.get("bricked"))
    if key == "connected":
        return bool(view.get("connected"))
    if not view.get("reported"):
        return None
    if key == "device_state":
        return view.get("state")
    if key == "version":
        return _sw(view, 0).get("version")
    if key == "current_partition":
        s = _sw(view, 0)
        return {"state": s.get("state"), "version": s.get("version")}
    if key == "other_partition":
        s = _sw(view, 1)
        return {"state": s.get("state"), "version": s.get("version")}
    if key == "baseos_status":
        baseos = view.get("baseos")
        return baseos.get("status", "NONE") if baseos else "NONE"
    if key == "boot_reason":
        return view.get("boot_reason")
    if key == "attestation":
        return view.get("attestation")
    if key == "maintenance_mode":
        reasons = view.get("maintenance") or []
        return reasons[0] if reasons else "NONE"
    if key == "dpc":
        return {"index": view.get("dpc_index"), "state": view.get("dpc_state"), "ports": view.get("dpc_ports")}
    if key == "vault":
        return view.get("vault")
    if key == "reboot_reason":
        return view.get("reboot_reason_text", "")
    if key == "counters":
        assert cond.counters is not None
        # a counter the device never set reads 0, as it does on the wire (plain uint32 fields)
        return {k: view.get(COUNTER_FIELDS[k]) or 0 for k in cond.counters.given()}
    if key in ("config_item_error", "config_item_errors"):
        # configItemStatus entries with an error (spec §6), decoded on the real backends
        return sorted(view.get("config_items_errors") or [])
    if key == "app":
        assert cond.app is not None
        apps = view.get("apps")
        app = apps.get(cond.app.name) if apps else None
        state = app["state"] if app else "ABSENT"
        if cond.app.error is None and cond.app.adapters is None:
            return state
        seen: dict[str, object] = {"state": state}
        if cond.app.error is not None:
            seen["error"] = (app.get("err") if app else None) or ""
        if cond.app.adapters is not None:
            seen["adapters"] = sorted(app.get("adapters", [])) if app else []
        return seen
    raise KeyError(key)


COUNTER_FIELDS = {"restart": "restart_counter", "reboot": "reboot_counter", "shutdown": "shutdown_counter",
                  "baseos_update": "baseos_update_counter"}
"""``counters`` keys -> the device view's fields (eden.backends.ports.DeviceInfo)."""


def _in_count(value: object, want: Count) -> bool:
    if not isinstance(value, int):
        return False
    if isinstance(want, int):
        return value == want
    return (want.min is None or value >= want.min) and (want.max is None or value <= want.max)


class DeviceMatcher:
    """A compiled device condition: ``matcher(view) -> bool``."""

    def __init__(self, cond: Condition, versions: Mapping[str, str]) -> None:
        self.cond = cond
        self.keys = [k for k in cond.set_keys() if k not in ("metric", "rollout")]
        self._versions = versions
        self.time_dependent = "connected" in self.keys
        """True when the answer can change without a new view (silence makes a device offline)."""

    def version_of(self, name_or_version: str) -> str:
        return self._versions.get(name_or_version, name_or_version)

    def check(self, key: str, view: View) -> bool:
        c = self.cond
        value = observed(c, view, key)
        if key == "version":
            return value == self.version_of(c.version or "")
        if key in ("current_partition", "other_partition"):
            want = getattr(c, key)
            if value is None:
                return False
            if want.state is not None and value["state"] != want.state:
                return False
            return want.version is None or value["version"] == self.version_of(want.version)
        if key == "maintenance_mode":
            if value is None:
                return False
            reasons = view.get("maintenance") or []
            return (not reasons) if c.maintenance_mode == "NONE" else c.maintenance_mode in reasons
        if key == "app":
            assert c.app is not None
            if c.app.error is None and c.app.adapters is None:
                return value == c.app.state
            want = c.app.error
            if value is None or value["state"] != c.app.state:
                return False
            if want is not None and not (want in value["error"] if want else not value["error"]):
                return False
            return c.app.adapters is None or value["adapters"] == sorted(c.app.adapters)
        if key == "dpc":
            assert c.dpc is not None
            if value is None:
                return False
            return (
                (c.dpc.index is None or value["index"] == c.dpc.index)
                and (c.dpc.state is None or value["state"] == c.dpc.state)
                and (c.dpc.ports is None or sorted(value["ports"] or []) == sorted(c.dpc.ports))
            )
        if key == "reboot_reason":
            return value is not None and (c.reboot_reason or "") in value
        if key == "counters":
            assert c.counters is not None
            return value is not None and all(_in_count(value[k], want) for k, want in c.counters.given().items())
        if key == "config_item_error":
            return value is not None and c.config_item_error in value
        if key == "config_item_errors":
            return value is not None and value == sorted(set(c.config_item_errors or ()))
        if key == "boot_reason" and isinstance(c.boot_reason, list):
            return value in c.boot_reason
        return value == getattr(c, key)

    def __call__(self, view: View) -> bool:
        return all(self.check(k, view) for k in self.keys)

    def describe(self, view: View) -> dict[str, Any]:
        return {k: observed(self.cond, view, k) for k in self.keys}


@dataclass
class CheckOutcome:
    """One check of an expectation at one moment: whether it holds, what was observed (as the summary
    shows it) and the detail; the run's verdict is judged from the last ones."""

    ok: bool
    observed: object
    detail: dict[str, Any] = field(default_factory=dict)


class FromPoint:
    """``always`` with ``from:``: per device, vacuously true until the point condition first
    holds for it in a view with a report, then the invariant; the point is remembered (a device
    that onboarded and went offline is still past its point). A device can be onboarded before its
    first info reaches the controller: until then there is nothing its report could be checked on."""

    def __init__(self, point: DeviceMatcher, inner: DeviceMatcher) -> None:
        self.point = point
        self.inner = inner
        self.passed: set[str] = set()
        self.time_dependent = point.time_dependent or inner.time_dependent

    def __call__(self, view: View) -> bool:
        dev = str(view.get("id"))
        if dev not in self.passed and view.get("reported") and self.point(view):
            self.passed.add(dev)
        return dev not in self.passed or self.inner(view)

    def describe(self, view: View) -> dict[str, object]:
        return {**self.inner.describe(view), "past_point": str(view.get("id")) in self.passed}


class DeviceWatch:
    """Keeps, per device, whether it satisfies a condition; only re-evaluates changed views.

    Counts are kept incrementally so a check over a 10,000-device fleet costs what changed."""

    def __init__(self, matcher: Matcher, device_ids: list[str]) -> None:
        self.matcher = matcher
        self.ids = device_ids
        self._order = {d: n for n, d in enumerate(device_ids)}
        self.state: dict[str, bool] = {}
        self.good: set[str] = set()
        self.seq = -1

    def update(self, backend: Backend) -> None:
        """Pull the views that changed since the last update and re-evaluate those devices."""
        seq, changed = backend.changes(self.seq)
        views = backend.views()
        if changed is None or self.seq < 0 or getattr(self.matcher, "time_dependent", False):
            todo: list[str] = self.ids
        else:
            todo = [d for d in changed if d in self._order]
        self.seq = seq
        for d in todo:
            ok = self.matcher(views[d])
            self.state[d] = ok
            if ok:
                self.good.add(d)
            else:
                self.good.discard(d)

    def satisfied(self) -> list[str]:
        return sorted(self.good, key=self._order.__getitem__)

    def failing(self, limit: int = 5) -> list[str]:
        if len(self.good) == len(self.ids):
            return []
        out = []
        for d in self.ids:
            if d not in self.good:
                out.append(d)
                if len(out) >= limit:
                    break
        return out

    def outcome(self, at_least: float, views: Mapping[str, View]) -> CheckOutcome:
        n = len(self.ids)
        good = len(self.good)
        frac = good / n if n else 1.0
        ok = n > 0 and frac + 1e-12 >= at_least
        if n == 1:
            return CheckOutcome(ok, self.matcher.describe(views[self.ids[0]]), {"devices": 1, "satisfied": good})
        detail: dict[str, Any] = {"devices": n, "satisfied": good, "fraction": round(frac, 6)}
        if not ok:
            detail["failing"] = {d: self.matcher.describe(views[d]) for d in self.failing()}
        return CheckOutcome(ok, {"fraction": round(frac, 6), "satisfied": good, "devices": n}, detail)


def metric_outcome(cond: Condition, value: object) -> CheckOutcome:
    assert cond.metric is not None
    m = cond.metric
    if not isinstance(value, (int, float)):
        return CheckOutcome(False, value, {"why": f"metric {m.name} has no numeric value"})
    ok = (m.max is None or value <= m.max + 1e-12) and (m.min is None or value >= m.min - 1e-12)
    return CheckOutcome(ok, value, {"min": m.min, "max": m.max})


def rollout_outcome(cond: Condition, state: str | None) -> CheckOutcome:
    assert cond.rollout is not None
    return CheckOutcome(state == cond.rollout.state, state)


def describe_expectation(exp: Expectation) -> str:
    """A one-line human label, used when the scenario gives no ``name``."""
    parts = []
    for key in exp.set_keys():
        value = getattr(exp, key)
        if hasattr(value, "model_dump"):
            value = {k: v for k, v in value.model_dump().items() if v is not None}
        parts.append(f"{key}={value}")
    text = ", ".join(parts)
    if exp.at_least < 1.0:
        text = f">= {exp.at_least:.1%} of devices: {text}"
    target = exp.target if isinstance(exp.target, str) else exp.target.model_dump(exclude_none=True)
    if target != "all":
        text += f" [target {target}]"
    if exp.always:
        text = "always " + text
        if exp.from_ is not None:
            text += " from " + ", ".join(f"{k}={getattr(exp.from_, k)}" for k in exp.from_.set_keys())
        if exp.after is not None:
            text += f" after steps[{exp.after}]" if isinstance(exp.after, int) else f" after '{exp.after}'"
    elif exp.within is not None:
        text += f" within {exp.within:g}s"
    return text
