"""Backend ``qemu``: one NIC per profile port, each on its own QEMU user network.

The command-line tests need no VM. The VM test boots the reference image with two NICs against a
real controller: DHCP on both ports, then eth0's cable pulled (QMP ``set_link`` on that NIC only)
while the agent keeps reaching the controller through eth1, then eth1 pulled as well (the device
goes silent: eth1 was really the path), then both back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import background_run
from scenario_texts import preamble

from eden.errors import EXIT_OK
from eden.qemu.machine import Machine, MachineConfig, Nic, port_host, port_nics, stable_mac

def _netdevs(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]


def _nic_devices(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-device" and "netdev=" in argv[i + 1]]


def test_one_user_network_per_port_each_on_its_own_subnet(tmp_path: Path) -> None:
    nics = port_nics(["eth0", "eth1", "wwan0"], "gateway-x86-gw-0")
    argv = Machine(MachineConfig(nics=nics), tmp_path / "vm").command("tcg")
    assert _netdevs(argv) == [
        "user,id=net0,net=10.0.2.0/24,host=10.0.2.2,hostfwd=tcp:127.0.0.1:0-:22",  # SSH on the first port only
        "user,id=net1,net=10.0.3.0/24,host=10.0.3.2",
        "user,id=net2,net=10.0.4.0/24,host=10.0.4.2",
    ]
    devices = _nic_devices(argv)
    assert [d.split(",")[1] for d in devices] == ["netdev=net0", "netdev=net1", "netdev=net2"]
    macs = [d.rsplit("mac=", 1)[1] for d in devices]
    assert len(set(macs)) == 3 and all(m.startswith("52:54:00:") for m in macs)
    assert [n.host for n in nics] == [port_host(i) for i in range(3)] == ["10.0.2.2", "10.0.3.2", "10.0.4.2"]


def test_macs_are_stable_per_device_and_port() -> None:
    a = port_nics(["eth0", "eth1"], "dev-1")
    assert a == port_nics(["eth0", "eth1"], "dev-1")  # the same every run
    b = port_nics(["eth0", "eth1"], "dev-2")
    assert {n.mac for n in a}.isdisjoint({n.mac for n in b})
    assert stable_mac("dev-1", "eth0") != stable_mac("dev-1", "eth1")


def test_default_is_one_nic_with_the_configured_mac(tmp_path: Path) -> None:
    vm = Machine(MachineConfig(mac="52:54:00:aa:bb:cc"), tmp_path / "vm")
    assert vm.nics == [Nic("eth0", 0, "52:54:00:aa:bb:cc", hostfwd=True)]
    assert _netdevs(vm.command("tcg")) == ["user,id=net0,net=10.0.2.0/24,host=10.0.2.2,hostfwd=tcp:127.0.0.1:0-:22"]
    assert _netdevs(Machine(MachineConfig(nic=False), tmp_path / "vm2").command("tcg")) == []


def test_ports_map_to_qmp_names(tmp_path: Path) -> None:
    vm = Machine(MachineConfig(nics=port_nics(["eth0", "eth1"], "d")), tmp_path / "vm")
    assert (vm.nic_id("eth1"), vm.nic_id("net1"), vm.nic_id("eth0")) == ("net1", "net1", "net0")
    assert vm.nic_id("wlan9") == "wlan9"  # unknown: QEMU refuses it, an InfrastructureError


def test_bad_port_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        port_nics(["eth0", "eth0"], "d")
    with pytest.raises(ValueError, match="unique"):
        port_nics([], "d")


def test_a_cable_pulled_while_off_is_kept_for_the_next_power_on(tmp_path: Path) -> None:
    import asyncio

    from eden.runtime.deadline import Deadline

    vm = Machine(MachineConfig(nics=port_nics(["eth0", "eth1"], "d")), tmp_path / "vm")
    asyncio.run(vm.set_link(False, Deadline(1.0), nic="eth1"))
    assert vm.links_down == {"net1"}
    asyncio.run(vm.set_link(True, Deadline(1.0), nic="eth1"))
    assert vm.links_down == set()


# ------------------------------------------------------------------------------------- real VM --
TWO_PORTS = preamble("qemu-two-ports", "eth0's cable pulled, the agent goes on through eth1; then eth1 too, then both back",
                     seed=3, group="dut") + """controller:
  config_items:
    timer.config.interval: 5
    timer.metric.interval: 10
steps:
  - power_on: {}
  - expect: {onboarded: true, device_state: ONLINE, attestation: COMPLETE, within: 4m}
  - network_down: {ports: [eth0]}
  - wait: 70s
  - expect: {name: still connected through eth1, connected: true}
  - network_down: {ports: [eth1]}
  - expect: {name: silent with both cables out, connected: false, within: 2m}
  - network_up: {}
  - expect: {name: back with both cables in, connected: true, within: 2m}
"""


def _events(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.qemu
@pytest.mark.background("two-ports", lane="qemu", scenario=TWO_PORTS, backend="qemu")
def test_two_nics_dhcp_and_the_agent_goes_on_through_eth1() -> None:
    """Four minutes of the device's timers: the run starts at collection, in the QEMU lane after the
    QEMU suite (tests/conftest.py): beside the suite's nine VMs its boots were too slow on two cores."""
    run = background_run("two-ports")
    rc, output = run.wait(timeout=900)
    assert rc == EXIT_OK, output[-3000:]
    out = run.out
    summary = json.loads((out / "summary.json").read_text())
    assert all(e["status"] == "passed" for e in summary["expectations"]), summary["expectations"]

    events = _events(out)
    # DHCP on both ports, each on its own subnet.
    leases = {e.get("if"): e.get("ip") for e in events if e["what"] == "boot_marker" and e.get("marker") == "network"}
    assert leases == {"eth0": "10.0.2.15/24", "eth1": "10.0.3.15/24"}, leases
    assert not [e for e in events if e["what"] == "boot_marker" and "error" in e], "a boot stage failed"
    # The QEMU command line has one user network per port.
    cmdline = (out / "logs" / "qemu-dut-0.cmdline").read_text()
    assert "id=net0,net=10.0.2.0/24" in cmdline and "id=net1,net=10.0.3.0/24" in cmdline
    downs = [e for e in events if e["source"] == "harness" and e["what"] == "network_down"]
    assert len(downs) == 2
    t_eth0, t_eth1 = downs[0]["t"], downs[1]["t"]
    t_up = next(e["t"] for e in events if e["source"] == "harness" and e["what"] == "network_up")
    # With eth0 out, the controller kept hearing from the device (the "still connected" expectation:
    # its last_seen stayed within the dormant time), and no config request failed: each one that
    # timed out on eth0 got its answer through eth1 (the agent's URL for eth1, from CONFIG port-urls).
    fails = [e for e in events if e["what"] == "config_fail" and t_eth0 + 20 < e["t"] < t_eth1]
    assert not fails, fails
    # With both out, the device's config requests failed on the network (no answer at all).
    both = [e for e in events if e["what"] == "config_fail" and t_eth1 < e["t"] < t_up]
    assert both and all(e.get("status") == 0 and e.get("error") in ("timeout", "network") for e in both), both
    assert run.leftovers() == []
