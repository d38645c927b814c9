"""Loading a scenario file: YAML -> validated model -> cross-checked fleet.

``load_scenario`` validates the file against :mod:`eden.scenario.model`, then runs
the checks a schema cannot express (names that must refer to each other, the order
of steps, what the backend can do). Every problem found is reported at once, each
pointing at ``file:line:col`` with a hint.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from eden.errors import InvalidInput, Issue, did_you_mean, explain_validation_error, issue_at
from eden.limits import limit, raise_hint
from eden.profiles import HwProfile, OverrideError, apply_overrides, load_profile, load_profiles
from eden.scenario import metric_names
from eden.scenario.model import (
    ACTIONS,
    CONTROLLER_ACTIONS,
    CONTROLLER_PERIODS,
    Condition,
    Expectation,
    PortsArgs,
    Scenario,
    StepBase,
    Target,
    TargetSpec,
    rollout_step,
)
from eden.units import format_duration
from eden.yamlsrc import Located, load_yaml_file
from eve.config_items import close_keys, is_known, spec_of, validate_item

__all__ = [
    "DeviceSpec",
    "LoadedScenario",
    "load_scenario",
    "load_any",
    "scenario_json_schema",
    "substitute_profile",
]

DataPath = tuple[str | int, ...]
ALL = "all"
_MAX_LISTED = 12


@dataclass(frozen=True)
class DeviceSpec:
    """One device of the fleet, as the scenario declares it."""

    id: str
    """``<group>-<index>``, index counted from 0 within the group."""
    group: str
    index: int
    entry: int
    """Index into ``scenario.fleet``."""
    profile_name: str
    profile: HwProfile
    """The hardware profile with the entry's ``overrides`` applied."""
    image: str
    """Image installed at the start (a key of ``scenario.images``)."""


@dataclass
class LoadedScenario:
    """A validated scenario with its fleet expanded into devices."""

    scenario: Scenario
    located: Located
    path: Path
    devices: list[DeviceSpec]
    profiles: dict[str, HwProfile]
    """The hardware profiles the fleet uses, by name (before per-entry overrides)."""
    warnings: list[Issue] = field(default_factory=list)
    """What the file does that EVE tolerates but the author probably did not mean (unknown config items)."""
    _by_id: dict[str, DeviceSpec] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {d.id: d for d in self.devices}

    def groups(self) -> dict[str, list[DeviceSpec]]:
        """Devices by group name, in fleet order."""
        out: dict[str, list[DeviceSpec]] = {}
        for device in self.devices:
            out.setdefault(device.group, []).append(device)
        return out

    def device(self, device_id: str) -> DeviceSpec | None:
        return self._by_id.get(device_id)

    def matching(self, target: Target) -> list[DeviceSpec]:
        """Devices a target names, before any ``fraction``/``count`` sampling (unknown names select none)."""
        if isinstance(target, str):
            if target == ALL:
                return list(self.devices)
            group = [d for d in self.devices if d.group == target]
            if group:
                return group
            device = self._by_id.get(target)
            return [device] if device is not None else []
        chosen = self.devices
        if target.group is not None:
            chosen = [d for d in chosen if d.group == target.group]
        if target.profile is not None:
            chosen = [d for d in chosen if d.profile_name == target.profile]
        if target.devices is not None:
            wanted = set(target.devices)
            chosen = [d for d in chosen if d.id in wanted]
        return list(chosen)


# --------------------------------------------------------------------------------------------------
# Public entry points


def load_scenario(
    path: str | Path,
    *,
    backend: str = "sim",
    capabilities: frozenset[str] | None = None,
    max_devices: int | None = None,
    profiles: dict[str, HwProfile] | None = None,
    fleet_profile: str | None = None,
    adjust: Callable[[Scenario], None] | None = None,
) -> LoadedScenario:
    """Load, validate and cross-check a scenario file; raise InvalidInput listing every problem.

    ``capabilities``/``max_devices`` describe ``backend``; when given, actions the backend
    cannot perform and fleets larger than it can run are reported too.
    ``fleet_profile`` runs the scenario on another hardware profile (:func:`substitute_profile`)
    and ``adjust`` may change the validated model (suite overrides); both act before the
    cross-checks, so they are checked like the file itself.
    """
    located = load_yaml_file(path)
    return _load(located, Path(path), backend, capabilities, max_devices, profiles, fleet_profile, adjust)


