"""Controller-pushed network configs (spec §4, P:dpcmanager/dpc.go, P:dpcmanager/verify.go): a new
DPC goes to index 0 and is tested at once; one that fails falls back to the last working DPC.

The node tests drive a bare ``Node`` with the event loop and fake controller of
tests/test_node_rules.py. The scenario tests load and run ``set_network`` and the ``dpc`` condition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eden.errors import InvalidInput
from eden.profiles import DEFAULT_PROFILES_DIR, HwProfile, load_profiles
from eden.scenario import load_scenario
from eve import dpc as dpcl
from eve.dpc import Dpc
from eve.enums import ConfigGetStatus, DPCState
from test_node_rules import TIMEOUT, Driver, make_node, online

REPO = Path(__file__).resolve().parent.parent


def _net(version: int, mgmt: list[str], broken: bool = False) -> dict[str, Any]:
    return {"version": version, "mgmt": mgmt, "broken": broken}


def _online() -> Driver:
    drv = Driver(make_node())
    drv.ctrl.item("timer.config.interval", 10)
    return online(drv)


def _push(drv: Driver, net: dict[str, Any]) -> float:
    """Push a network config and run until the device turned it into a DPC; returns that time."""
    n = len(drv.notes_of("dpc_new"))
    drv.ctrl.set(network=net)
    return drv.run_until(lambda: len(drv.notes_of("dpc_new")) > n, limit=60)


def _broken_fallback() -> tuple[Driver, float]:
    """A working eth1 config at index 0, then a broken eth0 config on top of it."""
    drv = _online()
    _push(drv, _net(1, ["eth1"]))
    drv.run_until(lambda: drv.node.nim.reverify is None)
    return drv, _push(drv, _net(2, ["eth0"], broken=True))


# ------------------------------------------------------------------------------------- node rules --
def test_a_pushed_network_config_becomes_dpc_0_and_is_tested_at_once() -> None:
    """§4 doAddDPC: the new DPC goes to index 0 and the verification starts at once over its ports;
    once it works compressDPCL drops the older working one (only the most recent is kept)."""
    drv = _online()
    assert drv.node.nim.dpc_list() == [("zedagent", ("eth0", "eth1"))]  # the profile's bootstrap DPC
    t = _push(drv, _net(1, ["eth1"]))
    pings = drv.sent("ping", since=t)
    assert pings and pings[0][0] == t and pings[0][1].ports == ("eth1",)
    drv.run_until(lambda: drv.node.nim.reverify is None, limit=5)
    assert drv.node.nim.dpc_index == 0 and drv.node.nim.dpc_state == DPCState.SUCCESS
    assert drv.node.nim.dpc_list() == [("zedagent", ("eth1",))]
    drv.run_for(30)
    assert drv.sent("config", since=t + 1)[-1][1].ports == ("eth1",)
    assert drv.ctrl.info["dpc_ports"] == ["eth1"] and drv.ctrl.info["dpc_state"] == "SUCCESS"


def test_a_broken_network_config_fails_and_falls_back_to_the_last_working_dpc() -> None:
    """§4 runVerify: the broken DPC at index 0 fails its test (ping timeout, it has IP and DNS:
    FailWithIPAndDNS) and the walk moves on to index 1, the last working DPC, which passes; the
    device stays online and reports currentIndex 1."""
    drv, t = _broken_fallback()
    assert drv.node.nim.dpc_index == 0 and drv.node.nim.reverify == 0  # the DPC under test is current
    fail = drv.run_until(lambda: drv.has_note("dpc_fail"), limit=60)
    assert fail == pytest.approx(t + TIMEOUT)
    assert drv.notes_of("dpc_fail")[0][1] == {"index": 0, "state": "FAIL_WITH_IP_AND_DNS"}
    assert drv.sent("ping", since=fail)[0][1].ports == ("eth1",)
    drv.run_until(lambda: drv.node.nim.reverify is None, limit=5)
    assert drv.node.nim.dpc_index == 1 and drv.node.nim.dpc_state == DPCState.SUCCESS
    assert [d.ports for d in drv.node.persist.dpcs] == [("eth0",), ("eth1",)]
    assert drv.node.persist.dpcs[0].state == DPCState.FAIL_WITH_IP_AND_DNS
    assert drv.node.persist.dpcs[0].last_error == "no route to the controller over eth0"
    drv.run_for(30)
    assert drv.node.zedagent.config_status == ConfigGetStatus.SUCCESS
    assert drv.ctrl.info["dpc_index"] == 1 and drv.ctrl.info["dpc_ports"] == ["eth1"]


def test_testbetter_retries_the_broken_dpc_every_600s_and_returns_to_the_working_one() -> None:
    """§4 dpcTestBetterTimer: away from index 0, restartVerify from index 0 every
    timer.port.testbetterinterval (600 s); index 0 failed more than 5 min ago, so it is tested."""
    drv, _t = _broken_fallback()
    drv.run_until(lambda: drv.node.nim.reverify is None and drv.node.nim.dpc_index == 1, limit=60)
    settled = drv.now
    back_to_0 = drv.run_until(lambda: drv.node.nim.dpc_index == 0, limit=700)
    assert back_to_0 == pytest.approx(settled + 600.0)
    drv.run_until(lambda: drv.node.nim.dpc_index == 1, limit=60)
    assert drv.now == pytest.approx(back_to_0 + TIMEOUT)
    assert len(drv.notes_of("dpc_fail")) == 2


def test_a_dpc_failed_in_the_last_5_minutes_is_skipped_after_a_reboot() -> None:
    """§4 IsDPCTestable / ingestDPCList: the persisted list is verified again at boot, skipping a
    DPC whose last failure is under 5 min old; so the first request goes out on the working one."""
    drv, _t = _broken_fallback()
    drv.run_until(lambda: drv.node.nim.reverify is None, limit=60)
    drv.power_off()
    drv.run_for(5)
    boot = drv.now
    drv.power_on()
    drv.run_until(lambda: drv.node.phase == "running", limit=120)
    assert drv.node.nim.dpc_index == 1
    assert drv.sent("certs", since=boot)[0][1].ports == ("eth1",)
    assert len(drv.notes_of("dpc_fail")) == 1  # not tested again


def test_after_5_minutes_a_reboot_tests_index_0_first() -> None:
    drv, _t = _broken_fallback()
    drv.run_until(lambda: drv.node.nim.reverify is None, limit=60)
    drv.power_off()
    drv.run_for(dpcl.MIN_TIME_SINCE_FAILURE)
    drv.power_on()
    drv.run_until(lambda: len(drv.notes_of("dpc_fail")) == 2, limit=120)
    drv.run_until(lambda: drv.node.nim.reverify is None, limit=60)
    assert drv.node.nim.dpc_index == 1 and drv.node.nim.dpc_state == DPCState.SUCCESS


def test_a_second_broken_config_falls_back_past_the_first_to_the_working_one() -> None:
    """§4: the second broken DPC fails, the first broken one (failed under 5 min ago) is skipped,
    and compressDPCL then drops it: index 0, the current one and the last working one remain."""
    drv, _t = _broken_fallback()
    drv.run_until(lambda: drv.node.nim.reverify is None, limit=60)
    _push(drv, _net(3, ["eth1"], broken=True))
    drv.run_until(lambda: len(drv.notes_of("dpc_fail")) == 2, limit=60)
    drv.run_until(lambda: drv.node.nim.reverify is None, limit=60)
    assert [(d.ports, d.broken) for d in drv.node.persist.dpcs] == [(("eth1",), True), (("eth1",), False)]
    assert drv.node.nim.dpc_index == 1 and drv.node.nim.dpc_state == DPCState.SUCCESS
    assert [d["index"] for _t, d in drv.notes_of("dpc_fail")] == [0, 0]


def test_when_every_pushed_dpc_fails_the_device_parks_at_index_0_and_recovers() -> None:
    """§4 parkAtManualOrHighestPriority: the working DPC's link goes down too; two failed periodic
    tests restart the walk, nothing works, the device parks at index 0. Once the link is back the
    next two failed tests (index 0 is the broken one) walk again and land on index 1."""
    drv, _t = _broken_fallback()
    drv.run_until(lambda: drv.node.nim.reverify is None, limit=60)
    drv.ctrl.port_down = {"eth0", "eth1"}
    drv.run_until(lambda: drv.node.nim.dpc_index == 0 and drv.node.nim.reverify is None and len(drv.notes_of("dpc_fail")) >= 3,
                  limit=1300)
    assert drv.node.nim.dpc_state in (DPCState.FAIL, DPCState.FAIL_WITH_IP_AND_DNS)
    drv.ctrl.port_down = set()
    drv.run_until(lambda: drv.node.nim.dpc_index == 1 and drv.node.nim.dpc_state == DPCState.SUCCESS, limit=2 * 300 + 60)


def test_a_dpc_whose_ports_are_missing_waits_2x_testduration_then_fails() -> None:
    """§4 verify.go waitForIfRetries: a missing interface is IntfWait, checked again every
    timer.port.testduration (30 s), and the DPC fails once 2 x 30 s have passed."""
    drv = _online()
    t = _push(drv, _net(1, ["wwan9"]))
    assert drv.node.nim.dpc_state == DPCState.INTF_WAIT and drv.node.nim.dpc_index == 0
    fail = drv.run_until(lambda: drv.has_note("dpc_fail"), limit=120)
    assert fail == pytest.approx(t + 60.0)
    assert drv.notes_of("dpc_fail")[0][1] == {"index": 0, "state": "FAIL"}
    assert drv.node.persist.dpcs[0].last_error == "missing interface wwan9"
    drv.run_until(lambda: drv.node.nim.reverify is None, limit=30)
    assert drv.node.nim.dpc_index == 1 and drv.node.nim.dpc_list()[1] == ("zedagent", ("eth0", "eth1"))


def test_an_unchanged_network_config_is_not_tested_again() -> None:
    """§4 doAddDPC: zedagent publishes a DPC only for a changed network config; other config
    changes leave the DPC list alone."""
    drv = _online()
    t = _push(drv, _net(1, ["eth1"]))
    drv.run_until(lambda: drv.node.nim.reverify is None)
    drv.ctrl.item("timer.metric.interval", 120)
    drv.run_for(60)
    assert drv.node.items.get("timer.metric.interval") == 120
    assert len(drv.notes_of("dpc_new")) == 1
    assert [s for s in drv.sent("ping", since=t + 1)] == []


def test_compress_keeps_index_0_the_current_and_the_most_recent_working() -> None:
    """§4 compressDPCL on a list of controller DPCs."""
    old = Dpc("zedagent", ("eth0",), prio=1, last_succeeded=5.0)
    mid = Dpc("zedagent", ("eth1",), prio=2, last_succeeded=8.0)
    new = Dpc("zedagent", ("eth0",), prio=3, broken=True, last_failed=9.0)
    kept, cur = dpcl.compress([new, mid, old], current=2)
    assert kept == [new, mid, old] and cur == 2  # old is current
    kept, cur = dpcl.compress([new, mid, old], current=1)
    assert kept == [new, mid] and cur == 1
    assert dpcl.next_testable(kept, 0, now=100.0) == 1  # new failed 91 s ago
    assert dpcl.next_testable(kept, 0, now=9.0 + dpcl.MIN_TIME_SINCE_FAILURE) == 0


def test_an_equal_config_moves_to_the_top_with_its_results() -> None:
    """§4 updateDPCListAndPublish: MostlyEqual config with a new TimePriority keeps its results."""
    a = Dpc("zedagent", ("eth0",), prio=1, last_succeeded=5.0, state=DPCState.SUCCESS)
    b = Dpc("zedagent", ("eth1",), prio=2, last_failed=6.0, state=DPCState.FAIL)
    dpcs = [b, a]
    again = Dpc("zedagent", ("eth0",), prio=3)
    assert dpcl.insert(dpcs, again) == 0
    assert dpcs == [again, b] and again.last_succeeded == 5.0 and again.state == DPCState.SUCCESS


# ---------------------------------------------------------------------------------- scenario level --
@pytest.fixture(scope="module")
def profiles() -> dict[str, HwProfile]:
    return load_profiles(DEFAULT_PROFILES_DIR)


SCENARIO = """\
name: dpc
fleet:
  - profile: gateway-x86
