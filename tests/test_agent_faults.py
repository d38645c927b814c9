"""The agent's fault inbox (eden/agent/faults.py): what it reads, what it refuses, and that a
fault it reads is the node input the simulator calls for the same step."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from eden.agent.driver import AgentDriver, PortUrls
from eden.agent.faults import MAX_LINE, Fault, FaultInbox, node_input, parse_fault
from eden.agent.platform import NoPlatform
from eden.agent.spec import AgentSpec
from eden.agent.state import StateDir
from eden.agent.transport import DeviceLink, Transport
from eden.conditions import DeviceMatcher, FromPoint
from eden.scenario.model import Condition
from eden.wire import pki
from eve.vocab import Phase
from until import until

GOOD = {"serial": "flt-1", "profile": "qemu-x86_64", "image": "base", "images": {"base": {"version": "13.4.0"}}, "boot_time": 1.0}


def test_the_inbox_reads_only_what_was_appended_after_it_was_opened(tmp_path: Path) -> None:
    path = tmp_path / "faults"
    path.write_text(Fault(action="hang").line())  # sent to an earlier boot
    inbox = FaultInbox(path)
    assert inbox.read() == ([], [])
    with path.open("a") as f:
        f.write(Fault(action="crash", kind="oom", agent="nim").line())
        f.write('{"action": "hang", "agent": "zed')  # half a line: read once it is whole
    faults, refused = inbox.read()
    assert faults == [Fault(action="crash", kind="oom", agent="nim")] and refused == []
    with path.open("a") as f:
        f.write('agent"}\n')
    assert inbox.read() == ([Fault(action="hang", agent="zedagent")], [])
    path.write_text(Fault(action="hang", agent="nodeagent").line())  # replaced: shorter, all new
    assert inbox.read() == ([Fault(action="hang", agent="nodeagent")], [])


def test_the_inbox_refuses_what_is_not_a_fault_and_reads_on(tmp_path: Path) -> None:
    path = tmp_path / "faults"
    inbox = FaultInbox(path)  # absent: nothing yet
    assert inbox.read() == ([], [])
    lines = ["not json", '{"action": "reboot"}', '{"action": "crash"}', '{"action": "hang", "extra": 1}',
             json.dumps({"action": "hang", "agent": "x" * MAX_LINE}), Fault(action="hang").line().strip()]
    path.write_text("\n".join(lines) + "\n")
    faults, refused = inbox.read()
    assert faults == [Fault(action="hang")]
    assert len(refused) == 5 and all(r.why for r in refused)
    assert any("longer than" in r.why for r in refused) and any("kind" in r.why for r in refused)
    assert all(len(r.line) <= 80 for r in refused)


def test_an_endless_line_is_dropped_in_bounded_pieces(tmp_path: Path) -> None:
    path = tmp_path / "faults"
    inbox = FaultInbox(path)
    path.write_bytes(b"x" * (3 * 64 * 1024))  # no newline, ever: every read is bounded
    seen = 0
    for _ in range(4):
        faults, refused = inbox.read()
        assert faults == []
        seen += len(refused)
    assert seen >= 2


@pytest.mark.parametrize(("fault", "method", "args"), [
    (Fault(action="hang", agent="nim"), "hang", ("nim",)),
    (Fault(action="crash", kind="kernel"), "kernel_panic", ()),
    (Fault(action="crash", kind="oom"), "oom", ("zedagent",)),
    (Fault(action="crash", kind="fatal", agent="nim"), "agent_fatal", ("nim",)),
    (Fault(action="crash", kind="agent_exit"), "agent_exit", ("zedagent",)),
])
def test_each_fault_is_one_node_input(fault: Fault, method: str, args: tuple[str, ...]) -> None:
    assert node_input(fault) == (method, args)
    assert parse_fault(fault.line()) == fault


def test_a_running_agent_takes_a_fault_from_its_inbox_and_the_model_acts_on_it(tmp_path: Path) -> None:
    """hang: the watchdog learns it (and zedagent stops); agent_exit: the watchdog resets the device
    with WATCHDOG_PID at its next 1 s check (spec §7), as on the simulator."""
    spec = AgentSpec.model_validate(GOOD)
    events: list[dict[str, Any]] = []
    faults = tmp_path / "faults"
    state = StateDir(tmp_path / spec.serial)
    state.init(spec)

    async def scenario() -> str | None:
        async with Transport(pki.create_root_ca().cert_pem) as tr:
            link = DeviceLink(device=state.device_identity(), onboard=pki.create_onboarding())
            drv = AgentDriver(spec=spec, params=spec.node_params(), state=state, transport=tr, link=link, urls=PortUrls(),
                              events=lambda dev, what, data: events.append({"what": what, **dict(data)}), faults_file=faults)
            drv.platform = NoPlatform()
            drv.start()
            node = drv.node
            assert node is not None
            await until(lambda: node.phase == Phase.RUNNING, 10)
            with faults.open("a") as f:
                f.write("garbage\n" + Fault(action="hang", agent="nim").line())
            await until(lambda: "nim" in node.watchdog.hung, 5)
            with faults.open("a") as f:
                f.write(Fault(action="crash", kind="agent_exit").line())
            outcome = await asyncio.wait_for(drv.wait(), 10)
            return outcome.reason

    assert asyncio.run(scenario()) == "WATCHDOG_PID"
    whats = [e["what"] for e in events]
    assert whats.count("fault_injected") == 2 and whats.count("fault_refused") == 1
    assert [e for e in events if e["what"] == "fault_injected"][1] == {"what": "fault_injected", "action": "crash",
                                                                        "agent": "zedagent", "kind": "agent_exit"}


def test_from_counts_once_the_device_has_reported() -> None:
    """A device is onboarded a moment before its first info arrives: ``from: onboarded`` starts the
    invariant at the first report, not on a view with nothing to check."""
    point = DeviceMatcher(Condition.model_validate({"onboarded": True}), {})
    inner = DeviceMatcher(Condition.model_validate({"version": "13.4.0"}), {})
    watch = FromPoint(point, inner)
    assert watch({"id": "d", "reported": False, "onboarded": True})  # type: ignore[typeddict-item]
    assert not watch.passed
    view = {"id": "d", "reported": True, "onboarded": True, "sw": [{"version": "13.4.0", "state": "active"}]}
    assert watch(view)  # type: ignore[arg-type]
    assert watch.passed == {"d"}
    assert not watch({**view, "sw": [{"version": "13.5.0", "state": "active"}]})  # type: ignore[arg-type]