def load_any(
    path: str | Path,
    *,
    backend: str = "sim",
    capabilities: frozenset[str] | None = None,
    max_devices: int | None = None,
    profiles: dict[str, HwProfile] | None = None,
) -> tuple[Literal["scenario"], LoadedScenario] | tuple[Literal["profile"], HwProfile]:
    """Load a scenario or a hardware profile, deciding by content (a profile has a top-level ``arch``)."""
    located = load_yaml_file(path)
    if isinstance(located.data, Mapping) and "arch" in located.data:
        return "profile", load_profile(path)
    return "scenario", _load(located, Path(path), backend, capabilities, max_devices, profiles)


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the scenario format, for editors."""
    schema = Scenario.model_json_schema()
    defs: dict[str, Any] = schema.get("$defs", {})
    # The stand-ins for bad steps/faults accept anything; in a oneOf they would make every step ambiguous.
    invalid = {f"#/$defs/{name}" for name in defs if name.startswith("_Invalid")}
    for ref in invalid:
        del defs[ref.rsplit("/", 1)[1]]
    _drop_refs(schema, invalid)
    for name, definition in defs.items():
        props = definition.get("properties", {})
        if name.endswith(("Step", "Fault")):
            for key in ACTIONS:
                if key in props and key != "wait":  # '- reboot:' (no arguments) is allowed
                    props[key] = _or_null(props[key])
        if "version" in props:  # 'version: 12.10' is read as text
            props["version"] = _or_number(props["version"])
        if name == "MetricCond":  # thresholds may be durations or percentages: '200ms', '99%'
            for bound in ("min", "max"):
                if bound in props:
                    props[bound] = _add_member(props[bound], {"type": "string"})
    _lower_case_enums(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "eden scenario",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def _drop_refs(node: Any, refs: set[str]) -> None:
    if isinstance(node, dict):
        for key in ("oneOf", "anyOf"):
            if isinstance(node.get(key), list):
                node[key] = [m for m in node[key] if not (isinstance(m, dict) and m.get("$ref") in refs)]
        for value in node.values():
            _drop_refs(value, refs)
    elif isinstance(node, list):
        for value in node:
            _drop_refs(value, refs)


_ANNOTATIONS = ("title", "description", "default")


def _or_null(prop: dict[str, Any]) -> dict[str, Any]:
    core = {k: v for k, v in prop.items() if k not in _ANNOTATIONS}
    notes = {k: v for k, v in prop.items() if k in _ANNOTATIONS}
    return {"anyOf": [core, {"type": "null"}], **notes}


def _or_number(prop: dict[str, Any]) -> dict[str, Any]:
    if prop.get("type") == "string":
        return _add_member(prop, {"type": "number"})
    members = prop.get("anyOf")
    if isinstance(members, list) and {"type": "string"} in members and {"type": "number"} not in members:
        members.insert(members.index({"type": "string"}) + 1, {"type": "number"})
    return prop


def _add_member(prop: dict[str, Any], member: dict[str, Any]) -> dict[str, Any]:
    """``prop`` that also accepts ``member``."""
    members = prop.get("anyOf")
    if isinstance(members, list):
        if member not in members:
            members.insert(0, member)
        return prop
    core = {k: v for k, v in prop.items() if k not in _ANNOTATIONS}
    notes = {k: v for k, v in prop.items() if k in _ANNOTATIONS}
    return {"anyOf": [member, core], **notes}


def _lower_case_enums(node: Any) -> None:
    """Enum names (``ONLINE``) are matched case-insensitively; let editors accept ``online`` too."""
    if isinstance(node, dict):
        values = node.get("enum")
        if isinstance(values, list) and values and all(isinstance(v, str) and v.isupper() for v in values):
            node["enum"] = values + [v.lower() for v in values]
        for value in node.values():
            _lower_case_enums(value)
    elif isinstance(node, list):
        for value in node:
            _lower_case_enums(value)


# --------------------------------------------------------------------------------------------------
# Loading


def _load(
    located: Located,
    path: Path,
    backend: str,
    capabilities: frozenset[str] | None,
    max_devices: int | None,
    profiles: dict[str, HwProfile] | None,
    fleet_profile: str | None = None,
    adjust: Callable[[Scenario], None] | None = None,
) -> LoadedScenario:
    _check_sizes(located)
    scenario, schema_issues = _validate(located)
    if fleet_profile is not None:
        substitute_profile(scenario, fleet_profile)
    if adjust is not None:
        adjust(scenario)
    too_many = _fleet_size_issue(scenario, located)
    if too_many is not None:  # before the fleet is expanded into devices (a count of 10^9)
        raise InvalidInput(sorted([*schema_issues, too_many], key=lambda i: (i.line, i.col, i.message)))
    available = profiles if profiles is not None else load_profiles()
    checker = _Checker(scenario, located, path, available)
    loaded = checker.run(backend, capabilities, max_devices)
    if loaded is not None:
        loaded.warnings = checker.warnings
    if schema_issues or checker.issues:
        unique = {(i.line, i.col, i.message, i.hint or ""): i for i in [*schema_issues, *checker.issues]}
        raise InvalidInput([unique[k] for k in sorted(unique)])
    return loaded


def _validate(located: Located) -> tuple[Scenario, list[Issue]]:
    """The model, plus the schema issues that did not stop the cross-checks.

    Unknown keys do not stop them: the rest of the file is checked as if those keys were not there,
    so one pass reports a misspelt key, an unknown profile and a bad reference together. Any other
    schema error stops here (a cross-check of a value that could not be read would only guess)."""
    try:
        return Scenario.model_validate(located.data), []
    except ValidationError as exc:
        problems = explain_validation_error(exc, Scenario, located.data)
    issues = sorted(
        {issue_at(located, p.path, p.message, p.hint, key=p.at_key) for p in problems},
        key=lambda i: (i.line, i.col, i.message),
    )
    if not all(p.at_key and p.path and p.message.startswith("unknown key '") for p in problems):
        raise InvalidInput(issues)
    try:
        scenario = Scenario.model_validate(_without(located.data, [p.path for p in problems]))
    except ValidationError:
        raise InvalidInput(issues) from None
    return scenario, issues


def _without(data: Any, paths: Iterable[DataPath]) -> Any:
    """A copy of ``data`` without the mapping keys at ``paths`` (containers copied along each path only)."""
    root = dict(data) if isinstance(data, Mapping) else data
    for path in paths:
        node = root
        for seg in path[:-1]:
            try:
                child = node[seg]
            except (KeyError, IndexError, TypeError):
                break
            if isinstance(child, Mapping):
                child = dict(child)
            elif isinstance(child, list):
                child = list(child)
            else:
                break
            node[seg] = child
            node = child
        else:
            if isinstance(node, dict):
                node.pop(path[-1], None)
    return root


def _check_sizes(located: Located) -> None:
    """Refuse over-long lists and mappings (steps, faults, expect, metrics, ...) before the schema
    validates, and explains, every entry of them."""
    most = limit("entries")
    issues: list[Issue] = []
    todo: list[tuple[DataPath, Any]] = [((), located.data)]
    while todo and len(issues) < 5:  # the tree is bounded by the YAML value limit (aliases expanded)
        path, node = todo.pop()
        if not isinstance(node, (list, Mapping)):
            continue
        if len(node) > most:
            name = f"'{path[-1]}'" if path else "the document"
            issues.append(
                issue_at(located, path, f"{name} has {len(node):,} entries, more than {most:,}", raise_hint("entries"), key=True)
            )
            continue
        items = node.items() if isinstance(node, Mapping) else enumerate(node)
        todo.extend(((*path, k), v) for k, v in items)
    if issues:
        raise InvalidInput(sorted(issues, key=lambda i: (i.line, i.col)))


def _fleet_size_issue(scenario: Scenario, located: Located) -> Issue | None:
    most = limit("devices")
    if scenario.device_count <= most:
        return None
    message = f"the fleet has {scenario.device_count:,} devices, more than {most:,}"
    return issue_at(located, ("fleet",), message, raise_hint("devices"), key=True)


def substitute_profile(scenario: Scenario, profile: str) -> None:
    """Put every fleet entry on hardware profile ``profile``, in place.

    Entry ``overrides`` are kept (applied to the new profile). Group names stay what they were
    (an entry without ``group`` keeps its old profile name as group), so device ids and targets
    still resolve; ``target: {profile: ...}`` and image variants that named a replaced profile
    now name ``profile``.
    """
    old = {entry.profile for entry in scenario.fleet}
    for entry in scenario.fleet:
        if entry.group is None:
            entry.group = entry.profile
        entry.profile = profile
    for image in scenario.images.values():
        for variant in image.variants:
            if variant.profile in old:
                variant.profile = profile
    targets: list[Any] = [step.target for step in (*scenario.steps, *scenario.faults)]
    targets += [step.args.target for step in scenario.steps if step.action == "expect"]
    targets += [expectation.target for expectation in scenario.expect]
    for target in targets:
        if isinstance(target, TargetSpec) and target.profile in old:
            target.profile = profile


def _did_you_mean(word: str, choices: Iterable[str], what: str) -> str:
    return did_you_mean(word, choices, what, max_listed=_MAX_LISTED)


def config_item_problems(items: Mapping[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(key, message, hint, point-at-the-key) for each configItem value EVE would refuse (spec §6.1).

    Shared by scenario files (``controller.config_items``, ``set_config``) and suite overrides.
    Unknown keys are not problems but warnings (:func:`config_item_warnings`): EVE records
    them in configItemStatus and goes on."""
    out: list[tuple[str, str, str, bool]] = []
    for key, value in items.items():
        spec = spec_of(key)
        if spec is None:
            continue
        problem = validate_item(key, value)
        if problem is not None:
            out.append((key, problem, spec.hint(), False))
    return out


