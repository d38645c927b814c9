"""A running fleet for Python tests: the API behind the pytest fixture ``eden_fleet``.

Some checks do not fit a data-only scenario file (loops, computed values, comparing two devices).
:class:`Fleet` gives a test the same fleet a scenario would get (same hardware profiles, images,
controller, seed) on a backend, and a small driver that owns the backend's clock::

    fleet = Fleet.from_spec(profile="nuc-class", count=3, images={"base": "13.4.0", "next": "13.5.0"})
    fleet.power_on()
    fleet.wait_until({"device_state": "ONLINE"}, within="5m")
    fleet.apply("baseos_update", image="next")
    fleet.advance("1m")
    assert fleet.view("nuc-class-0")["state"] == "BASEOS_UPDATING"

Nothing is validated twice by hand: every ``apply`` and ``wait_until`` is appended to a scenario
document (fleet + images + controller + the actions applied so far) that is written to a file and
loaded with :func:`eden.scenario.load.load_scenario`, so names, arguments, targets, config items
and step order are checked exactly as in a scenario file. Targets are sampled as the runner does.

Clock: ``apply`` never blocks (a ``network_flap`` or a timed ``controller_outage`` continues in the
background); time passes only in ``advance`` and ``wait_until``. The simulator backend runs its
SimPy environment in increments of the check interval while a condition is evaluated; a real-time
backend (``emulated``) runs its controller and devices on an event loop of its own thread and
``advance`` sleeps (:mod:`eden.backends.live_session`). Every backend is driven through the same
:class:`~eden.backends.base.Session`.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import yaml

from eden.backends.base import Backend, Session
from eden.backends.ports import DeviceView
from eden.backends.registry import backend_capabilities, make_backend
from eden.conditions import CheckOutcome, describe_expectation
from eden.errors import InvalidInput, Issue
from eden.metrics import compute_metric
from eden.profiles import HwProfile, load_profiles
from eden.runner import default_check_interval, expectation_checker, flap, restore_after
from eden.scenario import metric_names
from eden.scenario.load import LoadedScenario, load_scenario
from eden.scenario.model import CONTROLLER_ACTIONS, CONTROLLER_PERIODS, Expectation, NetworkFlapArgs, OutageArgs, StepBase
from eden.targets import select
from eden.timeline import Event, Timeline
from eden.units import format_duration, parse_duration
from eden.yamlsrc import YamlFloat, YamlInt, load_yaml_file

__all__ = ["Fleet", "FleetInputError", "scenario_doc", "with_profile", "dump_yaml"]

RUN_KEYS = ("steps", "faults", "expect", "metrics", "duration")
"""Scenario keys a Fleet does not take from a file: the test drives the fleet itself."""
NOT_APPLICABLE = {
    "wait": "use fleet.advance(seconds)",
    "expect": "use fleet.wait_until(condition, within=...)",
    "rollout": "staged rollouts need a scenario file (run it with eden run or pytest)",
    "resume_rollout": "staged rollouts need a scenario file (run it with eden run or pytest)",
}
DEFAULT_IMAGES: dict[str, dict[str, object]] = {"base": {"version": "13.4.0"}}
FleetTarget = str | Mapping[str, object]
"""A step's ``target`` as a scenario writes it: ``all``, a group or device id, or a mapping
(``{"profile": ...}``, ``{"fraction": 0.1}``, ...); the scenario loader validates it."""
ImageSpec = str | int | float | Mapping[str, object]
"""An image of :meth:`Fleet.from_spec`: its version, or its scenario mapping."""
StepParams = dict[str, object]
"""The parameters of one driver call as :attr:`Fleet.on_step` reports them."""


class FleetInputError(InvalidInput):
    """Invalid arguments to a Fleet call (same checks as a scenario file; failure class: error)."""

    def __init__(self, call: str, issues: list[Issue]) -> None:
        self.call = call
        super().__init__(issues)

    def __str__(self) -> str:
        lines = [f"{self.call}: invalid input"]
        for issue in self.issues:
            lines.append(f"  {issue.message}")
            if issue.hint:
                lines.append(f"    hint: {issue.hint}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------- documents --


class _Dumper(yaml.SafeDumper):
    """Writes numbers as the user typed them, so ``version: 13.10`` stays ``13.10``."""


_Dumper.add_representer(YamlInt, lambda d, v: d.represent_scalar("tag:yaml.org,2002:int", v.source))
_Dumper.add_representer(YamlFloat, lambda d, v: d.represent_scalar("tag:yaml.org,2002:float", v.source))
_Dumper.ignore_aliases = lambda self, data: True  # type: ignore[method-assign]


def dump_yaml(doc: Mapping[str, Any]) -> str:
    """YAML text for a scenario document (keys in their order; numbers keep their text)."""
    return yaml.dump(dict(doc), Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def scenario_doc(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a scenario file (raises InvalidInput for bad YAML)."""
    data = load_yaml_file(path).data
    if not isinstance(data, Mapping):
        raise InvalidInput(Issue(str(path), 1, 1, "expected a mapping at the top level"))
    return dict(data)


