"""configItem errors as an observable (spec §6): the device reports, in ZInfoDevice
configItemStatus (field 31), every item of its last config with the value in use and, for an
item it refused, the error (P:cmd/zedagent/reportinfo.go ``createConfigItemStatus``); the
``config_item_error`` / ``config_item_errors`` conditions read the keys with an error."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import background_run
from sim_run import run_sim

from eden.backends.sim import SimBackend
from eden.errors import EXIT_OK, InvalidInput
from eden.run import load_for_backend
from eden.runner import Runner, run_verdict
from eden.timeline import Timeline
from eden.wire import codec
from eden.wire.gen import info_pb2
from eve.config_items import UNKNOWN_ITEM_VALUE, GlobalConfig

DEV = "3f2b8c1e-0d4a-4e59-9a6b-1c2d3e4f5a6b"
TYPO = "timer.config.intervall"  # not a key EVE knows: reported with an error, otherwise ignored

SCENARIO = f"""\
name: config-item-errors
description: a configItem the device refuses is reported in configItemStatus, on that device only
seed: 3
fleet:
  - {{profile: qemu-x86_64, count: 2, group: dut}}
images:
  base: {{version: 13.4.0}}
controller:
  config_items:
    timer.config.interval: 5
steps:
  - power_on: {{}}
  - expect: {{onboarded: true, device_state: ONLINE, config_item_errors: [], within: 10m}}
  - set_config: {{{TYPO}: 30, timer.metric.interval: 120}}
    target: dut-0
  - expect: {{config_item_error: {TYPO}, config_item_errors: [{TYPO}], within: 5m, target: dut-0}}
  - expect: {{config_item_errors: [], target: dut-1}}
expect:
  - name: an accepted item is not an error
    config_item_errors: [{TYPO}]
    target: dut-0
"""
# The controller keeps the items it was given (set_config merges), so the unknown key stays in
# dut-0's config, and reported, to the end.


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------- the model --
def test_status_lists_every_item_of_the_last_config_with_the_value_in_use() -> None:
    """parseConfigItems: each item the controller sent, accepted or not; a refused value keeps the
    previous one (else the default), an unknown key has no value (P:types/global.go ParseItem)."""
    items = GlobalConfig()
    items.apply({"timer.config.interval": 30})
    errors = items.apply({"timer.config.interval": 1, "timer.metric.interval": 120, "debug.enable.usb": "yes",
                          TYPO: 30})
    assert sorted(e.key for e in errors) == ["debug.enable.usb", "timer.config.interval", TYPO]
    status = items.status()
    assert list(status) == sorted(status)
    assert status["timer.metric.interval"] == ("120", "")
    assert status["timer.config.interval"][0] == "30" and "minimum is 5" in status["timer.config.interval"][1]
    assert status["debug.enable.usb"][0] == "false" and "'yes'" in status["debug.enable.usb"][1]
    assert status[TYPO] == (UNKNOWN_ITEM_VALUE, f"value '30': {errors[-1].reason}")
    items.apply({})
    assert items.status() == {}


# ----------------------------------------------------------------------------------- the wire --
@pytest.fixture(scope="module")
def node_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A simulated node's info after a config with refused items (out of range, unknown key)."""
    loaded = load_for_backend(_write(tmp_path_factory.mktemp("cfgerr"), SCENARIO), "sim")
    backend = SimBackend(loaded, seed=loaded.scenario.seed, timeline=Timeline())
    runner = Runner(loaded, backend, seed=loaded.scenario.seed)
    backend.run(runner.main(), duration=loaded.scenario.duration)
    runner.finish()
    assert run_verdict(runner) == "passed"
    node = backend.nodes[0]
    node.items.apply({"timer.config.interval": 1, "timer.metric.interval": 120, TYPO: 30})
    report = copy.deepcopy(node.report(backend.now()))
    report["at"] = 1_764_000_000.0  # a wall-clock time: Timestamps round-trip it exactly
    report["boot_time"] = 1_763_999_000.0
    report.pop("dpc_state"), report.pop("dpc_ports")  # documented lossy (sim only)
    for counter in ("reboot_counter", "shutdown_counter", "baseos_update_counter"):
        report[counter] = report[counter] or 0  # plain uint32: None travels as 0
    return report


