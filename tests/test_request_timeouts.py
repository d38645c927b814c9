"""How long a request without an answer takes (spec §1 "Config polling", eve/send.py), and what that
does to the fallback timer, which counts from the first failed poll's result (§3 step 7)."""

from __future__ import annotations

from pathlib import Path

from sim_run import run_sim

from eden.run import load_for_backend
from eve.send import MAX_WAIT, SendTimeouts

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "controller-hang-in-test-window.yaml"
POLL_MAX = 10.0  # the scenario's timer.config.interval: a poll is sent at most 10 s after the hang starts
TICK = 10.0  # nodeagent's timer grid (§3 step 8)
FALLBACK = 300.0  # the scenario's timer.update.fallback.no.network


def test_the_limits_are_eves_defaults_and_bounds() -> None:
    eve = SendTimeouts.from_items({})
    assert (eve.dial, eve.send, eve.cap, eve.per_port) == (10.0, 120.0, 240.0, 120.0)  # min(3 x 120, 240)
    assert SendTimeouts.from_items({"timer.send.timeout": 30}).cap == 90.0
    assert SendTimeouts(send=0.0).cap == MAX_WAIT and SendTimeouts(send=0.0).per_port == MAX_WAIT  # 0 = no limit
    # a dead path costs the dial timeout per port, a hung controller the send timeout, both capped
    assert [eve.failing(n, "dial") for n in (0, 1, 2, 30)] == [0.0, 10.0, 20.0, 240.0]
    assert [eve.failing(n, "hung") for n in (1, 2, 3)] == [120.0, 240.0, 240.0]
    assert SendTimeouts(dial=0.0).port_failure("dial") == 120.0  # no dial limit: the send timeout bounds it
    # conntester's client: no dial timeout, timer.port.timeout (15 s) as send timeout, cap 45 s
    ping = SendTimeouts(dial=0.0, send=15.0)
    assert [ping.failing(n, "dial") for n in (1, 2, 4)] == [15.0, 30.0, 45.0]


def test_a_node_takes_its_limits_from_its_config_items() -> None:
    from tests.test_node_rules import make_node

    node = make_node()
    assert node.send_timeouts("config") == SendTimeouts()
    assert node.send_timeouts("ping") == SendTimeouts(dial=0.0, send=15.0)
    node.persist.items.apply({"timer.send.timeout": "20", "timer.dial.timeout": "3", "timer.port.timeout": "5"})
    node.items_version += 1
    assert node.send_timeouts("config") == SendTimeouts(dial=3.0, send=20.0)
    assert node.send_timeouts("ping") == SendTimeouts(dial=0.0, send=5.0)



def _fallbacks(events: list[dict]) -> dict[str, float]:
    return {e["device"]: e["t"] for e in events if e["what"] == "reboot_scheduled" and e["reason"] == "FALLBACK"}


def _falls_after_hang(path: Path, out: Path, send_timeout: float) -> dict[str, float]:
    """Run ``path``; check that each device's first failed poll in the hang came one send timeout
    per management port after the hang started (dut has one port, the gateway two, within the
    240 s cap), and nodeagent's fallback 300 s after that. Returns the fallback times."""
    summary, events = run_sim(path, out)
    assert summary["verdict"] == "passed", summary["expectations"]
    hang = next(e["t"] for e in events if e["what"] == "controller_hang")
    falls = _fallbacks(events)
    for device, ports in (("dut-0", 1), ("gw-0", 2)):
        first_failure = falls[device] - FALLBACK
        cost = min(ports * send_timeout, 240.0)
        assert hang + cost <= first_failure <= hang + POLL_MAX + cost + TICK, (device, falls, hang)
    return falls


def test_a_hung_controller_delays_the_fallback_by_each_ports_send_timeout(tmp_path: Path) -> None:
    falls = _falls_after_hang(SCENARIO, tmp_path / "out", 120.0)
    assert 120.0 - POLL_MAX - TICK <= falls["gw-0"] - falls["dut-0"] <= 120.0 + POLL_MAX + TICK


def test_a_shorter_send_timeout_brings_the_fallback_forward(tmp_path: Path) -> None:
    text = SCENARIO.read_text().replace("    timer.update.fallback.no.network: 300\n",
                                        "    timer.update.fallback.no.network: 300\n    timer.send.timeout: 30\n")
    variant = tmp_path / "short.yaml"
    variant.write_text(text)
    _falls_after_hang(variant, tmp_path / "out", 30.0)


def test_a_refusing_controller_is_temporary_during_an_update_and_never_falls_back(tmp_path: Path) -> None:
    """The contrast (§1 status table): connection refused is TemporaryFail while the partition is
    inprogress, which counts as contact, so the same 15 min outage causes no fallback."""
    text = SCENARIO.read_text().replace("controller_hang: {duration: 15m}", "controller_outage: {duration: 15m}")
    variant = tmp_path / "outage.yaml"
    variant.write_text(text)
    summary, events = run_sim(variant, tmp_path / "out")
    assert _fallbacks(events) == {}
    assert summary["verdict"] == "failed"  # the scenario's fallback expectation is not met
    failed = [e["name"] for e in summary["expectations"] if e["status"] == "failed"]
    assert failed == ["fell back during the hang, on nodeagent's own timer"]


def test_a_dead_path_costs_the_dial_timeout_per_port(tmp_path: Path) -> None:
    """Every port down (a dead upstream path, not a pulled cable): each request fails after the
    dial timeout per port, 2 x 10 s on a device with two management ports, not at once."""
    text = SCENARIO.read_text().replace("controller_hang: {duration: 15m}", "network_down: {}\n    target: gw\n  - wait: 10m")
    variant = tmp_path / "down.yaml"
    variant.write_text(text)
    _summary, events = run_sim(variant, tmp_path / "out")
    down = next(e["t"] for e in events if e["what"] == "step_start" and e["action"] == "network_down")
    first_failure = _fallbacks(events)["gw-0"] - FALLBACK
    assert down + 20.0 <= first_failure <= down + POLL_MAX + 20.0 + TICK


def test_controller_hang_validates_on_emulated_and_qemu() -> None:
    """The real controller's answer switch holds requests (tests/test_controller_answer_switch.py)."""
    assert load_for_backend(SCENARIO, "emulated").scenario
    assert load_for_backend(SCENARIO, "qemu").scenario