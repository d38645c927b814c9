"""Scenario loading: the model's error reporting and the cross-checks in eden.scenario.load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eden.errors import InvalidInput, Issue
from eden.profiles import DEFAULT_PROFILES_DIR, HwProfile, load_profiles
from eden.scenario import DeviceSpec, LoadedScenario, Scenario, load_scenario
from eden.scenario import metric_names
from eden.scenario.load import load_any, scenario_json_schema

FLEET = """\
name: smoke
fleet:
  - profile: qemu-x86_64
    count: 2
  - profile: gateway-arm
    group: gw
    count: 3
images:
  eve-a: {version: 12.10}
  eve-b: {version: "13.0"}
"""

QEMU_CAPS = frozenset({"power", "wait", "observe", "baseos", "network", "config", "controller_ops"})


@pytest.fixture(scope="module")
def profiles() -> dict[str, HwProfile]:
    return load_profiles(DEFAULT_PROFILES_DIR)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def _pos(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based line/column of the ``nth`` occurrence of ``needle`` in ``text``."""
    start = -1
    for _ in range(nth + 1):
        start = text.index(needle, start + 1)
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return line, col


def _issues(tmp_path: Path, text: str, profiles: dict[str, HwProfile], **kwargs: object) -> tuple[Path, list[Issue]]:
    path = _write(tmp_path, text)
    with pytest.raises(InvalidInput) as info:
        load_scenario(path, profiles=profiles, **kwargs)  # type: ignore[arg-type]
    return path, info.value.issues


def _one(tmp_path: Path, text: str, profiles: dict[str, HwProfile], **kwargs: object) -> Issue:
    path, issues = _issues(tmp_path, text, profiles, **kwargs)
    assert len(issues) == 1, "\n".join(map(str, issues))
    assert issues[0].file == str(path)
    return issues[0]


def _at(issue: Issue, text: str, needle: str, nth: int = 0) -> None:
    assert (issue.line, issue.col) == _pos(text, needle, nth), str(issue)


# ------------------------------------------------------------------------------------------ valid input


