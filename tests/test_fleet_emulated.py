"""eden.fleet.Fleet on the emulated backend: the same driver as on the simulator, over a real
controller and a real agent process, in real time (slow: about a minute)."""

from __future__ import annotations

import uuid

import pytest
from leakcheck import marked_processes

from eden.fleet import Fleet

pytestmark = pytest.mark.slow


def test_a_fleet_drives_real_processes_step_by_step_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    mark = uuid.uuid4().hex
    monkeypatch.setenv("EDEN_TEST_MARK", mark)
    fleet = Fleet.from_spec("qemu-x86_64", 1, group="dut", images={"base": "13.4.0"},
                            config_items={"timer.config.interval": 5}, backend="emulated")
    work = fleet.backend.work  # type: ignore[attr-defined]
    try:
        assert marked_processes("EDEN_TEST_MARK", mark), "the controller runs while the fleet is open"
        assert fleet.power_on() == ["dut-0"]
        assert fleet.wait_until({"onboarded": True, "device_state": "ONLINE"}, within="90s")
        assert fleet.view("dut-0")["powered"] is True
        started = fleet.now
        fleet.apply("network_flap", down="2s", up="2s", cycles=1)  # runs on in the background
        fleet.apply("set_config", args={"timer.metric.interval": 30})  # through the admin API
        assert fleet.advance("5s") >= started + 5
        assert [e.what for e in fleet.events() if e.what.startswith("network_")] == ["network_down", "network_up", "network_restored"]
        fleet.apply("power_off")
        assert fleet.view("dut-0")["powered"] is False
        assert fleet.events("power_off", "dut-0")
    finally:
        fleet.close()
    assert not marked_processes("EDEN_TEST_MARK", mark)
    assert work is not None and not work.exists()
