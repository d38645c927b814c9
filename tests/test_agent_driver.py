"""AgentDriver semantics (the simulator engine's, in real time) and the agent process lifecycle:
reset -> exit 75 -> restart, power cut (SIGKILL) -> POWER_FAIL or UNKNOWN by the disk (§7), SIGTERM -> clean power-off."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from eden_subprocess import argv as eden_argv
from eden.agent.driver import EXIT_REBOOT, AgentDriver, Outcome, PortUrls
from eden.agent.platform import NoPlatform
from eden.agent.spec import AgentSpec
from eden.agent.state import StateDir
from eden.agent.tpm import SoftTpm
from eden.agent.transport import DeviceLink, Transport
from eden.wire import pki
from eve.node import CancelAll, Send
from eve.vocab import Phase, Timer
from until import until

GOOD = {"serial": "drv-1", "profile": "qemu-x86_64", "image": "base", "images": {"base": {"version": "13.4.0"}}, "boot_time": 1.0}
CRASHING = {**GOOD, "serial": "drv-2", "images": {"base": {"version": "13.4.0", "behaviour": "crash-on-boot"}}}


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"https://127.0.0.1:{s.getsockname()[1]}"


def _driver(tmp: Path, spec: AgentSpec, events: list[dict[str, Any]], transport: Transport, urls: PortUrls) -> AgentDriver:
    state = StateDir(tmp / spec.serial)
    state.init(spec)
    link = DeviceLink(device=state.device_identity(), onboard=pki.create_onboarding())
    return AgentDriver(
        spec=spec, params=spec.node_params(), state=state, transport=transport, link=link, urls=urls,
        events=lambda dev, what, data: events.append({"device": dev, "what": what, "data": dict(data)}),
    )


def test_timers_move_cancel_and_stale_responses_are_dropped(tmp_path: Path) -> None:
    spec = AgentSpec.model_validate({**GOOD, "config_items": {"timer.dial.timeout": 1}})
    events: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with Transport(pki.create_root_ca().cert_pem) as tr:
            drv = _driver(tmp_path, spec, events, tr, PortUrls())  # no URL for any port: errors at once
            drv.start()
            node = drv.node
            assert node is not None and drv.book.pending() == {"booted"}
            fired: list[tuple[str, float, float]] = []
            answered: list[tuple[int, int, dict[str, Any]]] = []
            real_timer, real_response = node.on_timer, node.on_response
            node.on_timer = lambda name, now: (fired.append((name, now, time.time())), real_timer(name, now))[1]  # type: ignore[method-assign]
            node.on_response = lambda rid, st, body, now: (answered.append((rid, st, body)), real_response(rid, st, body, now))[1]  # type: ignore[method-assign]
            t0 = time.time()
            drv.set_timer("probe", t0 + 0.1)
            drv.set_timer("probe", t0 + 0.4)  # same name: moved, not added
            assert len([n for n in drv.book.pending() if n == "probe"]) == 1 and len(drv._handles) == 2
            await until(lambda: any(f[0] == "probe" for f in fired), 3)
            name, now, wall = next(f for f in fired if f[0] == "probe")
            assert now >= t0 + 0.4 and wall >= t0 + 0.4
            # a request in flight when CancelAll comes (a reset or power cut) is never answered
            drv._call(lambda: [Send("ping", 9999, {}, ("eth0",))])
            drv.set_timer("gone", time.time() + 0.2)
            drv._call(lambda: [CancelAll()])
            assert drv.book.pending() == frozenset() and drv._handles == {}
            await asyncio.sleep(1.3)  # past the ping's answer and the cancelled timer
            assert all(f[0] != "gone" for f in fired)
            assert all(a[0] != 9999 for a in answered)
            # after CancelAll, a new request is answered; a port with no way out (no URL: no
            # address) fails at once, as EVE's verifyIntfState does (spec §1, eve/send.py)
            drv._call(lambda: [Send("ping", 10000, {}, ("eth0",))])
            await until(lambda: any(a[0] == 10000 for a in answered), 3)
            assert next(a for a in answered if a[0] == 10000)[1:] == (0, {"error": "network"})
            drv.power_off()
            assert await drv.wait() == Outcome("off")

    asyncio.run(asyncio.wait_for(scenario(), 20))
    assert [e["what"] for e in events][:2] == ["agent_start", "boot_start"]
    assert events[-2:] == [
        {"device": "drv-1", "what": "power_off", "data": {}},
        {"device": "drv-1", "what": "agent_exit", "data": {"outcome": "off", "reason": None}},
    ]


def test_two_drivers_share_one_loop_and_transport(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with Transport(pki.create_root_ca().cert_pem) as tr:
            url = _refused_url()
            drivers = [
                _driver(tmp_path, AgentSpec.model_validate({**GOOD, "serial": f"many-{i}"}), events, tr, PortUrls(default=url))
                for i in range(2)
            ]
            for d in drivers:
                d.start()
            await until(lambda: sum(e["what"] == "booted" for e in events) == 2, 5)
            for d in drivers:
                d.power_off()
            assert [await d.wait() for d in drivers] == [Outcome("off")] * 2

    asyncio.run(asyncio.wait_for(scenario(), 20))
    assert {e["device"] for e in events if e["what"] == "booted"} == {"many-0", "many-1"}


# -------------------------------------------------------------------------------- processes --
class Agent:
    """``eden agent`` as the harness runs it: a real process per boot."""

    def __init__(self, tmp: Path, spec: dict[str, Any], *extra: str) -> None:
        self.state = tmp / spec["serial"]
        self.spec_file = tmp / f"{spec['serial']}.json"
        self.spec_file.write_text(json.dumps(spec))
        self.root = tmp / "root.pem"
        if not self.root.exists():
            self.root.write_bytes(pki.create_root_ca().cert_pem)
        self.events = tmp / f"{spec['serial']}.events"
        self.extra = extra

    def argv(self, *more: str) -> list[str]:
        return eden_argv("agent", "--state-dir", str(self.state), "--spec", str(self.spec_file), "--root-cert", str(self.root),
                         "--controller", _refused_url(), "--events", str(self.events), *self.extra, *more)

    def lines(self) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines() if line.strip()]

    def wait_for(self, pred: Callable[[list[dict[str, Any]]], bool], proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self.lines()):
            if proc.poll() is not None and not pred(self.lines()):
                raise AssertionError(f"agent exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''!r}")
            if time.monotonic() > deadline:
                raise AssertionError("event not seen in time")
            time.sleep(0.05)

    def persist(self) -> dict[str, Any]:
        return json.loads((self.state / "persist.json").read_text())


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_reset_exits_75_and_restart_keeps_partitions_and_counters(tmp_path: Path) -> None:
    agent = Agent(tmp_path, CRASHING)
    res = subprocess.run(agent.argv("--once"), capture_output=True, timeout=120)
    assert res.returncode == EXIT_REBOOT, res.stderr
    whats = [e["what"] for e in agent.lines()]
    assert whats == ["agent_start", "boot_start", "crash", "reset", "agent_exit"]
    assert agent.lines()[-1]["data"] == {"outcome": "reboot", "reason": None}
    first = agent.persist()
    assert first["boots"] == 1 and first["persist"]["boots_without_agents"] == 1 and first["persist"]["power_lost"] is False
    # agent_start says where the start-up went: interpreter and imports, the state dir, the rest
    start = agent.lines()[0]["data"]
    assert 0 < start["since_exec_s"] < 120 and 0 <= start["prepare_s"] <= start["setup_s"] < 120, start
    res = subprocess.run(agent.argv("--once"), capture_output=True, timeout=120)
    assert res.returncode == EXIT_REBOOT, res.stderr
    second = agent.persist()
    assert second["boots"] == 2 and second["persist"]["boots_without_agents"] == 2
    assert second["persist"]["zboot"] == first["persist"]["zboot"]
    assert sum(e["what"] == "agent_start" for e in agent.lines()) == 2
    agent.spec_file.write_text(json.dumps({**CRASHING, "seed": 99}))  # not the device in this state dir
    res = subprocess.run(agent.argv("--once"), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "different spec" in res.stderr
    assert agent.persist()["boots"] == 2


def _wait_saved(agent: Agent, restarts: int, timeout: float = 60) -> None:
    """Until the saved state counts ``restarts`` agent starts (the save follows the event line)."""
    deadline = time.monotonic() + timeout
    while agent.persist()["persist"]["restart_counter"] != restarts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert agent.persist()["persist"]["restart_counter"] == restarts


def test_power_cut_then_clean_power_off(tmp_path: Path) -> None:
    agent = Agent(tmp_path, GOOD)
    proc = subprocess.Popen(agent.argv("--once"), stderr=subprocess.PIPE)
    try:
        agent.wait_for(lambda ls: any(e["what"] == "booted" for e in ls), proc)
        assert next(e for e in agent.lines() if e["what"] == "booted")["data"]["reason"] == "FIRST"
        _wait_saved(agent, 1)  # the event line comes before the step's save: cut the power after it
        os.kill(proc.pid, signal.SIGKILL)  # power cut: nothing runs after this
        proc.wait(10)
        assert agent.persist()["persist"]["power_lost"] is True
        restarted = subprocess.Popen(agent.argv("--once"), stderr=subprocess.PIPE)
        try:
            agent.wait_for(lambda ls: sum(e["what"] == "booted" for e in ls) == 2, restarted)
            booted = [e for e in agent.lines() if e["what"] == "booted"]
            # qemu-x86_64's virtio disk has no SMART power-cycle count: a power cut is UNKNOWN (§7)
            assert booted[-1]["data"]["reason"] == "UNKNOWN"
            _wait_saved(agent, 2)
            restarted.send_signal(signal.SIGTERM)
            assert restarted.wait(10) == 0
            assert [e["what"] for e in agent.lines()][-2:] == ["power_off", "agent_exit"]
        finally:
            _kill(restarted)
    finally:
        _kill(proc)


def test_supervisor_restarts_boots_until_sigterm(tmp_path: Path) -> None:
    agent = Agent(tmp_path, CRASHING)
    proc = subprocess.Popen(agent.argv(), stderr=subprocess.PIPE)  # no --once: its own supervisor
    try:
        agent.wait_for(lambda ls: sum(e["what"] == "boot_start" for e in ls) >= 3, proc, timeout=120)  # a loaded CI host
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert agent.persist()["boots"] >= 3 and agent.persist()["persist"]["boots_without_agents"] >= 3
    finally:
        _kill(proc)


# ------------------------------------------------------------------------------ TPM in attest --
class _Recorder:
    """A transport stand-in that records attest posts; CERT answered ``cert_status``."""

    def __init__(self, cert_status: int) -> None:
        self.cert_status = cert_status
        self.sent: list[dict[str, Any]] = []

    async def send(self, link: Any, kind: str, body: Any, urls: Any, *, device_uuid: Any, timeout: float) -> tuple[int, dict[str, Any]]:
        self.sent.append(dict(body))
        return (self.cert_status, {"type": "CERT"}) if body.get("type") == "CERT" else (201, {})


class _BrokenTpm(SoftTpm):
    kind = "tpm2-tools"

    def quote(self, nonce: bytes) -> dict[str, Any]:
        raise subprocess.CalledProcessError(1, ["tpm2_quote"])


def test_the_tpm_fills_the_cert_post_and_a_quote_waits_for_a_post_in_flight(tmp_path: Path) -> None:
    """The node posts ATTEST_REQ_CERT itself (spec §5, ZedAgent.post_edge_certs); the driver fills in
    the TPM's certs, and a quote of the same boot waits for a cert post still in flight, so that
    the controller has the attestation key's cert before it checks the quote."""
    spec = AgentSpec.model_validate(GOOD)
    events: list[dict[str, Any]] = []
    quote = {"type": "QUOTE", "nonce": "n" * 32, "pcrs": {}, "tpm": True}

    async def scenario() -> None:
        drv = _driver(tmp_path, spec, events, _Recorder(201), PortUrls())  # type: ignore[arg-type]
        drv.tpm.measured({i: bytes([i]) * 32 for i in range(16)})
        filled = await drv._tpm_attest({"type": "CERT"})
        assert filled is not None and {c["type"] for c in filled["certs"]} == {"DEVICE_RESTRICTED_SIGNING", "DEVICE_ECDH_EXCHANGE"}
        out = await drv._tpm_attest(quote)
        assert out is not None and out["attest"][:4] == b"\xffTCG" and out["signature"] and len(out["pcrs"]) == 24  # 0-23 reported, as tpmmgr sends them
        drv._cert_post = asyncio.Event()  # a post of this boot in flight
        waiting = asyncio.create_task(drv._tpm_attest(quote))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        drv._cert_post.set()
        assert (await asyncio.wait_for(waiting, 5)) is not None
        assert await drv._tpm_attest({**quote, "tpm": False}) == {**quote, "tpm": False}

        drv.tpm = _BrokenTpm()
        assert await drv._tpm_attest(quote) is None
        assert events[-1]["what"] == "tpm_error" and events[-1]["data"]["request"] == "QUOTE"

    asyncio.run(scenario())