def test_a_nodes_errors_travel_in_config_item_status_and_decode_back(node_report: dict[str, Any]) -> None:
    assert node_report["config_items_errors"] == ["timer.config.interval", TYPO]
    payloads = codec.encode_request("info", node_report, device_uuid=DEV)
    msg = info_pb2.ZInfoMsg.FromString(payloads[0])
    assert info_pb2.ZInfoDevice.DESCRIPTOR.fields_by_name["configItemStatus"].number == 31
    assert msg.dinfo.HasField("configItemStatus")
    sent = msg.dinfo.configItemStatus.configItems
    assert set(sent) == {"timer.config.interval", "timer.metric.interval", TYPO}
    assert sent["timer.config.interval"].value == "5"  # the previous value stays (spec §6)
    assert "minimum is 5" in sent["timer.config.interval"].error
    assert sent["timer.metric.interval"].value == "120" and sent["timer.metric.interval"].error == ""
    assert sent[TYPO].value == UNKNOWN_ITEM_VALUE and "unknown config item" in sent[TYPO].error
    assert not msg.dinfo.configItemStatus.unknownConfigItems  # zedagent never fills it
    merged = None
    for payload in payloads:
        merged = codec.merge_info(merged, codec.decode_request("info", payload, image_of_version={"13.4.0": "base"},
                                                               baseos_version=node_report["baseos"]["version"]))
    assert merged is not None
    assert merged["config_items_errors"] == ["timer.config.interval", TYPO]
    assert merged["config_items_status"] == node_report["config_items_status"]
    assert merged == node_report


def test_no_items_an_empty_config_item_status(node_report: dict[str, Any]) -> None:
    """zedagent sends the message even when the config has no item (createConfigItemStatus)."""
    report = {**node_report, "config_items_errors": [], "config_items_status": {}}
    msg = info_pb2.ZInfoMsg.FromString(codec.encode_request("info", report, device_uuid=DEV)[0])
    assert msg.dinfo.HasField("configItemStatus") and not msg.dinfo.configItemStatus.configItems
    assert codec.decode_request("info", msg.SerializeToString())["report"]["config_items_errors"] == []


def test_a_real_eve_message_decodes_to_the_keys_with_an_error(node_report: dict[str, Any]) -> None:
    """What a real EVE sends: accepted items with an empty error, refused ones with a text, maybe
    an unknownConfigItems entry; only the keys with an error are config errors."""
    report = {**node_report, "config_items_errors": [], "config_items_status": {}}
    msg = info_pb2.ZInfoMsg.FromString(codec.encode_request("info", report, device_uuid=DEV)[0])
    items = msg.dinfo.configItemStatus
    items.configItems["timer.config.interval"].value = "60"
    items.configItems["debug.enable.ssh"].value = "ssh-ed25519 AAAA"
    items.configItems["timer.metric.interval"].value = "60"
    items.configItems["timer.metric.interval"].error = "value out of bounds"
    items.unknownConfigItems["no.such.item"].error = "not a known key"
    back = codec.decode_request("info", msg.SerializeToString())["report"]
    assert back["config_items_errors"] == ["no.such.item", "timer.metric.interval"]
    assert back["config_items_status"]["timer.config.interval"] == {"value": "60", "error": ""}


def test_an_error_key_without_status_still_travels(node_report: dict[str, Any]) -> None:
    report = {**node_report, "config_items_errors": ["x.y"], "config_items_status": {}}
    back = codec.decode_request("info", codec.encode_request("info", report, device_uuid=DEV)[0])["report"]
    assert back["config_items_errors"] == ["x.y"]
    assert back["config_items_status"] == {"x.y": {"value": "", "error": codec.CONFIG_ITEM_REJECTED}}


