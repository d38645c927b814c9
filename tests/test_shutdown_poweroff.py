"""Shutdown and power-off from a scenario (spec §1, §7): the controller's DeviceOpsCmd shutdown
counter, the local graceful power-off, what goes on the wire and what the device reports.

EVE: P:cmd/zedagent/parseconfig.go ``scheduleDeviceOperation`` (the counter), P:cmd/zedagent/
localcommand.go (COMMAND_GRACEFUL_POWEROFF, "NORMAL: local profile server power off", deferred
while the update is tested), P:cmd/nodeagent/handletimers.go ``handleNodeOperation``,
P:cmd/zedagent/reportinfo.go ``getDeviceState`` and ``ShutdownConfigCounter``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_node_rules import driver, in_test_window, online

from eden.controller.model import RealModel
from eden.errors import InvalidInput
from eden.run import load_for_backend
from eden.runner import Runner, run_verdict
from eden.backends.sim import SimBackend
from eden.timeline import Timeline
from eden.wire import codec
from eden.wire.gen import config_pb2, info_pb2
from eve.controller import Controller
from eve.enums import BootReason, ZDeviceState

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "shutdown-and-poweroff.yaml"
DEV = "3f2b8c1e-0d4a-4e59-9a6b-1c2d3e4f5a6b"


# ------------------------------------------------------------------------------ controller --
def test_the_controller_sends_the_shutdown_counter_from_the_first_config_and_a_shutdown_raises_it() -> None:
    """§1: the first counter a device sees is only stored, so it must be there before the first
    shutdown (as ``reboot`` is); each shutdown is a new config version with a new hash."""
    ctrl = Controller(global_items={}, enforce_attestation=False)
    i = ctrl.add_device("S1", "fw", {})
    first = dict(ctrl.config_for(i))
    assert first["shutdown"] == 0
    ver = ctrl.devices[i].ver
    ctrl.shutdown([i])
    ctrl.shutdown([i])
    cfg = ctrl.config_for(i)
    assert cfg["shutdown"] == 2 and ctrl.devices[i].ver == ver + 2 and cfg["hash"] != first["hash"]


def test_a_stored_controller_row_keeps_a_shutdown_counter_saved_beside_the_device() -> None:
    """Rows written before the counter moved into DeviceRecord kept it in the controller's side."""
    model = RealModel({})
    i = model.add("S1", "fw", {})
    model.shutdown([i])
    row = model.dump(i)
    assert row["device"]["shutdown"] == 1 and "shutdown" not in row["side"]
    legacy = {"device": {k: v for k, v in row["device"].items() if k != "shutdown"}, "side": {**row["side"], "shutdown": 4}}
    again = RealModel({})
    j = again.restore(legacy)
    assert again.devices[j].shutdown == 4 and again.config_for(j)["shutdown"] == 4


# ------------------------------------------------------------------------------------ wire --
def test_the_shutdown_counter_travels_in_edgedevconfig_shutdown_even_when_zero() -> None:
    """api:proto/config/devconfig.proto ``DeviceOpsCmd shutdown = 34``: present with counter 0,
    so the device stores the first value; a config without it decodes without the key."""
    base = {"items": {}, "baseos": None, "reboot": 0, "apps": {}, "maintenance": False, "hash": "h"}
    for counter in (0, 3):
        payload = codec.encode_response("config", 200, {"config": {**base, "shutdown": counter}, "ver": 1}, device_uuid=DEV)
        resp = config_pb2.ConfigResponse.FromString(payload)
        assert resp.config.HasField("shutdown") and resp.config.shutdown.counter == counter
        assert codec.decode_response("config", 200, payload)["config"]["shutdown"] == counter
    payload = codec.encode_response("config", 200, {"config": base, "ver": 1}, device_uuid=DEV)
    assert not config_pb2.ConfigResponse.FromString(payload).config.HasField("shutdown")
    assert "shutdown" not in codec.decode_response("config", 200, payload)["config"]


def test_the_processed_shutdown_counter_is_reported_in_shutdown_config_counter() -> None:
    """api:proto/info/info.proto ``shutdown_config_counter = 49`` (reportinfo.go)."""
    drv = online(driver())
    drv.ctrl.set(shutdown=5)
    drv.run_for(60)
    report = drv.node.report(drv.now)
    assert report["shutdown_counter"] == 5
    dinfo = info_pb2.ZInfoMsg.FromString(codec.encode_request("info", report, device_uuid=DEV)[0]).dinfo
    assert dinfo.shutdown_config_counter == 5
    assert codec.decode_request("info", codec.encode_request("info", report, device_uuid=DEV)[0])["report"]["shutdown_counter"] == 5


# ------------------------------------------------------------------------------------ node --
def test_a_graceful_poweroff_writes_poweroff_cmd_with_the_local_profile_server_text() -> None:
    """localcommand.go: requestedRebootReason "NORMAL: local profile server power off"; the next
    boot reports it with BOOT_REASON_POWEROFF_CMD."""
    drv = online(driver())
    drv.call("poweroff_cmd")
    assert drv.node.device_state() == ZDeviceState.POWERING_OFF
    drv.run_until(lambda: drv.node.phase == "off", limit=400)
    drv.power_on()
    drv.run_until(lambda: drv.node.zedagent.running, limit=600)
    assert drv.node.boot_reason == BootReason.POWEROFF_CMD
    assert drv.node.boot_reason_text == "NORMAL: local profile server power off"


