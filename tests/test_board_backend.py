"""``--backend board`` before anything runs: the lab file decides what a scenario may ask of a board,
and bad input is refused with file:line:col (exit 2). Plus the stand-in board's own hardware
(its serial adapter and power input), and what the history makes of lab places."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eden.backends.registry import backend_actions, refused_actions, runnable_backends
from eden.history import connect, flaky_boards, place_stats, record
from eden.lab.standin import BoardHardware, command
from eden.reports.model import EntryResult, SuiteResults
from eden_subprocess import env as eden_env
from eden_subprocess import run_eden

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


def lab_text(places: dict[str, str], *, link: bool = True, tamper: bool = False,
             bare: frozenset[str] = frozenset()) -> str:
    """A lab of command-driven places; those in ``bare`` have neither a link nor a tamper driver."""
    lines = ["lab: t", "controller: {listen: '127.0.0.1:0'}", "places:"]
    for name, profile in places.items():
        lines += [f"  {name}:", f"    profile: {profile}",
                  "    power: {command: {'on': 'true', 'off': 'true'}}",
                  "    console: {network: {url: 'tcp://127.0.0.1:9'}}",
                  f"    media: {{device: {name}.img}}"]
        if link and name not in bare:
            lines += ["    link: {command: {down: 'true {port}', up: 'true {port}'}}"]
        if tamper and name not in bare:
            lines += ["    tamper: {firmware: 'true'}"]
    return "\n".join(lines) + "\n"


def validate(tmp_path: Path, scenario: str | Path, lab: str | None, *,
             in_process: bool = True) -> subprocess.CompletedProcess[str]:
    """``eden validate --backend board``: in this process (eden.cli.main, the environment restored
    after it) unless ``in_process`` is false, then as a subprocess."""
    file = scenario if isinstance(scenario, Path) else SCENARIOS / f"{scenario}.yaml"
    args = ["validate", "--backend", "board", str(file)]
    if lab is not None:
        (tmp_path / "lab.yaml").write_text(lab)
        args += ["--lab", str(tmp_path / "lab.yaml")]
    if not in_process:
        return run_eden(*args, env=eden_env(tmp_path, drop=["EDEN_LAB"]))
    from eden.cli import main

    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.pop("EDEN_LAB", None)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def test_the_board_backend_is_runnable_and_says_what_it_performs() -> None:
    assert "board" in runnable_backends()
    acts = backend_actions("board")
    assert {"power_on", "power_off", "power_cycle", "network_down", "network_up", "tamper", "baseos_update"} <= acts
    refused = refused_actions("board")
    assert "local profile server" in refused["graceful_poweroff"], refused
    assert not {"hang", "crash", "low_disk_space", "tpm_failure"} & acts  # nothing inside a board is the harness's
    assert "rollout" not in acts  # as on qemu: no rollouts over boards


def test_a_board_run_needs_a_lab_file(tmp_path: Path) -> None:
    res = validate(tmp_path, "onboarding-smoke", None, in_process=False)  # the CLI itself: exit 2, no traceback
    assert res.returncode == 2, res.stdout + res.stderr
    assert "needs a lab file" in res.stdout + res.stderr and "Traceback" not in res.stderr


def test_the_lab_must_have_enough_places_of_each_profile(tmp_path: Path) -> None:
    res = validate(tmp_path, "attestation-tamper", lab_text({"n1": "nuc-class"}, tamper=True))
    text = res.stdout + res.stderr
    assert res.returncode == 2, text
    assert "has 1 place(s) with profile nuc-class, the scenario needs 2" in text, text
    assert "attestation-tamper.yaml:" in text  # at the fleet entry's position


def test_a_step_no_place_driver_performs_is_refused_naming_the_places(tmp_path: Path) -> None:
    lab = lab_text({"q1": "qemu-x86_64", "g1": "gateway-x86", "g2": "gateway-x86"}, link=False)
    res = validate(tmp_path, "network-outage-recovery", lab)
    text = res.stdout + res.stderr
    assert res.returncode == 2, text
    assert "needs 'set_links' on the board" in text and "g1, g2" in text, text
    line = next(i for i, x in enumerate((SCENARIOS / "network-outage-recovery.yaml").read_text().splitlines(), 1)
                if "network_down" in x)
    assert f"network-outage-recovery.yaml:{line}:" in text, text
    # the same lab with link drivers: valid
    res = validate(tmp_path, "network-outage-recovery",
                   lab_text({"q1": "qemu-x86_64", "g1": "gateway-x86", "g2": "gateway-x86"}))
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_tamper_stage_needs_a_command_for_that_stage(tmp_path: Path) -> None:
    res = validate(tmp_path, "attestation-tamper", lab_text({"n1": "nuc-class", "n2": "nuc-class"}))
    text = res.stdout + res.stderr
    assert res.returncode == 2 and "'tamper' stage firmware needs a tamper command" in text, text
    assert validate(tmp_path, "attestation-tamper", lab_text({"n1": "nuc-class", "n2": "nuc-class"}, tamper=True)).returncode == 0


TWO_PROFILES = """\
name: two-profiles
seed: 1
fleet:
  - {profile: qemu-x86_64, group: dut}
  - {profile: gateway-x86, group: gw}
