"""``--backend board`` on a lab of stand-in boards, and the faults a lab sees.

The stand-in boards are QEMU VMs wired like boards (eden/lab/standin.py): power through a real
PDUDaemon, consoles through a real ser2net, storage written as a media device, links and tamper
through commands. ``tests/board_lane.py`` drives eden against them in the background (one run,
several phases, see its docstring); each test here asserts one phase of what it saw.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import BackgroundRun, background_run

LANE = pytest.mark.background("board", lane="board", script="board_lane.py")
TIMEOUT = 40 * 60


@pytest.fixture(scope="module")
def lane() -> tuple[BackgroundRun, dict[str, Any]]:
    run = background_run("board")
    rc, output = run.wait(timeout=TIMEOUT)
    obs_file = run.work / "observations.json"
    assert rc == 0 and obs_file.is_file(), f"the board lane failed (rc={rc}):\n{output[-4000:]}"
    return run, json.loads(obs_file.read_text())


pytestmark = [pytest.mark.slow, pytest.mark.qemu, LANE]


def test_a_board_that_never_boots_is_marked_bad_and_takes_no_job(lane: tuple[BackgroundRun, dict[str, Any]]) -> None:
    dead = lane[1]["dead"]
    assert dead["check_rc"] == 1, dead  # eden lab check: a bad place is a failed check
    [result] = dead["check"]
    assert result["health"] == "bad", result
    # the PDU took the switch; the board printed nothing: not confirmed by watching the board
    assert "power-on not confirmed" in result["reason"], result
    # a job takes the other, healthy board of the profile
    assert dead["other_rc"] == 0 and dead["other_places"] == ["standin-2"], dead
    # a job that can only have the bad place is refused at once (exit 2), naming the place and why
    assert dead["run_rc"] == 2 and dead["run_s"] < 120, dead
    assert "not enough healthy places" in dead["run_error"] and "standin-1" in dead["run_error"], dead


def test_the_suite_passes_on_the_stand_in_lab_after_its_health_gate(lane: tuple[BackgroundRun, dict[str, Any]]) -> None:
    run, obs = lane
    suite = obs["suite"]
    assert suite["rc"] == 0, suite["output"]
    out = run.work / "suite"
    health = json.loads((out / "health" / "health.json").read_text())
    # the bad place (repaired meanwhile) and the never-checked ones went through the gate
    assert {h["place"] for h in health} == {"standin-1", "standin-2"}, health
    assert all(h["health"] == "good" for h in health), health
    results = json.loads((out / "results.json").read_text())
    entries = results["entries"]
    assert entries and all(e["verdict"] == "passed" for e in entries), [(e["id"], e["verdict"], e.get("error")) for e in entries]
    # every entry says where it ran, in results and in JUnit
    for e in entries:
        assert e["places"] and set(e["places"].values()) <= {"standin-1", "standin-2"}, e
    junit = (out / "junit.xml").read_text()
    assert 'name="place.' in junit
    smoke = next(e for e in entries if e["scenario"] == "onboarding-smoke")
    events = [json.loads(x) for x in (out / smoke["run_dir"] / "events.jsonl").read_text().splitlines()]
    assert any(e["what"] == "power_on" and e["source"] == "device" for e in events)


def test_a_tamper_command_changes_what_the_board_boots_and_its_quote_is_refused(
        lane: tuple[BackgroundRun, dict[str, Any]]) -> None:
    tamper = lane[1]["tamper"]
    assert tamper["rc"] == 0, tamper["output"]  # attested, then RESTART_WAIT after the tampered boot
    [applied] = tamper["applied"]
    assert applied["stage"] == "firmware" and "modified option ROM" in applied["output"], applied


def test_a_serial_adapter_that_re_enumerates_is_reattached(lane: tuple[BackgroundRun, dict[str, Any]]) -> None:
    run = lane[0]
    out = run.work / "suite"
    results = json.loads((out / "results.json").read_text())
    seen = []
    for e in results["entries"]:
        if "standin-1" not in e["places"].values():
            continue
        events = [json.loads(x) for x in (out / e["run_dir"] / "events.jsonl").read_text().splitlines()]
        seen += [x["what"] for x in events if x["source"] == "console" and str(x["what"]).startswith("console-")]
    health_events = [json.loads(x) for x in (out / "health" / "standin-1" / "events.jsonl").read_text().splitlines()]
    seen += [x["what"] for x in health_events if str(x["what"]).startswith("console-")]
    assert "console-detached" in seen and "console-reattached" in seen, seen
    assert "console-vanished" not in seen, seen


def test_a_serial_adapter_pulled_out_for_good_breaks_the_run(lane: tuple[BackgroundRun, dict[str, Any]]) -> None:
    unplugged = lane[1]["unplugged"]
    assert unplugged["rc"] == 2, unplugged["output"]
    assert "vanished" in str(unplugged["summary"].get("error", "")), unplugged["summary"]
    kinds = [e["what"] for e in unplugged["events"]]
    assert "console-detached" in kinds and "console-vanished" in kinds, kinds


def test_a_killed_job_s_lease_expires_and_two_jobs_share_the_place(lane: tuple[BackgroundRun, dict[str, Any]]) -> None:
    obs = lane[1]
    killed = obs["killed"]
    assert killed["held"] and killed["still_held_after_kill"], killed
    assert 0 < killed["expires_in_s"] <= 20.5, killed  # the lab's TTL bounds how long a dead job blocks the place
    assert killed["left_processes"] == [], killed  # its controller and helpers died with it
    compete = obs["compete"]
    assert compete["rcs"] == [0, 0], compete["outputs"]
    events = [e["event"] for e in compete["log"]]
    assert "expired" in events, compete["log"]  # the killed job's lease, reclaimed by the next job
    reserved = [e for e in compete["log"] if e["event"] == "reserved"]
    released = [e for e in compete["log"] if e["event"] == "released"]
    # one after the other: the second reservation comes after the first job released the place
    assert len(reserved) >= 2 and released and reserved[1]["at"] >= released[0]["at"], compete["log"]


def test_a_stopped_job_switches_its_board_off_and_gives_the_place_back(lane: tuple[BackgroundRun, dict[str, Any]]) -> None:
    stopped = lane[1]["stopped"]
    assert stopped["held_before"], stopped
    assert stopped["rc"] == 128 + 15, stopped  # SIGTERM: stopped, not a verdict (eden.interrupt)
    assert stopped["lease_after"] is False and stopped["board_powered_after"] is False, stopped
    assert stopped["left_processes"] == [], stopped


def test_a_labgrid_place_is_locked_in_labgrid_and_driven_through_its_exported_ports(
        lane: tuple[BackgroundRun, dict[str, Any]]) -> None:
    lg = lane[1]["labgrid"]
    assert lg["rc"] == 0, lg["output"]
    [acquired] = lg["acquired"]
    assert acquired["labgrid"] == "lg-standin-1" and acquired["console"].startswith("tcp://127.0.0.1:"), acquired
    assert lg["power_on"], lg  # switched through the PDUDaemon outlet the exporter offers
    assert lg["other_acquire_after"]["rc"] == 0, lg["other_acquire_after"]  # eden released labgrid's lock at the end


def test_nothing_is_left_behind(lane: tuple[BackgroundRun, dict[str, Any]]) -> None:
    run, obs = lane
    assert obs["leaks"] == {"processes": [], "leases": [], "tmp": []}, obs["leaks"]
    assert run.leftovers() == [], run.leftovers()