def test_a_graceful_poweroff_in_the_test_window_is_deferred_until_the_commit() -> None:
    """localcommand.go: during updateInprogress poweroffCmdDeferred; zedagent.go runs it at
    TestComplete with "TestComplete and deferred Poweroff Cmd"."""
    drv = online(driver())
    in_test_window(drv)
    drv.call("poweroff_cmd")
    assert drv.node.nodeagent.node_op is None and drv.node.zedagent.deferred_poweroff
    assert drv.node.device_state() != ZDeviceState.POWERING_OFF
    drv.run_until(lambda: drv.has_note("update_committed"), limit=900)
    assert drv.node.nodeagent.node_op == "poweroff"
    drv.run_until(lambda: drv.node.phase == "off", limit=400)
    assert drv.node.persist.reboot_record == (BootReason.POWEROFF_CMD, "TestComplete and deferred Poweroff Cmd")


def test_a_graceful_poweroff_after_a_shutdown_keeps_reporting_prepared_poweroff_and_powers_off() -> None:
    """getDeviceState checks shutdownCmd before poweroffCmd; localcommand.go checks only poweroffCmd,
    so the power-off runs: the device stays PREPARED_POWEROFF until it is off."""
    drv = online(driver())
    drv.ctrl.set(shutdown=1)
    drv.run_for(60)
    drv.ctrl.set(shutdown=2)
    drv.run_until(lambda: drv.node.device_state() == ZDeviceState.PREPARED_POWEROFF, limit=400)
    drv.call("poweroff_cmd")
    assert drv.node.nodeagent.node_op == "poweroff"
    states = drv.watch(lambda n: None if n.phase == "off" else n.device_state())
    drv.run_until(lambda: drv.node.phase == "off", limit=400)
    assert {s for _t, s in states} == {ZDeviceState.PREPARED_POWEROFF, None}  # never POWERING_OFF
    assert not drv.resets and drv.node.persist.reboot_record is not None
    assert drv.node.persist.reboot_record[0] == BootReason.POWEROFF_CMD


def test_a_graceful_poweroff_before_zedagent_runs_does_nothing() -> None:
    """The command reaches zedagent; a device still booting has none to take it."""
    drv = driver()
    drv.power_on()
    drv.call("poweroff_cmd")
    assert drv.node.nodeagent.node_op is None and not drv.node.zedagent.deferred_poweroff


# ------------------------------------------------------------------------------- backends --
def _issues(backend: str) -> list[str]:
    with pytest.raises(InvalidInput) as info:
        load_for_backend(SCENARIO, backend)
    return [str(i) for i in info.value.issues]


def test_graceful_poweroff_is_refused_at_validation_on_the_real_backends() -> None:
    """The device agent has no local profile server: emulated and qemu refuse the step with its
    file:line:col; qemu takes the controller's ``shutdown`` (as its ``reboot``)."""
    text = SCENARIO.read_text().splitlines()
    line = next(n for n, t in enumerate(text, 1) if t.strip().startswith("- graceful_poweroff"))
    emulated = _issues("emulated")
    assert emulated == [
        f"{SCENARIO}:{line}:5: error: step 11 'graceful_poweroff' is not supported by backend 'emulated'\n"
        "    hint: backend 'emulated': its device agent has no local profile server to take a graceful power-off command"
    ]
    qemu = "\n".join(_issues("qemu"))
    assert f":{line}:5: error: step 11 'graceful_poweroff' is not supported by backend 'qemu'" in qemu
    assert "'shutdown'" not in qemu, qemu


def test_shutdown_passes_validation_on_emulated(tmp_path: Path) -> None:
    """The admin API has POST /v1/devices/{serial}/shutdown and the codec carries the counter."""
    text = SCENARIO.read_text()
    variant = tmp_path / "shutdown-only.yaml"
    variant.write_text(text[: text.index("  - graceful_poweroff")] + "expect:\n  - {device_state: PREPARED_POWEROFF}\n")
    assert load_for_backend(variant, "emulated").scenario.name == "shutdown-and-poweroff"


def test_the_shipped_scenario_on_sim_reports_every_state_and_the_counter() -> None:
    loaded = load_for_backend(SCENARIO, "sim")
    backend = SimBackend(loaded, seed=loaded.scenario.seed, timeline=Timeline())
    seen: list[tuple[str, Any]] = []
    answer = backend.ctrl.answer

    def spy(i: int, kind: str, body: dict[str, Any], uuid: str | None = None) -> tuple[int, dict[str, Any]]:
        if kind == "info":
            seen.append((body["state"], body["shutdown_counter"]))
        return answer(i, kind, body, uuid)

    backend.ctrl.answer = spy  # type: ignore[method-assign]
    runner = Runner(loaded, backend, seed=loaded.scenario.seed)
    backend.run(runner.main(), duration=loaded.scenario.duration)
    runner.finish()
    assert run_verdict(runner) == "passed"
    states = [s for s, _c in seen]
    assert states.index("PREPARING_POWEROFF") < states.index("PREPARED_POWEROFF")
    assert ("PREPARED_POWEROFF", 1) in seen and seen[0][1] in (None, 0)
    assert "POWERING_OFF" not in states  # a power-off after a shutdown keeps the shutdown's state
    off = [e.t for e in backend.timeline if e.what == "powered_off"]
    assert len(off) == 1
    info = backend.ctrl.devices[0].info
    assert info is not None and info["boot_reason"] == "POWEROFF_CMD" and info["shutdown_counter"] == 1
    assert info["reboot_reason_text"] == "NORMAL: local profile server power off"
    assert backend.view(0)["powered"]