images:
  base: {version: 13.4.0}
steps:
  - power_on: {}
  - network_down: {}
    target: {profile: gateway-x86}
  - tamper: {stage: firmware}
    target: gw
  - network_up: {}
    target: gw-0
faults:
  - network_down: {}
    target: {group: gw, count: 1}
    at: 1m
"""


def test_a_step_is_checked_only_against_places_of_the_profiles_it_targets(tmp_path: Path) -> None:
    scenario = tmp_path / "two-profiles.yaml"
    scenario.write_text(TWO_PROFILES)
    places = {"q1": "qemu-x86_64", "g1": "gateway-x86", "g2": "gateway-x86"}
    # every step targets the gateways: the qemu place needs neither a link nor a tamper driver
    res = validate(tmp_path, scenario, lab_text(places, tamper=True, bare=frozenset({"q1"})))
    assert res.returncode == 0, res.stdout + res.stderr
    # one gateway place without them: each step is refused, naming that place and no other
    res = validate(tmp_path, scenario, lab_text(places, tamper=True, bare=frozenset({"g2"})))
    text = res.stdout + res.stderr
    assert res.returncode == 2 and "Traceback" not in text, text
    assert "'network_down' needs 'set_links' on the board, and place(s) g2 of" in text, text
    assert "'network_up' needs 'set_links' on the board, and place(s) g2 of" in text, text
    assert "'tamper' stage firmware needs a tamper command for it, and place(s) g2 of" in text, text
    assert str(tmp_path / "lab.yaml") in text and "q1" not in text, text
    lines = TWO_PROFILES.splitlines()
    for action in ("network_down", "tamper", "network_up"):
        line = next(i for i, x in enumerate(lines, 1) if x.startswith(f"  - {action}:"))
        assert f"two-profiles.yaml:{line}:" in text, (action, text)
    fault = next(i for i, x in enumerate(lines, 1) if x.startswith("  - network_down:") and i > lines.index("faults:"))
    assert f"two-profiles.yaml:{fault}:" in text, text  # the sampled fault: any gateway place may be the one


def test_a_step_for_every_device_is_checked_against_every_profile_s_places(tmp_path: Path) -> None:
    scenario = tmp_path / "two-profiles.yaml"
    scenario.write_text(TWO_PROFILES.replace("    target: {profile: gateway-x86}\n", ""))
    places = {"q1": "qemu-x86_64", "g1": "gateway-x86", "g2": "gateway-x86"}
    res = validate(tmp_path, scenario, lab_text(places, tamper=True, bare=frozenset({"q1"})))
    text = res.stdout + res.stderr
    assert res.returncode == 2, text
    assert "'network_down' needs 'set_links' on the board, and place(s) q1 of" in text, text
    assert "'tamper' stage" not in text and "'network_up'" not in text, text  # those still target gw only


def test_an_invalid_lab_file_is_refused_at_its_line_and_column(tmp_path: Path) -> None:
    bad = lab_text({"q1": "qemu-x86_64"}).replace("    media:", "    medai:")
    res = validate(tmp_path, "onboarding-smoke", bad)
    text = res.stdout + res.stderr
    assert res.returncode == 2 and "Traceback" not in text, text
    line = next(i for i, x in enumerate(bad.splitlines(), 1) if "medai" in x)
    assert f"lab.yaml:{line}:5" in text, text


# ------------------------------------------------------------------------ the stand-in board --
def test_the_stand_in_board_s_serial_adapter_and_power_input(tmp_path: Path) -> None:
    board = tmp_path / "b"
    BoardHardware(name="b", kernel="/nonexistent", initrd="/nonexistent", append="").write(board)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    daemon = subprocess.Popen([sys.executable, "-m", "eden.lab.standin", "serve", str(board)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 20
        while True:
            try:
                status = command(board, "status", timeout=2)
                break
            except OSError:
                assert time.monotonic() < end and daemon.poll() is None, "the board daemon did not start"
                time.sleep(0.1)
        tty = os.readlink(board / "tty")
        assert status["tty"] == tty and tty.startswith("/dev/pts/") and not status["powered"]
        # the adapter exists while the board is off, and bytes typed at it go nowhere (no board)
        fd = os.open(board / "tty", os.O_RDWR | os.O_NOCTTY)
        os.write(fd, b"hello\n")
        os.close(fd)
        # re-enumeration: a new pty behind the same link; pulled out: no link
        assert command(board, "replug")["tty"] != tty
        assert command(board, "unplug")["ok"] and not (board / "tty").exists()
        assert command(board, "plug")["ok"] and (board / "tty").is_symlink()
        # no storage: the switch closes and nothing boots (the command says why; PDUDaemon would not)
        on = command(board, "on")
        assert on["ok"] is False and "disk.img" in on["error"], on
        # a dead board takes the switch and stays dark
        assert command(board, "dead")["ok"] and command(board, "on") == {"ok": True, "dead": True}
        assert command(board, "status")["powered"] is False
        unknown = command(board, "levitate")
        assert unknown["ok"] is False and "commands:" in unknown["error"]
        res = subprocess.run([sys.executable, "-m", "eden.lab.standin", "power", str(board), "sideways"], env=env,
                             capture_output=True, text=True)
        assert res.returncode == 2 and "usage" in res.stderr
        assert command(board, "quit")["ok"]
        assert daemon.wait(20) == 0
        assert not (board / "tty").exists()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    with pytest.raises(OSError):
        command(board, "status", timeout=2)  # nothing serves the board any more


# ------------------------------------------------------------------------------- history --
def _entry(scenario: str, place: str, verdict: str, n: int) -> EntryResult:
    return EntryResult(id=f"{scenario}--{place}--r{n}", suite="nightly", scenario=scenario, scenario_file=f"{scenario}.yaml",
                       profile="nuc-class", backend="board", seed=1, replication=n, verdict=verdict,  # type: ignore[arg-type]
                       versions={"base": "13.4.0"}, places={"dut-0": place})


def _suite(entries: list[EntryResult]) -> SuiteResults:
    return SuiteResults(suite="nightly", suite_file="nightly.yaml", backend="board", started="2026-12-07T00:00:00",
                        finished="2026-12-07T01:00:00", entries=entries)


def test_history_tells_a_flaky_board_from_a_flaky_scenario(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    # night 1 and 2: boot-smoke fails only on rack-3, which passes elsewhere; update fails on two boards
    for night in range(2):
        record(_suite([_entry("boot-smoke", "rack-1", "passed", night), _entry("boot-smoke", "rack-2", "passed", night),
                       _entry("boot-smoke", "rack-3", "failed", night),
                       _entry("update", "rack-1", "failed", night), _entry("update", "rack-2", "broken", night),
                       _entry("update", "rack-3", "passed", night)]), tmp_path, db)
    stats = place_stats(db)
    assert stats["rack-3"]["entries"] == 4 and stats["rack-3"]["failed"] == 2 and stats["rack-3"]["pass_rate"] == 0.5
    found = flaky_boards(db)
    assert [(b["place"], b["scenario"], b["passed_on"]) for b in found["boards"]] == [("rack-3", "boot-smoke", ["rack-1", "rack-2"])]
    assert [(s["scenario"], s["failed_on"]) for s in found["scenarios"]] == [("update", ["rack-1", "rack-2"])]
    res = run_eden("history", "--db", str(db), "--places", env=eden_env(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "FLAKY BOARD" in res.stdout and "flaky board: rack-3 failed boot-smoke" in res.stdout.replace("\n", " "), res.stdout
    assert "flaky scenario" in res.stdout, res.stdout


def test_a_history_database_from_before_places_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    old = sqlite3.connect(db)
    old.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', '1');
        CREATE TABLE suite_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, suite TEXT NOT NULL, suite_file TEXT NOT NULL DEFAULT '',
            backend TEXT NOT NULL, started TEXT NOT NULL, finished TEXT NOT NULL DEFAULT '', wall_seconds REAL, jobs INTEGER,
            host TEXT NOT NULL DEFAULT '', versions TEXT NOT NULL DEFAULT '{}', verdict TEXT NOT NULL, passed INTEGER NOT NULL,
            failed INTEGER NOT NULL, broken INTEGER NOT NULL, out_dir TEXT NOT NULL DEFAULT '');
        CREATE TABLE entries (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL, entry_id TEXT NOT NULL,
            suite TEXT NOT NULL, scenario TEXT NOT NULL, profile TEXT NOT NULL, backend TEXT NOT NULL, versions TEXT NOT NULL,
            seed INTEGER NOT NULL, replication INTEGER NOT NULL, verdict TEXT NOT NULL, wall_seconds REAL,
            simulated_seconds REAL, timings TEXT NOT NULL DEFAULT '{}', artefacts TEXT NOT NULL DEFAULT '',
            started TEXT NOT NULL DEFAULT '', error TEXT);
        INSERT INTO suite_runs (suite, backend, started, verdict, passed, failed, broken) VALUES ('s', 'sim', 'x', 'passed', 1, 0, 0);
        INSERT INTO entries (run_id, entry_id, suite, scenario, profile, backend, versions, seed, replication, verdict)
            VALUES (1, 'e', 's', 'sc', 'p', 'sim', '{}', 1, 0, 'passed');
    """)
    old.commit()
    old.close()
    record(_suite([_entry("boot-smoke", "rack-1", "passed", 0)]), tmp_path, db)
    with connect(db) as conn:
        rows = [(r["scenario"], json.loads(r["places"])) for r in conn.execute("SELECT scenario, places FROM entries ORDER BY id")]
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
    assert rows == [("sc", {}), ("boot-smoke", {"dut-0": "rack-1"})] and version == "2"