def with_profile(doc: Mapping[str, Any], profile: str) -> dict[str, Any]:
    """A copy of ``doc`` with ``profile`` in every fleet entry, as a qualification matrix does.

    An entry without a ``group`` keeps its old profile name as its group, so device ids and
    targets stay valid."""
    out = dict(doc)
    fleet = doc.get("fleet")
    if not isinstance(fleet, list):
        return out
    old: set[str] = set()
    entries = []
    for entry in fleet:
        if isinstance(entry, Mapping) and "profile" in entry:
            entry = dict(entry)
            old.add(str(entry["profile"]))
            if entry.get("group") is None:
                entry["group"] = str(entry["profile"])
            entry["profile"] = profile
        entries.append(entry)
    out["fleet"] = entries

    def renamed(node: Any) -> Any:  # image variants and ``target: {profile: ...}`` follow the fleet
        if isinstance(node, Mapping) and node.get("profile") in old:
            return {**node, "profile": profile}
        return node

    if isinstance(out.get("images"), Mapping):
        out["images"] = {
            name: {**img, "variants": [renamed(v) for v in img["variants"]]}
            if isinstance(img, Mapping) and isinstance(img.get("variants"), list)
            else img
            for name, img in out["images"].items()
        }
    for key in ("steps", "faults", "expect"):
        if isinstance(out.get(key), list):
            items = []
            for item in out[key]:
                if isinstance(item, Mapping):
                    item = {**item, "target": renamed(item["target"])} if "target" in item else dict(item)
                    if isinstance(item.get("expect"), Mapping) and "target" in item["expect"]:
                        item["expect"] = {**item["expect"], "target": renamed(item["expect"]["target"])}
                items.append(item)
            out[key] = items
    return out


def _image_doc(images: Mapping[str, ImageSpec] | None) -> dict[str, dict[str, object]]:
    if not images:
        return dict(DEFAULT_IMAGES)
    return {name: ({"version": str(spec)} if isinstance(spec, (str, int, float)) else dict(spec)) for name, spec in images.items()}


# --------------------------------------------------------------------------------------- fleet --


