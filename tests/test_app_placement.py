"""App placement: the profiles' PhysicalIO inventory, domainmgr's adapter and CPU-pinning admission
(P:cmd/domainmgr/domainmgr.go ``doActivate``/``reserveAdapters``/``assignCPUs``,
P:cpuallocator/cpuallocator.go, P:types/assignableadapters.go ``LookupIoBundleAny``), the
scenario on sim and its refusal elsewhere."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from eden_subprocess import env, run_eden
from sim_run import run_sim
from test_node_rules import MiB, Driver, online

from eden.errors import InvalidInput
from eden.profiles import DEFAULT_PROFILES_DIR, OverrideError, apply_overrides, load_profile, load_profiles
from eden.run import load_for_backend
from eden.scenario.load import load_scenario
from eve import placement
from eve.enums import ZSwState
from eve.node import Node
from eve.placement import IoMember, PhyIoMemberUsage as U, PhyIoType as T

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "app-placement.yaml"
BASE = (DEFAULT_PROFILES_DIR / "qemu-x86_64.yaml").read_text()

IO = (
    IoMember(T.PhyIoNetEth, "eth0", "eth0", "eth0", U.PhyIoUsageMgmtAndApps, ifname="eth0"),
    IoMember(T.PhyIoNetWLAN, "wlan0", "wlan0", "group2", U.PhyIoUsageShared, ifname="wlan0"),
    IoMember(T.PhyIoUSBController, "USB", "USB", "group2", U.PhyIoUsageDedicated),
    IoMember(T.PhyIoHDMI, "VGA", "gpu", "group1", U.PhyIoUsageDedicated),
    IoMember(T.PhyIoAudio, "Audio", "Audio", "group1", U.PhyIoUsageDedicated),
    IoMember(T.PhyIoCOM, "COM1", "COM1"),
)


def _uuid(name: str) -> str:
    return f"uuid-of-{name}"


def _reserve(names: list[str], *, app: str = "a", used: dict[str, str] | None = None, ports: tuple[str, ...] = ("eth0", "wlan0"),
             halting: frozenset[str] = frozenset()) -> tuple[dict[str, str], placement.Refusal | None]:
    wanted = [(placement.adapter_type(IO, n, None), n) for n in names]
    return placement.reserve_adapters(IO, wanted, app, used or {}, ports, lambda o: o in halting, _uuid)


# -- profiles ------------------------------------------------------------------------------------
def test_every_shipped_profile_has_an_inventory_whose_nics_are_its_network_entries() -> None:
    for name, profile in load_profiles().items():
        assert profile.physical_io, name
        by_ifname = {io.phyaddrs.ifname: io for io in profile.physical_io if io.phyaddrs.ifname}
        for nic in profile.nics:
            assert by_ifname[nic.name].ptype.name.startswith("PhyIoNet"), (name, nic.name)
        assert 1 <= profile.eve_max_vcpus < profile.cores


def test_a_bad_usage_value_is_located(tmp_path: Path) -> None:
    text = BASE.replace("usage: PhyIoUsageDedicated", "usage: PhyIoUsageDedicatd")
    path = tmp_path / "qemu-x86_64.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as info:
        load_profile(path)
    (issue,) = info.value.issues
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "PhyIoUsageDedicatd" in row)
    assert issue.line == line and issue.message.startswith("'PhyIoUsageDedicatd' is not a PhyIoMemberUsage name")
    assert issue.hint == "did you mean 'PhyIoUsageDedicated'?"
    assert issue.col == text.splitlines()[line - 1].index("PhyIoUsageDedicatd") + 1


def test_a_nic_without_a_physical_io_is_located_and_validate_exits_2(tmp_path: Path) -> None:
    text = BASE.replace("phyaddrs: {ifname: eth1,", "phyaddrs: {ifname: eth9,")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "qemu-x86_64.yaml").write_text(text)
    with pytest.raises(InvalidInput) as info:
        load_profile(profiles / "qemu-x86_64.yaml")
    (issue,) = info.value.issues
    rows = text.splitlines()
    line = next(i for i, row in enumerate(rows, 1) if row.strip() == "- name: eth1")
    assert (issue.line, issue.col) == (line, rows[line - 1].index("eth1") + 1)
    assert issue.message == "NIC 'eth1' has no PhysicalIO with phyaddrs.ifname 'eth1'"
    shutil.copy(SCENARIO, tmp_path / "s.yaml")
    done = run_eden("validate", "s.yaml", cwd=tmp_path, env=env(EDEN_PROFILES_DIR=str(profiles)))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"qemu-x86_64.yaml:{line}:{issue.col}:" in done.stdout + done.stderr


def test_an_override_that_adds_a_nic_adds_an_unassignable_entry_and_a_wrong_kind_is_refused() -> None:
    base = load_profiles()["rpi4-class"]
    changed = apply_overrides(base, {"nics": [{"name": "eth0", "kind": "ethernet"}, {"name": "eth1", "kind": "ethernet"}]})
    assert changed.physical_io is not None and base.physical_io is not None
    added = [io for io in changed.physical_io if io.phylabel == "eth1"]
    assert [(io.ptype.name, io.assigngrp, io.phyaddrs.ifname) for io in added] == [("PhyIoNetEth", "", "eth1")]
    assert len(changed.physical_io) == len(base.physical_io) + 1
    with pytest.raises(OverrideError) as info:
        apply_overrides(base, {"nics": [{"name": "eth0", "kind": "ethernet"}, {"name": "eth9", "kind": "ethernet"}],
                               "physical_io": [io.model_dump() for io in base.physical_io]})
    assert [p.path for p in info.value.problems] == [("nics", 1, "name")]
    base = load_profiles()["qemu-x86_64"]
    with pytest.raises(OverrideError, match="is wifi but its PhysicalIO 'eth1' is PhyIoNetEth"):
        apply_overrides(base, {"nics": [{"name": "eth0", "kind": "ethernet"}, {"name": "eth1", "kind": "wifi"}]})


# -- the rules -----------------------------------------------------------------------------------
def test_a_name_is_a_group_a_phylabel_or_a_logical_label_and_brings_its_whole_group() -> None:
    assert [m.phylabel for m in placement.lookup_any(IO, "GROUP1")] == ["VGA", "Audio"]
    assert [m.phylabel for m in placement.lookup_any(IO, "gpu")] == ["VGA", "Audio"]
    assert [m.phylabel for m in placement.lookup_any(IO, "COM1")] == ["COM1"]
    assert placement.lookup_any(IO, "nothing") == []
    taken, refusal = _reserve(["VGA"])
    assert refusal is None and taken == {"VGA": "a", "Audio": "a"}


def test_an_adapter_held_by_another_app_is_refused_with_its_uuid_and_retried() -> None:
    taken, refusal = _reserve(["Audio"], used={"VGA": "cam"})
    assert taken == {} and refusal is not None
    assert refusal.error == f"adapter {int(T.PhyIoAudio)} Audio used by {_uuid('cam')} "
    assert (refusal.severity, refusal.retry) == ("WARNING", True)
    _, halting = _reserve(["Audio"], used={"VGA": "cam"}, halting=frozenset({"cam"}))
    assert halting is not None and halting.error.endswith("(which is halting)") and halting.severity == "NOTICE"
    assert _reserve(["Audio"], app="cam", used={"VGA": "cam"})[1] is None  # its own reservation


def test_a_group_with_a_port_in_it_is_refused_as_a_unit() -> None:
    """USB shares group2 with wlan0, a port of EVE's: the whole group is a port."""
    _, refusal = _reserve(["USB"])
    assert refusal is not None
    assert refusal.error == f"adapter {int(T.PhyIoUSBController)} USB phylabel wlan0 is (part of) a zedrouter port"
    assert _reserve(["USB"], ports=("eth0",))[1] is None  # wlan0 not a port: the group is free