def test_eden_lab_standin_refuses_unknown_profiles_before_starting_anything(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    res = run_eden("lab", "standin", str(lab_dir), "--profiles", "qemu-x86_64,toaster", "--", "true", env=eden_env(tmp_path))
    assert res.returncode == 2 and "toaster" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not lab_dir.exists()


def test_a_re_plugged_stand_in_adapter_is_reattached_through_ser2net(tmp_path: Path) -> None:
    """The stand-in's serial adapter behind a real ser2net: a re-plug (a new pty behind the same
    link) drops ser2net's connection, and the board console re-attaches to the new device."""
    import asyncio

    from eden.lab.consoles import NetworkSerialSource, ReattachingConsole
    from eden.runtime.deadline import Deadline
    from labtools import Ser2net

    board = tmp_path / "b"
    BoardHardware(name="b", kernel="/nonexistent", initrd="/nonexistent", append="").write(board)
    daemon = subprocess.Popen([sys.executable, "-m", "eden.lab.standin", "serve", str(board)],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ser = None
    try:
        end = time.monotonic() + 20
        while not (board / "tty").is_symlink():
            assert time.monotonic() < end and daemon.poll() is None, "the board daemon did not start"
            time.sleep(0.1)
        ser = Ser2net(tmp_path, {"b": ("raw", str(board / "tty"))})
        events: list[str] = []
        lines: list[str] = []

        async def go() -> None:
            con = ReattachingConsole(NetworkSerialSource(ser.urls["b"]), tmp_path / "con", place="b", reattach=10,
                                     on_line=lines.append, on_event=lambda kind, data: events.append(kind))
            await con.connect(Deadline(10))
            con.expected_alive = True  # the board is "on": a lost console must come back
            await asyncio.sleep(0.5)
            assert (await asyncio.to_thread(command, board, "replug"))["ok"]
            end = time.monotonic() + 15
            while "console-reattached" not in events and time.monotonic() < end:
                await asyncio.sleep(0.1)
            await con.close()

        asyncio.run(go())
        assert events[:2] == ["console-detached", "console-reattached"], events
        assert command(board, "status")["adapter_generation"] == 2
    finally:
        if ser is not None:
            ser.stop()
        command(board, "quit")
        daemon.wait(20)