def test_the_nodes_cert_post_goes_out_with_the_tpms_certs_and_its_answer_comes_back(tmp_path: Path) -> None:
    """Refused (422): the node posts again 10 s later; the answers reach the node's rule."""
    spec = AgentSpec.model_validate(GOOD)
    events: list[dict[str, Any]] = []

    async def scenario() -> None:
        refusing = _Recorder(422)
        drv = _driver(tmp_path, spec, events, refusing, PortUrls())  # type: ignore[arg-type]
        drv.start()
        node = drv.node
        assert node is not None
        await until(lambda: node.phase == Phase.RUNNING, 10)

        def post() -> list[Any]:  # what zedagent's start does (the fake transport does not onboard it)
            node.zedagent.post_edge_certs(time.time())
            return node._drain()

        drv._call(post)
        await until(lambda: len([b for b in refusing.sent if b.get("type") == "CERT"]) >= 1, 5)
        cert = next(b for b in refusing.sent if b.get("type") == "CERT")
        assert {c["type"] for c in cert["certs"]} == {"DEVICE_RESTRICTED_SIGNING", "DEVICE_ECDH_EXCHANGE"}
        await until(lambda: any(e["what"] == "certs_posted" for e in events), 5)
        assert [e["data"]["status"] for e in events if e["what"] == "certs_posted"][0] == 422
        assert not node.zedagent.edge_certs_published and Timer.EDGE_CERTS in drv.book.pending()
        drv.power_off()
        await drv.wait()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_the_links_file_is_nims_view_of_the_cables(tmp_path: Path) -> None:
    """An emulated device learns which links are down from its links file (the emulated backend's
    network_down writes it), so the node's downloads see the links as on the simulator (spec §4)."""
    spec = AgentSpec.model_validate(GOOD)
    events: list[dict[str, Any]] = []
    links = tmp_path / "links-down"

    async def scenario() -> None:
        async with Transport(pki.create_root_ca().cert_pem) as tr:
            drv = _driver(tmp_path, spec, events, tr, PortUrls())
            drv.platform = NoPlatform(links)
            drv.start()
            node = drv.node
            assert node is not None
            await until(lambda: node.phase == Phase.RUNNING, 10)
            assert node.links_down == set()  # no file: every link up
            links.write_text("eth0\neth1\n")
            await until(lambda: node.links_down == {"eth0", "eth1"}, 5)
            links.write_text("eth1\n")
            await until(lambda: node.links_down == {"eth1"}, 5)
            links.unlink()
            await until(lambda: node.links_down == set(), 5)
            drv.power_off()
            await drv.wait()

    asyncio.run(asyncio.wait_for(scenario(), 30))
