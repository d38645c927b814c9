"""eden.fleet.Fleet and the eden_fleet fixture, on the real simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from eden.errors import InvalidInput
from eden.fleet import Fleet, FleetInputError, with_profile

ROOT = Path(__file__).resolve().parent.parent
SPEC: dict[str, Any] = {
    "profile": "nuc-class",
    "count": 3,
    "images": {"base": "13.4.0", "next": "13.5.0"},
    "config_items": {"timer.config.interval": 10, "timer.test.baseimage.update": 300},
}


def test_power_cut_in_the_test_window_rolls_back_while_the_others_commit(eden_fleet: Callable[..., Fleet]) -> None:
    fleet = eden_fleet(**SPEC)
    assert fleet.devices == ["nuc-class-0", "nuc-class-1", "nuc-class-2"]
    assert fleet.now == 0.0

    assert fleet.power_on() == fleet.devices
    assert fleet.wait_until({"device_state": "ONLINE", "attestation": "COMPLETE"}, within="5m")
    assert 0 < fleet.now < 300
    assert {fleet.view(d)["boot_reason"] for d in fleet.devices} == {"FIRST"}

    fleet.apply("baseos_update", image="next")
    victim = "nuc-class-1"
    fleet.wait_until({"current_partition": {"state": "inprogress", "version": "next"}}, within="10m", target=victim)
    assert fleet.view(victim)["baseos"]["status"] == "UPDATING"  # in its test window, not committed
    assert fleet.apply("power_cycle", victim, off_for="10s") == [victim]

    # nuc-class's NVMe counts power cycles: the power cut is reported as such, not as FALLBACK (§3, §7)
    fleet.wait_until({"boot_reason": "POWER_FAIL", "version": "base", "baseos_status": "FAILED"}, within="5m", target=victim)
    others = {"devices": ["nuc-class-0", "nuc-class-2"]}
    fleet.wait_until({"current_partition": {"state": "active", "version": "next"}, "baseos_status": "UPDATED"}, within="20m", target=others)

    view = fleet.view(victim)
    assert view["sw"][0] == {**view["sw"][0], "version": "13.4.0", "state": "active"}
    assert view["sw"][1]["state"] == "inprogress" and "power failure" in view["sw"][1]["err"]
    for dev in ("nuc-class-0", "nuc-class-2"):
        assert fleet.view(dev)["boot_reason"] == "UPDATE"
    assert fleet.metric("rollbacks") == 1
    assert fleet.metric("updates.committed") == 2
    assert {e.device for e in fleet.events("update_committed")} == {"nuc-class-0", "nuc-class-2"}
    assert fleet.metric("update.duration.count") == 2


def test_wait_until_times_out_with_the_observed_values(eden_fleet: Callable[..., Fleet]) -> None:
    fleet = eden_fleet(profile="qemu-x86_64", count=2)
    fleet.power_on("qemu-x86_64-0")
    with pytest.raises(AssertionError) as err:
        fleet.wait_until({"device_state": "ONLINE"}, within=120)
    text = str(err.value)
    assert "not met within 2m" in text and "device_state=ONLINE" in text
    assert '"satisfied": 1' in text and 'qemu-x86_64-1: {"device_state": null}' in text  # never powered
    assert fleet.now == pytest.approx(120.0)

    assert fleet.wait_until({"device_state": "ONLINE"}, within=30, at_least="50%")
    assert fleet.wait_until({"device_state": "REBOOTING"}, within="1m", check=False) is False
    assert fleet.now == pytest.approx(180.0)
    assert fleet.wait_until({"metric": {"name": "controller.requests", "min": 1}}, within=1)


def test_actions_are_validated_like_scenario_steps(eden_fleet: Callable[..., Fleet]) -> None:
    fleet = eden_fleet(**SPEC)
    with pytest.raises(FleetInputError, match="unknown image 'nope'") as err:
        fleet.apply("baseos_update", image="nope")
    assert isinstance(err.value, InvalidInput)  # the 'error' failure class, not a product failure
    assert "known images: base, next" in str(err.value)
    with pytest.raises(FleetInputError, match="before any 'baseos_update'"):
        fleet.apply("retry_update")
    with pytest.raises(FleetInputError, match="did you mean 'nuc-class-2'"):
        fleet.apply("power_on", "nuc-class-7")
    with pytest.warns(UserWarning, match="unknown config item 'timer.config.intervall'.*did you mean 'timer.config.interval'"):
        fleet.apply("set_config", args={"timer.config.intervall": 10})  # EVE ignores it: a warning (spec §6)
    with pytest.raises(FleetInputError, match="minimum is 5"):
        fleet.apply("set_config", args={"timer.config.interval": 1})
    with pytest.raises(FleetInputError, match=r"fleet.advance"):
        fleet.apply("wait")
    with pytest.raises(FleetInputError, match="did you mean"):
        fleet.metric("rollback")
    with pytest.raises(FleetInputError, match="ONLNE"):
        fleet.wait_until({"device_state": "ONLNE"}, within=10)
    assert fleet.now == 0.0  # nothing ran

    fleet.apply("set_config", args={"timer.config.interval": 20})
    assert fleet.select({"fraction": "34%"}) == fleet.select({"fraction": "34%"})
    assert len(fleet.select({"count": 2})) == 2


def test_a_fleet_from_a_scenario_file_uses_its_fleet_not_its_steps(eden_fleet: Callable[..., Fleet]) -> None:
    fleet = eden_fleet("scenarios/onboarding-smoke.yaml")
    assert fleet.devices == ["dut-0"] and fleet.seed == 1
    assert set(fleet.loaded.profiles) == {"qemu-x86_64"}
    assert fleet.advance("1m") == 60.0
    assert fleet.view("dut-0")["powered"] is False  # the file's power_on step did not run
    fleet.power_on()
    fleet.wait_until({"device_state": "ONLINE", "boot_reason": "FIRST"}, within="5m")
    with pytest.raises(KeyError, match="dut-0"):
        fleet.view("dut-1")


def test_background_faults_and_the_timeline(eden_fleet: Callable[..., Fleet]) -> None:
    fleet = eden_fleet(profile="gateway-x86", count=1, config_items={"timer.config.interval": 10})
    fleet.power_on()
    fleet.wait_until({"device_state": "ONLINE"}, within="5m")
    t0 = fleet.now
    fleet.apply("controller_outage", duration="2m")  # never blocks; restores itself later
    assert fleet.now == t0
    fleet.advance("3m")
    restored = [e for e in fleet.timeline if e.what == "controller_restored"]
    assert len(restored) == 1 and restored[0].t == pytest.approx(t0 + 120)
    fleet.apply("network_flap", ports=["eth0"], down="30s", up="30s", cycles=2)
    fleet.advance("3m")
    downs = [e.t for e in fleet.events("network_down")]
    assert len(downs) == 2 and downs[1] - downs[0] == pytest.approx(60)


def test_same_seed_same_run_and_profile_substitution(tmp_path: Path) -> None:
    def boot(seed: int) -> float:
        with Fleet.from_spec("rpi4-class", 2, seed=seed, workdir=tmp_path / f"s{seed}") as fleet:
            fleet.power_on()
            fleet.wait_until({"device_state": "ONLINE"}, within="5m")
            return fleet.metric("boot.time.max")

    assert boot(3) == boot(3)

    with Fleet.from_file(ROOT / "scenarios/baseos-update.yaml", profile="nuc-class") as fleet:
        assert set(fleet.loaded.profiles) == {"nuc-class"} and fleet.devices == ["dut-0"]
        workdir = fleet.workdir
        assert workdir.is_dir()
    assert not workdir.exists() and fleet.closed

    doc = {"fleet": [{"profile": "a"}, {"profile": "b", "group": "g"}], "images": {"x": {"version": "1", "variants": [{"profile": "a", "fraction": 0.1}]}}}
    out = with_profile(doc, "c")
    assert out["fleet"] == [{"profile": "c", "group": "a"}, {"profile": "c", "group": "g"}]
    assert out["images"]["x"]["variants"][0]["profile"] == "c"
    assert doc["fleet"][0] == {"profile": "a"}  # the input is not changed