images:
  base: {version: 1.0}
steps:
  - power_on: {}
  - set_network: {mgmt: [eth1], broken: true}
  - expect: {dpc: {index: 1, state: SUCCESS}, within: 3m}
"""


def _backend(name: str) -> dict[str, object]:
    from eden.backends.registry import backend_capabilities

    caps, max_devices = backend_capabilities(name)
    return {"backend": name, "capabilities": caps, "max_devices": max_devices}


def _issues(tmp_path: Path, text: str, profiles: dict[str, HwProfile], backend: str) -> list[str]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as info:
        load_scenario(path, profiles=profiles, **_backend(backend))  # type: ignore[arg-type]
    return [f"{i.line}:{i.col} {i.message}" for i in info.value.issues]


def test_set_network_loads_on_sim(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    loaded = load_scenario(path, profiles=profiles, **_backend("sim"))  # type: ignore[arg-type]
    assert loaded.scenario.steps[1].action == "set_network"


@pytest.mark.parametrize("backend", ["emulated", "qemu"])
def test_set_network_and_dpc_state_are_refused_where_the_wire_cannot_carry_them(
    tmp_path: Path, profiles: dict[str, HwProfile], backend: str
) -> None:
    issues = _issues(tmp_path, SCENARIO, profiles, backend)
    assert issues == [
        f"8:5 step 2 'set_network' needs capability 'netconfig', which backend '{backend}' does not have",
        f"9:37 backend '{backend}' cannot observe the DPC state: its devices report only the DPC index",
    ]


def test_dpc_index_alone_is_accepted_on_emulated(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = SCENARIO.replace("  - set_network: {mgmt: [eth1], broken: true}\n", "").replace(
        "{index: 1, state: SUCCESS}", "{index: 0}"
    )
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert load_scenario(path, profiles=profiles, **_backend("emulated")).scenario  # type: ignore[arg-type]


def test_set_network_names_ports_of_the_targeted_devices(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = SCENARIO.replace("mgmt: [eth1]", "mgmt: [eht1]")
    assert _issues(tmp_path, text, profiles, "sim") == ["8:26 no targeted device has a port 'eht1'"]


def test_set_network_names_each_port_once(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = SCENARIO.replace("mgmt: [eth1]", "mgmt: [eth1, eth0, eth1]")
    (issue,) = _issues(tmp_path, text, profiles, "sim")
    assert issue.startswith("8:") and "'mgmt' names eth1 more than once" in issue


def test_an_empty_dpc_condition_is_an_error(tmp_path: Path, profiles: dict[str, HwProfile]) -> None:
    text = SCENARIO.replace("{index: 1, state: SUCCESS}", "{}")
    (issue,) = _issues(tmp_path, text, profiles, "sim")
    assert "a dpc condition needs 'index', 'state' or 'ports'" in issue


def test_the_rollback_scenario_fails_when_the_pushed_config_works(tmp_path: Path) -> None:
    """The shipped scenario passes on sim (tests/test_sim_scenarios.py); its expectations are not
    vacuous: with a working second config the device stays at index 0 and the run fails."""
    from eden.run import execute, load_for_backend

    text = (REPO / "scenarios" / "network-config-rollback.yaml").read_text()
    old = "set_network: {mgmt: [eth0], broken: true}"
    assert text.count(old) == 1
    path = tmp_path / "variant.yaml"
    path.write_text(text.replace(old, "set_network: {mgmt: [eth0]}"))
    result = execute(load_for_backend(path, "sim"), backend_name="sim", out_dir=tmp_path / "out")
    assert result.verdict == "failed" and result.exit_code == 1