def test_an_adapter_without_a_group_and_an_unknown_one_are_refused() -> None:
    _, refusal = _reserve(["COM1"])
    assert refusal is not None and refusal.error == f"adapter {int(T.PhyIoCOM)} COM1 phylabel COM1 is not assignable"
    _, refusal = _reserve(["eth0"])
    assert refusal is not None and refusal.error.endswith("phylabel eth0 is (part of) a zedrouter port")
    _, refusal = _reserve(["USB3"])
    assert refusal is not None and refusal.error == "unknown adapter 0 USB3"


def test_a_refusal_reserves_nothing_even_after_an_earlier_adapter_fitted() -> None:
    taken, refusal = _reserve(["VGA", "COM1"])
    assert taken == {} and refusal is not None and "COM1" in refusal.error


def test_cpus_are_the_lowest_free_above_eves_and_a_shortage_is_eves_text() -> None:
    cpus, refusal = placement.allocate_cpus(8, 1, [], 3)
    assert (cpus, refusal) == ([1, 2, 3], None)
    cpus, refusal = placement.allocate_cpus(8, 1, [1, 3], 3)
    assert cpus == [2, 4, 5]
    cpus, refusal = placement.allocate_cpus(4, 1, [1, 2], 2)
    assert cpus == [] and refusal is not None and not refusal.retry
    assert refusal.error == "looking for 2 CPUs only found 1 reserved for EVE 1 total 4"


# -- the node ------------------------------------------------------------------------------------
def _node_driver(**kw: Any) -> Driver:
    from dataclasses import replace

    import numpy as np
    from test_node_rules import make_node

    node = make_node(cores=4)
    params = replace(node.p, io=IO, app_uuid=_uuid, **kw)
    return Driver(Node(params, "base", np.random.default_rng(1)))