def test_valid_scenario_loads(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET.replace("    count: 3\n", "    count: 3\n    image: eve-b\n    overrides:\n      memory: 4G\n") + (
        "duration: 2h\n"
        "controller:\n  config_items: {timer.config.interval: 10, network.fallback.any.eth: enabled}\n"
        "steps:\n"
        "  - power_on: {spread: 10s}\n"
        "  - expect: {onboarded: true, within: 5m}\n"
        "  - baseos_update: {image: eve-b}\n    target: {group: gw, count: 2}\n"
        "  - retry_update:\n    target: gw-1\n"
        "  - network_down: {ports: [eth1]}\n    target: gw\n"
        "  - network_up: {ports: [eth1]}\n    target: {profile: gateway-arm}\n"
        "  - deploy_app: {name: web}\n"
        "  - expect: {app: {name: web, state: running}, within: 10m}\n"
        "  - remove_app: {name: web}\n"
        "  - deploy_app: {name: web}\n"
        "  - controller_outage: {}\n"
        "  - wait: 10m\n"
        "  - controller_restore:\n"
        "  - rollout: {image: eve-a, waves: [{count: 1}, {fraction: 1}], on_error: pause}\n"
        "  - resume_rollout:\n"
        "faults:\n"
        "  - reboot:\n    at: 5m\n    target: qemu-x86_64-1\n"
        "  - set_config: {timer.test.baseimage.update: 30}\n    when: {onboarded: true}\n"
        "expect:\n"
        "  - version: eve-b\n    target: gw\n    within: 1h\n"
        "  - metric: {name: boot.time.p95, max: 2m}\n"
        "metrics: [boot.time, controller.latency.config.p99, rollbacks]\n"
    )
    loaded = load_scenario(_write(tmp_path, text), profiles=profiles, capabilities=None)
    assert isinstance(loaded, LoadedScenario) and isinstance(loaded.scenario, Scenario)
    assert [d.id for d in loaded.devices] == ["qemu-x86_64-0", "qemu-x86_64-1", "gw-0", "gw-1", "gw-2"]
    gw1 = loaded.devices[3]
    assert gw1 == DeviceSpec("gw-1", "gw", 1, 1, "gateway-arm", gw1.profile, "eve-b")
    assert {g: [d.index for d in ds] for g, ds in loaded.groups().items()} == {"qemu-x86_64": [0, 1], "gw": [0, 1, 2]}
    assert loaded.devices[0].image == "eve-a"  # default: the first image
    assert gw1.profile.memory == 4 * 2**30  # override applied ...
    assert loaded.profiles["gateway-arm"].memory == 2 * 2**30  # ... to a copy
    assert loaded.devices[0].profile is loaded.profiles["qemu-x86_64"]
    assert loaded.scenario.images["eve-a"].version == "12.10"
    assert loaded.matching(loaded.scenario.expect[0].target) == loaded.groups()["gw"]


def test_version_keeps_its_text(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    loaded = load_scenario(_write(tmp_path, FLEET), profiles=profiles)
    assert loaded.scenario.images["eve-a"].version == "12.10"
    assert loaded.scenario.images["eve-b"].version == "13.0"


def test_device_id_and_all_targets(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - reboot:\n    target: gw-2\n  - reboot:\n    target: all\n"
    loaded = load_scenario(_write(tmp_path, text), profiles=profiles)
    assert [d.id for d in loaded.matching("gw-2")] == ["gw-2"]
    assert len(loaded.matching("all")) == 5


# ------------------------------------------------------------------------------------------ model errors


def test_unknown_top_level_key(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "descripton: a typo\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "descripton")
    assert issue.message == "unknown key 'descripton'"
    assert issue.hint == "did you mean 'description'?"


def test_unknown_action(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - powr_on: {}\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "powr_on")
    assert "unknown action 'powr_on'" in issue.message and "did you mean 'power_on'?" in issue.message


def test_two_actions_in_one_step(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - power_on: {}\n    reboot: {}\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "power_on")
    assert "one action per entry, found power_on, reboot" in issue.message


def test_bad_duration(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - wait: 10 minutes\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "10 minutes")
    assert issue.message.startswith("'10 minutes' is not a duration; write e.g. 30s, 10m")


def test_fault_with_at_and_when(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "faults:\n  - reboot:\n    at: 5m\n    when: {onboarded: true}\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "reboot")
    assert "a fault needs exactly one trigger: 'at' (a time) or 'when' (a condition)" in issue.message


def test_step_only_action_in_faults_lists_fault_actions(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "faults:\n  - wait: 5s\n    at: 1m\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "wait")
    assert issue.message.startswith("'wait' cannot be used here; allowed: power_on,")
    allowed = issue.message.split("allowed: ")[1].split(", ")
    assert "wait" not in allowed and "rollout" not in allowed and "tamper" in allowed


# ------------------------------------------------------------------------------------------ fleet and images


def test_unknown_profile(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET.replace("profile: gateway-arm", "profile: gateway-armm")
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "gateway-armm")
    assert issue.message == "unknown hardware profile 'gateway-armm'"
    assert issue.hint == "did you mean 'gateway-arm'?"


def test_bad_override_points_inside_overrides(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET.replace("    count: 3\n", "    count: 3\n    overrides:\n      memroy: 4G\n      cores: 0\n")
    path, issues = _issues(tmp_path, text, profiles)
    assert len(issues) == 2
    _at(issues[0], text, "memroy")
    assert issues[0].message == "override for profile 'gateway-arm': unknown key 'memroy'"
    assert issues[0].hint == "did you mean 'memory'?"
    _at(issues[1], text, "0\n")
    assert "'cores'" in issues[1].message and ">= 1" in issues[1].message


def test_duplicate_group(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET.replace("images:", "  - profile: nuc-class\n    group: gw\nimages:")
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "gw", 1)
    assert issue.message == "group 'gw' is already used by fleet entry 2"
    assert issue.hint is not None and "group" in issue.hint


def test_unknown_fleet_image(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET.replace("    count: 3\n", "    count: 3\n    image: eve-c\n")
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "eve-c")
    assert issue.message == "unknown image 'eve-c'"
    assert issue.hint is not None and issue.hint.startswith("did you mean 'eve-")


def test_unknown_image_in_baseos_update(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - baseos_update: {image: eve-bee}\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "eve-bee")
    assert issue.message == "unknown image 'eve-bee'"
    assert issue.hint == "did you mean 'eve-b'?"


def test_unknown_image_in_rollout(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - rollout: {image: nope, waves: [{fraction: 1}]}\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "nope")
    assert issue.message == "unknown image 'nope'" and issue.hint == "known images: eve-a, eve-b"


def test_variant_profile_not_in_fleet(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    variant = "    variants: [{profile: nuc-class, fraction: 2%, behaviour: crash-on-boot}]\n"
    text = FLEET.replace("  eve-a: {version: 12.10}\n", "  eve-a:\n    version: 12.10\n" + variant)
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "nuc-class")
    assert issue.message == "no fleet entry uses profile 'nuc-class'"
    assert issue.hint == "known profiles in the fleet: qemu-x86_64, gateway-arm"


# ------------------------------------------------------------------------------------------ targets


def test_unknown_string_target(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - reboot:\n    target: gww\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "gww")
    assert issue.message == "unknown target 'gww': not 'all', a group or a device id"
    assert issue.hint == "did you mean 'gw'?"


def test_profile_name_as_target_gets_a_hint(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "expect:\n  - onboarded: true\n    target: gateway-arm\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "gateway-arm", 1)
    assert issue.hint == "'gateway-arm' is a profile; write target: {profile: gateway-arm}"


def test_target_spec_names_must_exist(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + (
        "steps:\n"
        "  - reboot:\n    target: {group: gx}\n"
        "  - reboot:\n    target: {profile: nuc-class}\n"
        "  - reboot:\n    target: {devices: [gw-0, gw-7]}\n"
    )
    _, issues = _issues(tmp_path, text, profiles)
    assert [i.message for i in issues] == [
        "unknown group 'gx'",
        "no fleet entry uses profile 'nuc-class'",
        "unknown device 'gw-7'",
    ]
    _at(issues[0], text, "gx")
    _at(issues[1], text, "nuc-class")
    _at(issues[2], text, "gw-7")
    assert issues[0].hint == "known groups: qemu-x86_64, gw"


def test_sample_count_larger_than_selection(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - reboot:\n    target: {group: gw, count: 4}\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "4}")
    assert issue.message == "count 4 is more than the 3 devices the target selects"
    assert issue.hint is not None and "count: 3" in issue.hint


def test_target_selecting_nothing(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - reboot:\n    target: {group: gw, profile: qemu-x86_64}\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "{group: gw")
    assert issue.message == "the target selects no devices"


# ------------------------------------------------------------------------------------------ config items and metrics


def test_config_item_out_of_range(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "controller:\n  config_items:\n    timer.test.baseimage.update: 10\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "10\n")
    assert "timer.test.baseimage.update" in issue.message and "minimum is 30" in issue.message
    assert issue.hint is not None
    assert "from 30 to 3600 s" in issue.hint and "default 600 s" in issue.hint and "spec §6" in issue.hint


def test_unknown_config_item_is_a_warning_naming_the_closest_key(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    # EVE reports an unknown key in configItemStatus and goes on (spec §6): the file still runs.
    text = FLEET + "steps:\n  - set_config: {timer.config.intervall: 30}\n"
    path = tmp_path / "s.yaml"
    path.write_text(text)
    loaded = load_scenario(path, profiles=profiles)
    [warning] = loaded.warnings
    _at(warning, text, "timer.config.intervall")
    assert warning.severity == "warning" and str(warning).count(": warning: ") == 1
    assert warning.message.startswith("unknown config item 'timer.config.intervall'")
    assert warning.hint is not None and warning.hint.startswith("did you mean 'timer.config.interval'")


def test_config_item_values_are_checked_with_eve_spellings(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    # spec §6.1: YAML's 'on' is a boolean, which a tri-state does not take; 'yes' is not a Go bool.
    text = FLEET + "controller:\n  config_items:\n    maintenance.mode: on\n    app.allow.vnc: 'yes'\n    airgap.mode: 'on'\n"
    _, issues = _issues(tmp_path, text, profiles)
    assert [i.message.split(":")[0] for i in issues] == ["maintenance.mode=True", "app.allow.vnc='yes'"]
    assert "quote the value" in issues[0].message


def test_unknown_metric_names(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "expect:\n  - metric: {name: boot.tim.p95, max: 2m}\nmetrics: [boot.time, reboots, rollbaks]\n"
    _, issues = _issues(tmp_path, text, profiles)
    assert [i.message for i in issues] == ["unknown metric 'boot.tim.p95'", "unknown metric 'rollbaks'"]
    _at(issues[0], text, "boot.tim.p95")
    _at(issues[1], text, "rollbaks")
    assert issues[0].hint is not None and issues[0].hint.startswith("did you mean 'boot.time.p95'")
    assert issues[1].hint is not None and issues[1].hint.startswith("did you mean 'rollbacks'")


def test_metric_registry() -> None:
    for name in ("boot.time", "boot.time.p99", "update.duration.count", "controller.latency.p95",
                 "controller.latency.attest.max", "controller.request_rate", "rollout.state", "devices.by_version"):
        assert metric_names.is_known(name), name
    assert not metric_names.is_known("controller.latency.bogus.p99")
    assert not metric_names.is_known("reboots.p95")
    assert metric_names.close_names("reboot") == ["reboots"]
    assert all(isinstance(doc, str) and doc for doc in metric_names.METRICS.values())


# ------------------------------------------------------------------------------------------ step consistency


def test_retry_update_before_any_update(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - retry_update:\n  - baseos_update: {image: eve-b}\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "retry_update")
    assert issue.message == "step 1 'retry_update' comes before any 'baseos_update' or 'rollout'"


def test_remove_app_never_deployed_or_already_removed(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + (
        "steps:\n"
        "  - remove_app: {name: db}\n"
        "  - deploy_app: {name: web}\n"
        "  - remove_app: {name: web}\n"
        "  - remove_app: {name: web}\n"
    )
    _, issues = _issues(tmp_path, text, profiles)
    assert [i.message for i in issues] == [
        "app 'db' is not deployed by any earlier step",
        "app 'web' is already removed",
    ]
    _at(issues[0], text, "db")
    _at(issues[1], text, "web", 2)


def test_deploy_app_twice(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - deploy_app: {name: web}\n  - deploy_app: {name: web, kind: vm}\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "web", 1)
    assert issue.message == "app 'web' is already deployed (step 1)"


def test_expect_app_never_deployed(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - deploy_app: {name: web}\nexpect:\n  - app: {name: wbe, state: running}\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "wbe")
    assert issue.message == "app 'wbe' is never deployed in the steps"
    assert issue.hint == "did you mean 'web'?"


def test_resume_rollout_needs_paused_rollout(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - rollout: {image: eve-b, waves: [{fraction: 1}]}\n  - resume_rollout:\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "resume_rollout")
    assert issue.message == "step 2 'resume_rollout' has no paused rollout to resume"
    assert issue.hint is not None and "on_error: pause" in issue.hint


def test_controller_restore_needs_open_outage(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + (
        "steps:\n"
        "  - controller_outage: {duration: 5m}\n"
        "  - controller_restore:\n"
        "  - controller_503:\n"
        "  - controller_restore:\n"
    )
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "controller_restore")
    assert issue.message == "step 2 'controller_restore' has no open-ended controller outage to end"


def test_ports_must_exist_on_targeted_devices(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + (
        "steps:\n"
        "  - network_down: {ports: [eth0, eht1]}\n    target: gw\n"
        "  - network_up: {ports: [wwan0]}\n    target: qemu-x86_64\n"
    )
    _, issues = _issues(tmp_path, text, profiles)
    assert [i.message for i in issues] == [
        "no targeted device has a port 'eht1'",
        "no targeted device has a port 'wwan0'",
    ]
    _at(issues[0], text, "eht1")
    _at(issues[1], text, "wwan0")
    assert issues[0].hint == "did you mean 'eth1'? NICs of the targeted devices: eth0, eth1, wwan0"
    nics = ", ".join(n.name for n in profiles["qemu-x86_64"].nics)
    assert issues[1].hint is not None and issues[1].hint.endswith(f"NICs of the targeted devices: {nics}")


def test_waits_longer_than_duration(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "duration: 30m\nsteps:\n  - wait: 20m\n  - wait: 15m\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "30m")
    assert issue.message == "the 'wait' steps add up to 35m, longer than duration 30m"


def test_fault_after_duration(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "duration: 1h\nfaults:\n  - reboot:\n    at: 90m\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "90m")
    assert issue.message == "fault 1 is at 1h30m, after the end of the run (1h)"


# ------------------------------------------------------------------------------------------ backends


def test_capability_rejection(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - power_on:\n  - wait: 1m\n  - tamper: {stage: bootloader}\n"
    issue = _one(tmp_path, text, profiles, backend="qemu", capabilities=QEMU_CAPS)
    _at(issue, text, "tamper")
    assert issue.message == "step 3 'tamper' needs capability 'tamper', which backend 'qemu' does not have"
    assert issue.hint is not None and issue.hint.startswith("backend 'qemu' can do: ") and "power" in issue.hint


def test_fault_capability_rejection(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "faults:\n  - hang: {}\n    at: 1m\n"
    issue = _one(tmp_path, text, profiles, backend="qemu", capabilities=QEMU_CAPS)
    _at(issue, text, "hang")
    assert issue.message == "fault 1 'hang' needs capability 'hang', which backend 'qemu' does not have"


def test_max_devices(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    issue = _one(tmp_path, FLEET, profiles, backend="qemu", max_devices=4)
    _at(issue, FLEET, "fleet")
    assert issue.message == "the fleet has 5 devices; backend 'qemu' runs at most 4"


def _backend(name: str) -> dict[str, object]:
    from eden.backends.registry import backend_capabilities

    caps, max_devices = backend_capabilities(name)
    return {"backend": name, "capabilities": caps, "max_devices": max_devices}


def test_controller_503_runs_on_emulated_and_qemu_and_is_refused_on_boards(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    """Refused by ``validate``, not at run time ('cannot perform'): controller faults are not yet
    qualified on a lab's boards; emulated and qemu set the real controller's answer switch."""
    text = FLEET.replace("count: 3", "count: 1") + "steps:\n  - power_on:\n  - controller_503: {duration: 1m}\n"
    issue = _one(tmp_path, text, profiles, **_backend("board"))
    _at(issue, text, "controller_503")
    assert issue.message == "step 2 'controller_503' needs capability 'controller_faults', which backend 'board' does not have"
    for backend in ("sim", "emulated", "qemu"):
        assert load_scenario(_write(tmp_path, text), profiles=profiles, **_backend(backend)).scenario  # type: ignore[arg-type]


def test_fault_refused_by_a_backend(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    """A fault whose capability the backend has but whose action it refuses, with the reason."""
    text = FLEET.replace("count: 3", "count: 1") + "faults:\n  - delete_device: {}\n    at: 1m\n"
    issue = _one(tmp_path, text, profiles, **_backend("emulated"))
    assert issue.message == "fault 1 'delete_device' is not supported by backend 'emulated'"
    assert issue.hint is not None and "cannot delete a device" in issue.hint


def _compared_actions(func: object) -> set[str]:
    """Action names a dispatcher branches on: ``if``/``elif action == "x"`` or ``action in ("x", ...)``."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))  # type: ignore[arg-type]
    found: set[str] = set()
    for branch in ast.walk(tree):
        node = branch.test if isinstance(branch, ast.If) else None
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "action":
            for right in node.comparators:
                for const in ast.walk(right):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        found.add(const.value)
    return found


@pytest.mark.parametrize("name", ["sim", "emulated", "qemu"])
def test_validation_lets_through_only_what_the_backend_performs(name: str) -> None:
    """validate and run derive from one table (eden.backends.registry.REGISTRY): every action validation
    accepts is dispatched by the runner or reaches a port method the backend's own port overrides."""
    from eden.backends.actions import ACTION_TABLE
    from eden.backends.ports import ControllerPort, DevicePort
    from eden.backends.registry import REGISTRY, backend_actions
    from eden.runner import Runner

    cls = REGISTRY[name].backend_class()
    ports = {"controller": (cls.controller_port_type, ControllerPort), "device": (cls.device_port_type, DevicePort)}
    by_runner = _compared_actions(Runner._step) | _compared_actions(Runner._act)
    by_ports = set()
    for action, row in ACTION_TABLE.items():
        own, base = ports[row.port]
        if getattr(own, row.method) is not getattr(base, row.method):
            by_ports.add(action)
    accepted = backend_actions(name)
    assert accepted - (by_runner | by_ports) == set(), f"validation accepts actions the {name} backend cannot perform"
    assert {"power_on", "expect", "tamper"} <= accepted
    assert "controller_503" in accepted  # emulated and qemu: the real controller's answer switch
    assert ("deploy_app" in accepted) == (name != "qemu")  # the reference image runs no apps
    assert ("delete_device" in accepted) == (name == "sim")


# ------------------------------------------------------------------------------------------ reporting


def test_all_issues_reported_at_once(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET.replace("profile: gateway-arm", "profile: gateway-armm") + (
        "steps:\n  - baseos_update: {image: eve-c}\n"
    )
    path, issues = _issues(tmp_path, text, profiles)
    assert [i.message for i in issues] == ["unknown hardware profile 'gateway-armm'", "unknown image 'eve-c'"]
    assert [(i.line, i.col) for i in issues] == [_pos(text, "gateway-armm"), _pos(text, "eve-c")]
    assert str(issues[1]).startswith(f"{path}:{issues[1].line}:{issues[1].col}: error: unknown image")


def test_model_errors_reported_at_once(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - powr_on: {}\n  - wait: 10 minutes\n"
    _, issues = _issues(tmp_path, text, profiles)
    assert len(issues) == 2
    assert "powr_on" in issues[0].message and "10 minutes" in issues[1].message


# ----------------------------------------------------------------------------------------------------- limits


@pytest.mark.parametrize(("seed", "message"), [("-1", "must be >= 0"), (str(2**63), "must be <= 9223372036854775807")])
def test_seed_out_of_range(tmp_path: Path, profiles: dict[str, HwProfile], seed: str, message: str) -> None:
    text = FLEET.replace("name: smoke\n", f"name: smoke\nseed: {seed}\n")
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, seed)
    assert message in issue.message


def test_largest_seed_loads(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET.replace("name: smoke\n", f"name: smoke\nseed: {2**63 - 1}\n")
    assert load_scenario(_write(tmp_path, text), profiles=profiles).scenario.seed == 2**63 - 1


@pytest.mark.parametrize(
    ("old", "new", "at"),
    [
        ("name: smoke", "name: " + "s" * 300, "s" * 300),
        ("group: gw", "group: " + "g" * 65, "g" * 65),
        ("eve-b: {", "e" * 65 + ": {", "eve-a"),  # the image names are checked on the 'images' mapping
    ],
    ids=["scenario", "group", "image"],
)
def test_over_long_names(tmp_path: Path, profiles: dict[str, HwProfile], old: str, new: str, at: str) -> None:
    text = FLEET.replace(old, new)
    issue = _one(tmp_path, text, profiles)
    assert "at most 64 characters" in issue.message, issue.message
    _at(issue, text, at)


def test_name_of_64_characters_loads(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET.replace("name: smoke", "name: " + "s" * 64)
    assert load_scenario(_write(tmp_path, text), profiles=profiles).scenario.name == "s" * 64


def test_fleet_count_limit(tmp_path: Path, profiles: dict[str, HwProfile], monkeypatch: pytest.MonkeyPatch) -> None:
    text = FLEET.replace("count: 3", "count: 1000000000")
    issue = _one(tmp_path, text, profiles)  # refused before a billion devices are built
    _at(issue, text, "fleet")
    assert issue.message == "the fleet has 1,000,000,002 devices, more than 100,000"
    assert issue.hint == "the limit is 100,000 devices in one scenario's fleet; set EDEN_MAX_DEVICES to raise it"
    monkeypatch.setenv("EDEN_MAX_DEVICES", "4")
    assert "more than 4" in _one(tmp_path, FLEET, profiles).message
    monkeypatch.setenv("EDEN_MAX_DEVICES", "5")
    assert len(load_scenario(_write(tmp_path, FLEET), profiles=profiles).devices) == 5


def test_fleet_limit_is_reported_with_the_unknown_keys(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET.replace("count: 3", "count: 1000000000\n    cont: 2")
    _, issues = _issues(tmp_path, text, profiles)
    assert [i.message for i in issues] == ["the fleet has 1,000,000,002 devices, more than 100,000", "unknown key 'cont'"]


@pytest.mark.parametrize("key", ["steps", "faults", "expect", "metrics"])
def test_entry_limit(tmp_path: Path, profiles: dict[str, HwProfile], monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    entry = {
        "steps": "  - wait: 1s\n",
        "faults": "  - reboot: {}\n    at: 1s\n",
        "expect": "  - onboarded: true\n",
        "metrics": "  - boot.time\n",
    }[key]
    text = FLEET + f"{key}:\n" + entry * 11
    monkeypatch.setenv("EDEN_MAX_STEPS", "10")
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, f"{key}:")
    assert issue.message == f"'{key}' has 11 entries, more than 10" and "EDEN_MAX_STEPS" in (issue.hint or "")
    monkeypatch.setenv("EDEN_MAX_STEPS", "11")
    load_scenario(_write(tmp_path, text), profiles=profiles)


def test_default_entry_limit_is_checked_before_the_schema(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n" + "  - bogus: 1\n" * 10_001
    issue = _one(tmp_path, text, profiles)  # one issue, not 10,001 unknown actions
    assert issue.message == "'steps' has 10,001 entries, more than 10,000"


def test_unknown_keys_and_cross_checks_in_one_pass(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    """Unknown keys, an unknown profile and bad references are all reported by one ``validate``, not
    one kind at a time."""
    text = (
        FLEET.replace("profile: gateway-arm", "profile: gateway-armm").replace("count: 2", "count: 2\n    imagee: eve-a")
        + "steps:\n  - power_on: {spred: 1s}\n  - baseos_update: {image: eve-c}\n  - reboot:\n    target: gww\n"
        + "expectt:\n  - onboarded: true\n"
    )
    _, issues = _issues(tmp_path, text, profiles)
    assert [(i.message, (i.line, i.col)) for i in issues] == [
        ("unknown key 'imagee'", _pos(text, "imagee")),
        ("unknown hardware profile 'gateway-armm'", _pos(text, "gateway-armm")),
        ("unknown key 'spred'", _pos(text, "spred")),
        ("unknown image 'eve-c'", _pos(text, "eve-c")),
        ("unknown target 'gww': not 'all', a group or a device id", _pos(text, "gww")),
        ("unknown key 'expectt'", _pos(text, "expectt")),
    ]


def test_unknown_key_in_a_target_does_not_stop_the_cross_checks(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - reboot:\n    target: {group: gw, cont: 1}\n  - baseos_update: {image: eve-c}\n"
    _, issues = _issues(tmp_path, text, profiles)
    assert [i.message for i in issues] == ["unknown key 'cont'", "unknown image 'eve-c'"]


def test_other_schema_errors_still_stop_before_the_cross_checks(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    """A value that could not be read is not guessed at: 'count: three' would otherwise make 'gw-2'
    an unknown device."""
    text = FLEET.replace("count: 3", "count: three") + "steps:\n  - reboot:\n    target: gw-2\n    nam: x\n"
    _, issues = _issues(tmp_path, text, profiles)
    assert [i.message for i in issues] == ["'three' is not a valid integer for 'count'", "unknown key 'nam'"]


# ------------------------------------------------------------------------------------------ schema, load_any


def test_json_schema(tmp_path: Path) -> None:
    schema = scenario_json_schema()
    text = json.dumps(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] and "_Invalid" not in text
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    data = yaml.safe_load(
        FLEET + "steps:\n  - reboot:\n  - wait: 5m\n  - expect: {app: {name: web, state: running}}\n"
        "expect:\n  - metric: {name: boot.time.p95, max: 2m}\n"
    )
    assert list(validator.iter_errors(data)) == []
    data["steps"].append({"powr_on": {}})
    assert [e.json_path for e in validator.iter_errors(data)] == ["$.steps[3]"]


def test_load_any(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    kind, profile = load_any(DEFAULT_PROFILES_DIR / "nuc-class.yaml")
    assert kind == "profile" and isinstance(profile, HwProfile) and profile.name == "nuc-class"
    kind, loaded = load_any(_write(tmp_path, FLEET), profiles=profiles)
    assert kind == "scenario" and isinstance(loaded, LoadedScenario)


def test_crash_agent_does_not_apply_to_a_kernel_panic(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - power_on:\n  - crash: {kind: kernel, agent: zedagent}\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "zedagent}")
    assert "'agent' does not apply to kind 'kernel'" in issue.message


def test_crash_kind_is_one_of_eves_causes(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = FLEET + "steps:\n  - power_on:\n  - crash: {kind: segfault}\n"
    issue = _one(tmp_path, text, profiles)
    _at(issue, text, "segfault")
    assert "kernel" in issue.message and "agent_exit" in issue.message


def test_crash_is_refused_on_boards_and_reaches_the_agents_model_elsewhere(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    """emulated and qemu send a crash to the agent's fault inbox (its model's watchdog and kdump
    record the cause, eden/agent/faults.py); a board's agents are not the harness's to change."""
    text = FLEET.replace("count: 3", "count: 1") + "faults:\n  - crash: {kind: oom}\n    at: 1m\n"
    issue = _one(tmp_path, text, profiles, **_backend("board"))
    _at(issue, text, "crash")
    assert issue.message == "fault 1 'crash' needs capability 'crash', which backend 'board' does not have"
    for backend in ("emulated", "qemu"):
        assert load_scenario(_write(tmp_path, text), profiles=profiles, **_backend(backend)).scenario  # type: ignore[arg-type]