class Fleet:
    """A fleet on a backend, driven step by step from Python. Use as a context manager or call
    :meth:`close`. Build it with :meth:`from_file` or :meth:`from_spec`."""

    def __init__(
        self,
        doc: Mapping[str, Any],
        *,
        backend: str = "sim",
        seed: int | None = None,
        workdir: str | Path | None = None,
    ) -> None:
        self.backend_name = backend
        self._doc = {k: v for k, v in doc.items() if k not in RUN_KEYS}
        self._doc.setdefault("name", "fleet")
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="eden-fleet-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._file = self.workdir / f"{self._doc['name']}.fleet.yaml"
        self._caps: frozenset[str] | None
        self._max_devices: int | None
        self._caps, self._max_devices = backend_capabilities(backend) if backend in _known_backends() else (None, None)
        self._profiles: dict[str, HwProfile] = load_profiles()
        self._steps: list[dict[str, Any]] = []
        self.loaded: LoadedScenario = self._load([], "Fleet(...)")
        """The validated scenario (fleet, images, controller and the actions applied so far)."""
        sc = self.loaded.scenario
        self.seed: int = sc.seed if seed is None else int(seed)
        self.check_interval: float = sc.check_interval or default_check_interval(len(self.loaded.devices))
        """How often ``wait_until`` evaluates its condition (simulated seconds)."""
        self.versions: dict[str, str] = {name: img.version for name, img in sc.images.items()}
        """Image name -> version."""
        self.backend: Backend = make_backend(backend, self.loaded, self.seed, Timeline())
        self._clock: Session = self.backend.session()
        self.closed = False
        self.on_step: Callable[[str, StepParams, BaseException | None], None] | None = None
        """Called after each ``apply``/``advance``/``wait_until`` with a title (holding the run's
        clock), its parameters and the error it raised, if any. The pytest plugin makes Allure steps."""

    # --------------------------------------------------------------------------- builders --
    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        backend: str = "sim",
        seed: int | None = None,
        profile: str | None = None,
        workdir: str | Path | None = None,
    ) -> Fleet:
        """The fleet, images and controller of a scenario file (its steps, faults and
        expectations are not used). ``profile`` replaces every fleet entry's profile."""
        caps, max_devices = backend_capabilities(backend) if backend in _known_backends() else (None, None)
        load_scenario(path, backend=backend, capabilities=caps, max_devices=max_devices)  # errors point into the file
        doc = scenario_doc(path)
        if profile is not None:
            doc = with_profile(doc, profile)
        return cls(doc, backend=backend, seed=seed, workdir=workdir)

    @classmethod
    def from_spec(
        cls,
        profile: str = "qemu-x86_64",
        count: int = 1,
        *,
        images: Mapping[str, ImageSpec] | None = None,
        config_items: Mapping[str, Any] | None = None,
        group: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        name: str = "fleet",
        backend: str = "sim",
        seed: int | None = None,
        workdir: str | Path | None = None,
    ) -> Fleet:
        """``count`` devices of one hardware profile. ``images`` maps names to versions
        (``{"base": "13.4.0", "next": "13.5.0"}``) or image mappings; the first is installed.
        Devices are ``<group>-<n>``, the group defaulting to the profile name."""
        entry: dict[str, Any] = {"profile": profile, "count": count}
        if group is not None:
            entry["group"] = group
        if overrides:
            entry["overrides"] = dict(overrides)
        doc: dict[str, Any] = {"name": name, "seed": 0 if seed is None else int(seed), "fleet": [entry], "images": _image_doc(images)}
        if config_items:
            doc["controller"] = {"config_items": dict(config_items)}
        return cls(doc, backend=backend, seed=seed, workdir=workdir)

    # ---------------------------------------------------------------------------- validation --
    def _load(self, steps: list[dict[str, Any]], call: str) -> LoadedScenario:
        doc = dict(self._doc, steps=steps) if steps else dict(self._doc)
        self._file.write_text(dump_yaml(doc), encoding="utf-8")
        try:
            loaded = load_scenario(
                self._file,
                backend=self.backend_name,
                capabilities=self._caps,
                max_devices=self._max_devices,
                profiles=self._profiles,
            )
        except FleetInputError:
            raise
        except InvalidInput as exc:
            raise FleetInputError(call, exc.issues) from None
        for warning in loaded.warnings:  # unknown config items: EVE ignores them, the caller should know
            warnings.warn(f"{call}: {warning.message} ({warning.hint})", UserWarning, stacklevel=3)
        return loaded

    # ------------------------------------------------------------------------------ observe --
    @property
    def now(self) -> float:
        """Seconds since the fleet was created, on the backend's clock."""
        return self._clock.now()

    @property
    def devices(self) -> list[str]:
        """Device ids in fleet order (``<group>-<index>``)."""
        return [d.id for d in self.loaded.devices]

    @property
    def timeline(self) -> Timeline:
        """Every device note and harness action so far (as in ``events.jsonl``)."""
        return self.backend.timeline

    def events(self, what: str | None = None, device: str | None = None) -> list[Event]:
        """Timeline events, optionally of one kind (``booted``, ``update_committed``, …) or device."""
        return [e for e in self.timeline.events if (what is None or e.what == what) and (device is None or e.device == device)]

    def view(self, device_id: str) -> DeviceView:
        """The controller's view of one device: what ``expect`` conditions read (see eden.conditions)."""
        if self.loaded.device(device_id) is None:
            raise KeyError(f"no device '{device_id}'; devices: {', '.join(self.devices[:12])}")
        return self._clock.call(lambda: self.backend.views()[device_id].copy())

    def select(self, target: FleetTarget = "all") -> list[str]:
        """Device ids a target selects now (validated like a step's target)."""
        return self._validated(target, {"power_off": {}}, f"fleet.select({target!r})")[1]

    def metric(self, name: str) -> Any:
        """A metric's current value (names as in a scenario's ``metrics:``), e.g. ``rollbacks``."""
        if not metric_names.is_known(name):
            close = metric_names.close_names(name)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "see eden.scenario.metric_names"
            raise FleetInputError(f"fleet.metric({name!r})", [Issue("", 0, 0, f"unknown metric '{name}'", hint)])
        return self._clock.call(lambda: compute_metric(name, self.backend))

    # -------------------------------------------------------------------------------- drive --
    def power_on(self, target: FleetTarget = "all", **args: Any) -> list[str]:
        """Apply power (``spread`` staggers it). Returns the device ids."""
        return self.apply("power_on", target, **args)

    def apply(self, action: str, target: FleetTarget = "all", *, args: Mapping[str, Any] | None = None, **kwargs: Any) -> list[str]:
        """Carry out a scenario action now, e.g. ``apply("baseos_update", image="next")`` or
        ``apply("power_cycle", "nuc-class-1", off_for="10s")``. Arguments are those of the step
        (``set_config`` takes the items, e.g. ``args={"timer.config.interval": 10}``). Returns the
        selected device ids (empty for controller actions). Never blocks."""
        if action in NOT_APPLICABLE:
            raise FleetInputError(f"fleet.apply({action!r})", [Issue("", 0, 0, f"'{action}' is not applied directly", NOT_APPLICABLE[action])])
        arguments = {**(args or {}), **kwargs}
        call = f"fleet.apply({', '.join([repr(action)] + ([repr(target)] if target != 'all' else []) + [f'{k}={v!r}' for k, v in arguments.items()])})"
        title = action if target == "all" else f"{action} {target}"
        with self._step(title, {**arguments, "target": target}) as params:
            loaded, devices = self._validated(target, {action: arguments}, call)
            step: StepBase = loaded.scenario.steps[len(self._steps)]
            self._steps.append(self._entry({action: arguments}, target))
            self.loaded = loaded
            self._act(step.action, devices, step.args)
            params["devices"] = len(devices)
        return devices

    def advance(self, seconds: float | str) -> float:
        """Let time pass (a number of seconds or a duration such as ``"10m"``); returns ``now``."""
        with self._step(f"advance {format_duration(parse_duration(seconds))}", {}):
            self._clock.run_until(self.now + parse_duration(seconds))
        return self.now

    def wait_until(
        self,
        condition: Mapping[str, Any],
        within: float | str,
        target: FleetTarget = "all",
        at_least: float | str = 1.0,
        *,
        check: bool = True,
    ) -> bool:
        """Advance until ``condition`` (the ``expect`` vocabulary: ``{"device_state": "ONLINE"}``,
        ``{"metric": {"name": "rollbacks", "min": 1}}``, …) holds for at least ``at_least`` of the
        targeted devices. True when it does; at the deadline an AssertionError with the observed
        values (or False with ``check=False``)."""
        body = {**condition, "within": within}
        if target != "all":
            body["target"] = target
        if at_least != 1.0:
            body["at_least"] = at_least
        call = f"fleet.wait_until({dict(condition)!r}, within={within!r})"
        with self._step("wait_until", {"target": target, "at_least": at_least}) as params:
            loaded = self._load(self._steps + [{"expect": body}], call)
            step: StepBase = loaded.scenario.steps[len(self._steps)]
            exp: Expectation = step.args
            params["title"] = f"wait_until {describe_expectation(exp)}"
            checker = self._checker(exp, loaded, f"steps[{len(self._steps)}]")
            start = self.now
            deadline = start + float(exp.within or 0.0) * self.backend.deadline_scale
            while True:
                verdict = self._clock.call(checker)
                if verdict.ok or self.now >= deadline - 1e-9:
                    break
                self._clock.run_until(min(self.now + self.check_interval, deadline))
            params["observed"] = verdict.observed
            params["met"] = verdict.ok
            self._clock.call(lambda: self.backend.record("wait_until", {"condition": describe_expectation(exp), "met": verdict.ok}))
            if not verdict.ok and check:
                raise AssertionError(_explain(exp, verdict, start, self.now))
        return verdict.ok

    # ----------------------------------------------------------------------------- internals --
    @contextmanager
    def _step(self, title: str, params: StepParams) -> Iterator[StepParams]:
        """Report one driver call to ``on_step`` once it is done (with its start/stop times)."""
        start = self.now
        params = dict(params)
        error: BaseException | None = None
        try:
            yield params
        except BaseException as exc:
            error = exc
            raise
        finally:
            if self.on_step is not None:
                title = str(params.pop("title", title))
                span = f"t={format_duration(start)}" + (f" → {format_duration(self.now)}" if self.now > start else "")
                params.update(start=f"{start:g}s", stop=f"{self.now:g}s")
                self.on_step(f"{title} [{span}]", params, error)

    @staticmethod
    def _entry(body: dict[str, Any], target: FleetTarget) -> dict[str, Any]:
        return {**body, "target": target} if target != "all" else dict(body)

    def _validated(self, target: FleetTarget, body: dict[str, Any], call: str) -> tuple[LoadedScenario, list[str]]:
        n = len(self._steps)
        loaded = self._load(self._steps + [self._entry(body, target)], call)
        step: StepBase = loaded.scenario.steps[n]
        if step.action in CONTROLLER_ACTIONS:
            return loaded, []
        return loaded, select(step.target, loaded.devices, seed=self.seed, label=f"steps[{n}]", steps=loaded.scenario.steps)

    def _act(self, action: str, devices: list[str], args: object) -> None:
        be = self.backend
        if action == "network_flap":
            assert isinstance(args, NetworkFlapArgs)
            self._clock.spawn(flap(be, devices, args))
            return
        self._clock.call(lambda: be.apply(action, devices, args))
        if action in CONTROLLER_PERIODS and isinstance(args, OutageArgs) and args.duration is not None:
            self._clock.spawn(restore_after(be, float(args.duration)))

    def _checker(self, exp: Expectation, loaded: LoadedScenario, label: str) -> Callable[[], CheckOutcome]:
        devices = select(exp.target, loaded.devices, seed=self.seed, label=label, steps=loaded.scenario.steps)
        return expectation_checker(exp, self.backend, self.versions, devices)

    # ------------------------------------------------------------------------------ closing --
    def close(self) -> None:
        """Stop the backend's processes (none for the simulator) and remove the temporary files."""
        if self.closed:
            return
        self.closed = True
        self._clock.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Fleet {self._doc['name']} on {self.backend_name}: {len(self.devices)} devices, t={format_duration(self.now)}>"


def _known_backends() -> set[str]:
    from eden.backends.registry import REGISTRY

    return set(REGISTRY)


def _explain(exp: Expectation, verdict: CheckOutcome, start: float, now: float) -> str:
    """The timeout message: what was wanted, what was observed, which devices lag."""
    import json

    lines = [f"not met within {format_duration(now - start)} (t={now:.0f}s): {describe_expectation(exp)}"]
    lines.append(f"  observed: {json.dumps(verdict.observed, sort_keys=True, default=str)}")
    for dev, seen in (verdict.detail.get("failing") or {}).items():
        lines.append(f"  {dev}: {json.dumps(seen, sort_keys=True, default=str)}")
    if verdict.detail.get("why"):
        lines.append(f"  why: {verdict.detail['why']}")
    return "\n".join(lines)