def config_item_warnings(items: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(key, message, hint) for each key EVE does not know: it reports the key in
    configItemStatus and ignores it (spec §6), so the file still runs."""
    out: list[tuple[str, str, str]] = []
    for key in items:
        if is_known(key):
            continue
        close = close_keys(key, n=1)
        hint = _any_of(close) if close else "see spec §6.1 for the items EVE knows"
        out.append((key, f"unknown config item '{key}': EVE reports it in configItemStatus and ignores it", hint))
    return out


def _any_of(names: Sequence[str]) -> str:
    return "did you mean " + " or ".join(f"'{n}'" for n in names) + "?"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Checker:
    """Cross-checks on a validated scenario; collects issues instead of stopping at the first."""

    def __init__(self, scenario: Scenario, located: Located, path: Path, profiles: dict[str, HwProfile]) -> None:
        self.sc = scenario
        self.located = located
        self.path = path
        self.available = profiles
        self.issues: list[Issue] = []
        self.warnings: list[Issue] = []
        self.loaded: LoadedScenario | None = None

    def error(self, where: DataPath, message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.issues.append(issue_at(self.located, where, message, hint, key=key))

    # ---------------------------------------------------------------------------------- driver

    def run(self, backend: str, capabilities: frozenset[str] | None, max_devices: int | None) -> LoadedScenario:
        devices, used = self.fleet()
        self.loaded = LoadedScenario(self.sc, self.located, self.path, devices, used)
        self.images()
        self.config_items(self.sc.controller.config_items, ("controller", "config_items"))
        self.metrics()
        for where, step in self.actions():
            self.action(where, step)
        for i, expectation in enumerate(self.sc.expect):
            self.expectation(("expect", i), expectation)
        self.order()
        self.timing()
        if capabilities is not None:
            self.capabilities(backend, capabilities)
        if max_devices is not None and self.sc.device_count > max_devices:
            self.error(
                ("fleet",),
                f"the fleet has {self.sc.device_count} devices; backend '{backend}' runs at most {max_devices}",
                "lower the 'count' of the fleet entries, or use the sim backend for large fleets",
                key=True,
            )
        return self.loaded

    def actions(self) -> Iterator[tuple[DataPath, StepBase]]:
        for i, step in enumerate(self.sc.steps):
            yield ("steps", i), step
        for i, fault in enumerate(self.sc.faults):
            yield ("faults", i), fault

    # ---------------------------------------------------------------------------------- fleet

    def fleet(self) -> tuple[list[DeviceSpec], dict[str, HwProfile]]:
        default_image = next(iter(self.sc.images))
        devices: list[DeviceSpec] = []
        used: dict[str, HwProfile] = {}
        groups: dict[str, int] = {}
        for i, entry in enumerate(self.sc.fleet):
            where: DataPath = ("fleet", i)
            group = entry.group_name
            if group in groups:
                self.error(
                    (*where, "group") if entry.group else (*where, "profile"),
                    f"group '{group}' is already used by fleet entry {groups[group] + 1}",
                    "give each fleet entry its own 'group:' name",
                )
            else:
                groups[group] = i
            image = entry.image or default_image
            if entry.image is not None and entry.image not in self.sc.images:
                self.error(
                    (*where, "image"),
                    f"unknown image '{entry.image}'",
                    _did_you_mean(entry.image, self.sc.images, "images"),
                )
            base = self.available.get(entry.profile)
            if base is None:
                self.error(
                    (*where, "profile"),
                    f"unknown hardware profile '{entry.profile}'",
                    _did_you_mean(entry.profile, self.available, "profiles"),
                )
                continue
            used[entry.profile] = base
            try:
                profile = apply_overrides(base, entry.overrides)
            except OverrideError as exc:
                for problem in exc.problems:
                    self.error(
                        (*where, "overrides", *problem.path),
                        f"override for profile '{entry.profile}': {problem.message}",
                        problem.hint,
                        key=problem.at_key,
                    )
                profile = base
            devices.extend(
                DeviceSpec(f"{group}-{n}", group, n, i, entry.profile, profile, image) for n in range(entry.count)
            )
        ids = {d.id: d for d in devices}
        for group, i in groups.items():
            clash = ids.get(group)
            if clash is not None and clash.group != group:
                self.error(
                    ("fleet", i, "group") if self.sc.fleet[i].group else ("fleet", i, "profile"),
                    f"group name '{group}' is also the id of device {clash.index} of group '{clash.group}'",
                    "targets could not tell them apart; rename one of the groups",
                )
        return devices, used

    def images(self) -> None:
        fleet_profiles = self.fleet_profiles()
        for name, image in self.sc.images.items():
            for j, variant in enumerate(image.variants):
                if variant.profile not in fleet_profiles:
                    self.error(
                        ("images", name, "variants", j, "profile"),
                        f"no fleet entry uses profile '{variant.profile}'",
                        _did_you_mean(variant.profile, fleet_profiles, "profiles in the fleet"),
                    )

    def image_ref(self, where: DataPath, image: str) -> None:
        if image not in self.sc.images:
            self.error(where, f"unknown image '{image}'", _did_you_mean(image, self.sc.images, "images"))

    # ---------------------------------------------------------------------------------- targets

    def target(self, where: DataPath, target: Target) -> list[DeviceSpec] | None:
        """Check a target; return the devices it names (before sampling), or None if it is wrong."""
        assert self.loaded is not None
        loaded = self.loaded
        at = (*where, "target")
        if isinstance(target, str):
            selected = loaded.matching(target)
            if selected or target == ALL:
                return selected
            groups = [e.group_name for e in self.sc.fleet]
            if self.unresolved_group(target):
                return None  # its fleet entry is broken and already reported
            hint = _did_you_mean(target, [ALL, *groups, *(d.id for d in loaded.devices)], "groups")
            if target in self.fleet_profiles():
                hint = f"'{target}' is a profile; write target: {{profile: {target}}}"
            self.error(at, f"unknown target '{target}': not 'all', a group or a device id", hint)
            return None
        return self.target_spec(at, target)

    def fleet_profiles(self) -> list[str]:
        """Known profiles the fleet uses, in fleet order."""
        return list(dict.fromkeys(e.profile for e in self.sc.fleet if e.profile in self.available))

    def unresolved_group(self, name: str) -> bool:
        """True if ``name`` is (or is a device of) a group whose profile is unknown."""
        for entry in self.sc.fleet:
            if entry.profile in self.available:
                continue
            group = entry.group_name
            if name == group:
                return True
            if name.startswith(group + "-") and name[len(group) + 1 :].isdigit():
                return True
        return False

    def target_spec(self, at: DataPath, spec: TargetSpec) -> list[DeviceSpec] | None:
        assert self.loaded is not None
        loaded = self.loaded
        groups = loaded.groups()
        ok = True
        if spec.group is not None and spec.group not in groups:
            if not self.unresolved_group(spec.group):
                self.error((*at, "group"), f"unknown group '{spec.group}'", _did_you_mean(spec.group, groups, "groups"))
            ok = False
        fleet_profiles = self.fleet_profiles()
        if spec.profile is not None and spec.profile not in fleet_profiles:
            self.error(
                (*at, "profile"),
                f"no fleet entry uses profile '{spec.profile}'",
                _did_you_mean(spec.profile, fleet_profiles, "profiles in the fleet"),
            )
            ok = False
        for j, device_id in enumerate(spec.devices or []):
            if loaded.device(device_id) is None:
                if not self.unresolved_group(device_id):
                    self.error(
                        (*at, "devices", j),
                        f"unknown device '{device_id}'",
                        _did_you_mean(device_id, [d.id for d in loaded.devices], "devices"),
                    )
                ok = False
        if spec.wave is not None and not self.wave_target(at, spec):
            ok = False
        if not ok:
            return None
        selected = loaded.matching(spec)
        if not selected:
            self.error(at, "the target selects no devices", "its group, profile and devices have no device in common")
            return None
        if spec.count is not None and spec.count > len(selected):
            self.error(
                (*at, "count"),
                f"count {spec.count} is more than the {_plural(len(selected), 'device')} the target selects",
                f"use count: {len(selected)} or less, or a fraction",
            )
        return selected

    def wave_target(self, at: DataPath, spec: TargetSpec) -> bool:
        """``wave`` (with ``rollout``) names a wave of one rollout step of this scenario."""
        n = rollout_step(self.sc.steps, spec.rollout)
        if isinstance(n, str):
            names = [f"steps[{i}]" + (f" ({st.name})" if st.name else "") for i, st in enumerate(self.sc.steps)
                     if st.action == "rollout"]
            self.error((*at, "rollout" if spec.rollout is not None else "wave"), n,
                       f"rollout steps: {', '.join(names)}" if names else "add a rollout step, or target the devices otherwise")
            return False
        waves = len(self.sc.steps[n].args.waves)
        if spec.wave is not None and spec.wave > waves:
            self.error((*at, "wave"), f"the rollout at steps[{n}] has {_plural(waves, 'wave')}, not {spec.wave}",
                       f"give a wave from 1 to {waves}")
            return False
        return True

    # ---------------------------------------------------------------------------------- steps and faults

    def action(self, where: DataPath, step: StepBase) -> None:
        action = step.action
        args = step.args
        devices: list[DeviceSpec] | None = None
        if action not in CONTROLLER_ACTIONS:
            devices = self.target(where, step.target)
        if action in ("baseos_update", "rollout"):
            self.image_ref((*where, action, "image"), args.image)
        elif action == "set_config":
            self.config_items(args, (*where, action))
        elif action == "expect":
            self.expectation((*where, action), args)
        elif isinstance(args, PortsArgs) and args.ports is not None and devices:
            self.ports((*where, action), args.ports, devices)
        elif action == "set_network" and devices:
            self.ports((*where, action), args.mgmt, devices, key="mgmt")
        when = getattr(step, "when", None)
        if isinstance(when, Condition):
            self.condition((*where, "when"), when)

    def ports(self, where: DataPath, ports: Sequence[str], devices: list[DeviceSpec], key: str = "ports") -> None:
        names = list(dict.fromkeys(nic.name for d in devices for nic in d.profile.nics))
        for j, port in enumerate(ports):
            if port not in names:
                close = difflib.get_close_matches(port, names, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.error(
                    (*where, key, j),
                    f"no targeted device has a port '{port}'",
                    f"{hint}NICs of the targeted devices: {', '.join(names)}",
                )

    def expectation(self, where: DataPath, expectation: Expectation) -> None:
        self.target(where, expectation.target)
        self.condition(where, expectation)
        if expectation.from_ is not None:
            self.condition((*where, "from"), expectation.from_)
        if expectation.after is not None:
            self.after_step((*where, "after"), expectation.after)

    def after_step(self, where: DataPath, ref: int | str) -> None:
        """``after:`` names a step of this scenario, by index or by name."""
        steps = self.sc.steps
        if isinstance(ref, int):
            if ref >= len(steps):
                self.error(where, f"there is no steps[{ref}]: the scenario has {len(steps)} step(s)",
                           f"give an index from 0 to {len(steps) - 1}" if steps else "add steps, or drop 'after'")
            return
        names = [st.name for st in steps if st.name]
        if names.count(ref) != 1:
            why = "two steps are" if names.count(ref) > 1 else "no step is"
            self.error(where, f"{why} named '{ref}'",
                       _did_you_mean(ref, names, "step names") if names else "give the step a name:, or use its index")

    def condition(self, where: DataPath, cond: Condition) -> None:
        if cond.app is not None and cond.app.name not in self.deployed_apps():
            deployed = self.deployed_apps()
            self.error(
                (*where, "app", "name"),
                f"app '{cond.app.name}' is never deployed in the steps",
                _did_you_mean(cond.app.name, deployed, "apps") if deployed else "add a deploy_app step",
            )
        if cond.metric is not None:
            self.metric_name((*where, "metric", "name"), cond.metric.name, compared=True)

    def deployed_apps(self) -> list[str]:
        return list(dict.fromkeys(s.args.name for s in self.sc.steps if s.action == "deploy_app"))

    def config_items(self, items: Mapping[str, Any], where: DataPath) -> None:
        for key, message, hint, at_key in config_item_problems(items):
            self.error((*where, key), message, hint, key=at_key)
        for key, message, hint in config_item_warnings(items):
            self.warnings.append(replace(issue_at(self.located, (*where, key), message, hint, key=True), severity="warning"))

    def metrics(self) -> None:
        for j, name in enumerate(self.sc.metrics):
            self.metric_name(("metrics", j), name, compared=False)

    def metric_name(self, where: DataPath, name: str, *, compared: bool) -> None:
        if not metric_names.is_known(name):
            close = metric_names.close_names(name)
            hint = _any_of(close) if close else "see eden/scenario/metric_names.py"
            self.error(where, f"unknown metric '{name}'", hint)
        elif compared and not metric_names.is_numeric(name):
            self.error(where, f"metric '{name}' is not a number and cannot be compared with min/max")

    # ---------------------------------------------------------------------------------- order and time

    def order(self) -> None:
        update_seen = pause_rollout = False
        deployed: dict[str, int] = {}
        removed: dict[str, int] = {}
        open_outage: int | None = None
        for i, step in enumerate(self.sc.steps):
            action, args, at = step.action, step.args, ("steps", i, step.action)
            n = i + 1
            if action in ("baseos_update", "rollout"):
                update_seen = True
                pause_rollout = pause_rollout or (action == "rollout" and args.on_error == "pause")
            elif action == "retry_update" and not update_seen:
                self.error(
                    at,
                    f"step {n} 'retry_update' comes before any 'baseos_update' or 'rollout'",
                    "there is no update to retry yet; move it after an update step",
                    key=True,
                )
            elif action == "deploy_app":
                if args.name in deployed:
                    self.error(
                        (*at, "name"),
                        f"app '{args.name}' is already deployed (step {deployed[args.name] + 1})",
                        "remove it first with remove_app, or give this app another name",
                    )
                else:
                    deployed[args.name] = i
                    removed.pop(args.name, None)
            elif action == "remove_app":
                if args.name in deployed:
                    removed[args.name] = deployed.pop(args.name)
                elif args.name in removed:
                    self.error(
                        (*at, "name"),
                        f"app '{args.name}' is already removed",
                        "deploy it again before removing it a second time",
                    )
                else:
                    self.error(
                        (*at, "name"),
                        f"app '{args.name}' is not deployed by any earlier step",
                        _did_you_mean(args.name, deployed, "deployed apps") if deployed else "deploy it first",
                    )
            elif action == "resume_rollout" and not pause_rollout:
                self.error(
                    at,
                    f"step {n} 'resume_rollout' has no paused rollout to resume",
                    "only a rollout with 'on_error: pause' pauses; set it on an earlier rollout step",
                    key=True,
                )
            elif action in CONTROLLER_PERIODS and args.duration is None:
                open_outage = i
            elif action == "controller_restore":
                if open_outage is None:
                    self.error(
                        at,
                        f"step {n} 'controller_restore' has no open-ended controller outage to end",
                        "it ends an earlier controller_outage, controller_503 or controller_hang given without 'duration'",
                        key=True,
                    )
                open_outage = None
        self.fault_order()

    def fault_order(self) -> None:
        update_seen = any(s.action in ("baseos_update", "rollout") for s in self.sc.steps)
        open_ended = any(
            a.action in CONTROLLER_PERIODS and a.args.duration is None for _, a in self.actions()
        )
        for i, fault in enumerate(self.sc.faults):
            at = ("faults", i, fault.action)
            if fault.action == "retry_update" and not update_seen:
                self.error(
                    at,
                    f"fault {i + 1} 'retry_update' has no update to retry",
                    "no step runs 'baseos_update' or 'rollout'",
                    key=True,
                )
            elif fault.action == "controller_restore" and not open_ended:
                self.error(
                    at,
                    f"fault {i + 1} 'controller_restore' has no open-ended controller outage to end",
                    "it ends a controller_outage, controller_503 or controller_hang given without 'duration'",
                    key=True,
                )

    def timing(self) -> None:
        limit = self.sc.duration
        if limit is None:
            return
        waits = sum(float(s.args) for s in self.sc.steps if s.action == "wait")
        if waits > limit:
            self.error(
                ("duration",),
                f"the 'wait' steps add up to {format_duration(waits)}, longer than duration {format_duration(limit)}",
                "raise 'duration' or shorten the waits",
            )
        for i, fault in enumerate(self.sc.faults):
            at = getattr(fault, "at", None)
            if at is not None and at > limit:
                self.error(
                    ("faults", i, "at"),
                    f"fault {i + 1} is at {format_duration(at)}, after the end of the run ({format_duration(limit)})",
                    "move it earlier or raise 'duration'",
                )

    # ---------------------------------------------------------------------------------- backend

    def condition_places(self) -> list[tuple[DataPath, Condition]]:
        """Every condition of the scenario with its path: expectations, their ``from``, expect
        steps and ``when`` triggers."""
        places: list[tuple[DataPath, Condition]] = [(("expect", i), e) for i, e in enumerate(self.sc.expect)]
        places += [(("expect", i, "from"), e.from_) for i, e in enumerate(self.sc.expect) if e.from_ is not None]
        for (kind, i), step in self.actions():
            if isinstance(step.args, Condition):
                places.append(((kind, i, step.action), step.args))
            when = getattr(step, "when", None)
            if isinstance(when, Condition):
                places.append(((kind, i, "when"), when))
        return places

    def placement_refusals(self, backend: str) -> None:
        """``adapters`` and ``pin_cpus`` of deploy_app, and the app condition's ``adapters``, are the
        simulator's only: the wire codec of the emulated and qemu backends carries no
        AppInstanceConfig.adapters or VmConfig.pin_cpu, nor ZInfoApp.assignedAdapters yet."""
        why = f"backend '{backend}' does not carry adapters or CPU pinning on the wire yet"
        for (kind, i), step in self.actions():
            if step.action != "deploy_app":
                continue
            word = "step" if kind == "steps" else "fault"
            for key, used in (("adapters", bool(step.args.adapters)), ("pin_cpus", step.args.pin_cpus)):
                if used:
                    self.error(
                        (kind, i, "deploy_app", key),
                        f"{word} {int(i) + 1} 'deploy_app' {step.args.name}: '{key}' is simulated only; {why}",
                        f"remove '{key}', or run this scenario on the sim backend",
                        key=True,
                    )
        for where, cond in self.condition_places():
            if cond.app is not None and cond.app.adapters is not None:
                self.error(
                    (*where, "app", "adapters"),
                    f"the app condition's 'adapters' is observed on sim only; {why}",
                    "remove 'adapters', or run this scenario on the sim backend",
                    key=True,
                )

    def dpc_state_conditions(self, backend: str) -> None:
        """A ``dpc.state`` condition needs a backend whose devices report the DPC state: ZInfoDevice
        carries only the index and the test times (systemAdapter, DevicePortStatus has no state)."""
        for where, cond in self.condition_places():
            for key in ("state", "ports"):
                if cond.dpc is not None and getattr(cond.dpc, key) is not None:
                    self.error(
                        (*where, "dpc", key),
                        f"backend '{backend}' cannot observe the DPC {key}: its devices report only the DPC index",
                        "use 'dpc: {index: N}', or run on the sim backend",
                    )

    def capabilities(self, backend: str, capabilities: frozenset[str]) -> None:
        from eden.backends.registry import refused_actions  # lazy: eden.backends imports the scenario package

        refused = refused_actions(backend)
        can = ", ".join(sorted(capabilities)) or "nothing"
        hint = f"backend '{backend}' can do: {can}"
        for (kind, i), step in self.actions():
            need = ACTIONS[step.action][1]
            word = "step" if kind == "steps" else "fault"
            if need not in capabilities:
                self.error(
                    (kind, i, step.action),
                    f"{word} {int(i) + 1} '{step.action}' needs capability '{need}', "
                    f"which backend '{backend}' does not have",
                    hint,
                    key=True,
                )
            elif step.action in refused:
                self.error(
                    (kind, i, step.action),
                    f"{word} {int(i) + 1} '{step.action}' is not supported by backend '{backend}'",
                    f"backend '{backend}': {refused[step.action]}",
                    key=True,
                )
        if "netconfig" not in capabilities:
            self.dpc_state_conditions(backend)
        if backend != "sim":
            self.placement_refusals(backend)
            for name, image in self.sc.images.items():
                if image.download != "ok":
                    self.error(
                        ("images", name, "download"),
                        f"image '{name}': 'download: {image.download}' is simulated only; "
                        f"backend '{backend}' serves the real image",
                        "remove 'download', or run this scenario on the sim backend",
                        key=True,
                    )
            for (kind, i), step in self.actions():
                if step.action == "deploy_app" and step.args.download != "ok":
                    word = "step" if kind == "steps" else "fault"
                    self.error(
                        (kind, i, "deploy_app", "download"),
                        f"{word} {int(i) + 1} 'deploy_app' {step.args.name}: 'download: {step.args.download}' is simulated "
                        f"only; backend '{backend}' downloads the real image",
                        "remove 'download', or run this scenario on the sim backend",
                        key=True,
                    )
        if self.sc.expect and "observe" not in capabilities:
            self.error(
                ("expect",),
                f"expectations need capability 'observe', which backend '{backend}' does not have",
                hint,
                key=True,
            )