# --------------------------------------------------------------------------- the conditions --
def test_the_conditions_hold_on_the_simulator(tmp_path: Path) -> None:
    summary, events = run_sim(_write(tmp_path, SCENARIO), tmp_path / "out")
    steps = [s for s in summary["steps"] if s["action"] == "expect"]
    assert summary["verdict"] == "passed", steps
    assert [s["status"] for s in steps] == ["passed"] * 3
    final = next(e for e in summary["expectations"] if e["where"] == "expect[0]")
    assert final["observed"] == {"config_item_errors": [TYPO]}
    noted = [e for e in events if e.get("what") == "config_item_errors"]
    assert noted and all(e.get("keys") == [TYPO] for e in noted), noted


@pytest.mark.parametrize("old,new", [
    (f"config_item_error: {TYPO}, ", "config_item_error: timer.metric.interval, "),  # accepted: no error
    (f"config_item_errors: [{TYPO}], within", f"config_item_errors: [{TYPO}, timer.metric.interval], within"),
    ("config_item_errors: [], target: dut-1", f"config_item_errors: [{TYPO}], target: dut-1"),
    ("config_item_errors: [], within: 10m", f"config_item_error: {TYPO}, within: 10m"),  # before the set_config
])
def test_a_wrong_expectation_fails(tmp_path: Path, old: str, new: str) -> None:
    assert old in SCENARIO
    summary, _ = run_sim(_write(tmp_path, SCENARIO.replace(old, new)), tmp_path / "out")
    assert summary["verdict"] == "failed"


@pytest.mark.parametrize("backend", ["sim", "emulated"])
def test_the_conditions_are_valid_on_sim_and_emulated(tmp_path: Path, backend: str) -> None:
    loaded = load_for_backend(_write(tmp_path, SCENARIO), backend)
    conds = [s.args for s in loaded.scenario.steps if s.action == "expect"]
    assert conds[1].config_item_error == TYPO and conds[1].config_item_errors == [TYPO]
    assert conds[2].config_item_errors == []
    assert any(w.severity == "warning" and TYPO in w.message for w in loaded.warnings)


@pytest.mark.parametrize("new,words", [
    ("config_item_error: ''", "at least 1 character"),
    ("config_item_errors: timer.config.interval", "expected a list"),
    ("config_item_error: [a, b]", "expected a string"),
])
def test_bad_conditions_are_refused_at_their_line(tmp_path: Path, new: str, words: str) -> None:
    text = SCENARIO.replace("config_item_errors: [], target: dut-1", f"{new}, target: dut-1")
    with pytest.raises(InvalidInput) as exc:
        load_for_backend(_write(tmp_path, text), "sim")
    issue = exc.value.issues[0]
    line = 1 + text.splitlines().index(f"  - expect: {{{new}, target: dut-1}}")
    assert words in f"{issue.message} {issue.hint}" and issue.line == line, issue


# ---------------------------------------------------------------------------------- emulated --
EMULATED = """\
name: emulated-config-item-errors
description: an unknown configItem is reported through the real wire (configItemStatus)
seed: 1
fleet:
  - {profile: qemu-x86_64, group: dut}
images:
  base: {version: 13.4.0}
controller:
  config_items:
    timer.config.interval: 5
steps:
  - power_on: {}
  - expect: {onboarded: true, device_state: ONLINE, config_item_errors: [], within: 1m}
  - set_config: {timer.config.intervall: 30, timer.metric.interval: 120}
  - expect: {config_item_error: timer.config.intervall, config_item_errors: [timer.config.intervall], within: 1m}
"""


@pytest.mark.slow
@pytest.mark.background("config-item-errors", lane="emulated-scenarios", scenario=EMULATED, backend="emulated")
def test_the_error_arrives_through_the_real_wire_on_emulated() -> None:
    run = background_run("config-item-errors")
    rc, output = run.wait(timeout=300)
    assert rc == EXIT_OK, output[-3000:]
    summary = json.loads((run.out / "summary.json").read_text())
    steps = [s for s in summary["steps"] if s["action"] == "expect"]
    assert [s["status"] for s in steps] == ["passed"] * 2, steps
    assert steps[1]["detail"]["observed"]["config_item_errors"] == [TYPO], steps
    assert run.leftovers() == []