def _app(**extra: Any) -> dict[str, Any]:
    return {"kind": "container", "cpus": 2, "memory": 128 * MiB, "size": 10 * MiB, "activate": True, **extra}


def _info(drv: Driver, name: str) -> dict[str, Any]:
    return drv.node.zedmanager.app_info(name) if name in drv.node.zedmanager.apps else {}


def test_the_node_releases_adapters_and_cpus_when_an_app_goes() -> None:
    drv = online(_node_driver())
    drv.ctrl.set(apps={"a": _app(adapters=[{"name": "gpu", "type": None}], pin_cpus=True)})
    drv.run_until(lambda: _info(drv, "a").get("state") == "RUNNING")
    assert _info(drv, "a")["adapters"] == ["Audio", "VGA"] and drv.node.zedmanager.pinned == {"a": [1, 2]}
    drv.ctrl.set(apps={"b": _app(adapters=[{"name": "Audio", "type": None}], pin_cpus=True)})
    drv.run_until(lambda: "a" not in drv.node.zedmanager.apps)
    assert drv.node.zedmanager.pinned == {} and drv.node.zedmanager.adapters == {}
    drv.run_until(lambda: _info(drv, "b").get("state") == "RUNNING", limit=120)
    assert drv.node.zedmanager.pinned == {"b": [1, 2]}


def test_a_cpu_refusal_stays_and_an_adapter_refusal_is_retried() -> None:
    drv = online(_node_driver())
    drv.ctrl.set(apps={"a": _app(adapters=[{"name": "VGA", "type": None}], pin_cpus=True)})
    drv.run_until(lambda: _info(drv, "a").get("state") == "RUNNING")
    apps = {**drv.ctrl.config["apps"], "b": _app(adapters=[{"name": "VGA", "type": None}], cpus=1),
            "c": _app(pin_cpus=True)}
    drv.ctrl.set(apps=apps)
    drv.run_until(lambda: bool(_info(drv, "b").get("err")) and bool(_info(drv, "c").get("err")))
    assert _info(drv, "b")["state"] == _info(drv, "c")["state"] == ZSwState.INSTALLED.name
    assert _info(drv, "c")["err"] == "looking for 2 CPUs only found 1 reserved for EVE 1 total 4"
    assert drv.node.zedmanager.pinned == {"a": [1, 2]}  # c's failed try holds nothing
    drv.ctrl.set(apps={k: v for k, v in apps.items() if k != "a"})
    drv.run_until(lambda: _info(drv, "b").get("state") == "RUNNING", limit=120)
    drv.run_for(120)
    assert _info(drv, "c")["state"] == ZSwState.INSTALLED.name and "looking for 2 CPUs" in _info(drv, "c")["err"]


# -- the scenario --------------------------------------------------------------------------------
def test_the_scenario_passes_on_sim(tmp_path: Path) -> None:
    summary, _events = run_sim(SCENARIO, tmp_path / "out")
    assert summary["verdict"] == "passed", summary


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    text = SCENARIO.read_text().replace(
        'app: {name: recorder, state: RUNNING, error: "", adapters: [USB]}', 'app: {name: recorder, state: RUNNING, error: "", adapters: [COM1]}'
    )
    assert "adapters: [COM1]" in text
    (tmp_path / "wrong.yaml").write_text(text)
    summary, _events = run_sim(tmp_path / "wrong.yaml", tmp_path / "out")
    assert summary["verdict"] == "failed"


def test_refused_on_emulated_with_the_reason() -> None:
    with pytest.raises(InvalidInput) as info:
        load_for_backend(SCENARIO, "emulated")
    messages = {(i.line, i.message) for i in info.value.issues}
    rows = SCENARIO.read_text().splitlines()
    cam = next(i for i, row in enumerate(rows, 1) if "deploy_app: {name: cam" in row)
    assert (cam, "step 3 'deploy_app' cam: 'adapters' is simulated only; backend 'emulated' does not carry adapters "
            "or CPU pinning on the wire yet") in messages
    assert any("'pin_cpus' is simulated only" in m for _l, m in messages)
    assert any("the app condition's 'adapters' is observed on sim only" in m for _l, m in messages)
    assert load_scenario(SCENARIO) is not None  # valid as such (sim)


def test_a_device_with_no_core_beyond_eves_pins_nothing() -> None:
    """One core, kept for EVE (eve_max_vcpus=1): the profile is valid, and every pin is refused
    with the allocator's error."""
    from eve.placement import allocate_cpus

    cpus, refusal = allocate_cpus(1, 1, [], 1)
    assert cpus == [] and refusal is not None
    assert "looking for 1 CPUs only found 0 reserved for EVE 1 total 1" in str(refusal)
