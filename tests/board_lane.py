"""The board backend against a lab of stand-in boards, with the faults a lab sees (tests/test_board_lab.py).

Run by tests/conftest.py as a background run (``python tests/board_lane.py WORK``): it starts a
stand-in lab (:mod:`eden.lab.standin_lab`: QEMU VMs wired like boards behind a real PDUDaemon and
a real ser2net), drives ``eden`` against it as a lab admin would, and writes what it saw to
``WORK/observations.json``. It asserts nothing itself; the tests do, so a failed check is reported
as the test that owns it. In order:

1. ``dead``: a board that does not boot (its power input takes the switch, nothing lights up):
   ``eden lab check`` marks its place bad, and a run that needs that place is refused at once.
2. ``suite``: ``eden qualify suites/board-ci.yaml --lab``: the health gate re-checks the bad place
   (repaired meanwhile) and the new one, then the entry runs on a healthy place; the serial
   adapter of one board is re-plugged (a USB re-enumeration) during its health run. Then
   ``tamper``: a firmware change through the place's tamper command, refused at the next quote.
3. ``unplugged``: a serial adapter pulled out for good during a run: the run is broken (exit 2).
4. ``killed`` and ``compete``: a run killed with ``kill -9`` while it holds its lease; the lease
   outlives it only until its TTL; then two runs started together for the one place: one waits for
   the other, both pass.
5. ``labgrid``: the same board as a labgrid place: a real labgrid coordinator and exporter
   (exporting the board's ser2net port and PDUDaemon outlet), a lab file whose place names it; a
   run locks it in labgrid, drives the board through what the exporter offers, and unlocks it.
6. ``leaks``: what the runs left: processes carrying their marker, leases, temp entries.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eden.lab.leases import LeaseStore  # noqa: E402
from eden.lab.load import load_lab  # noqa: E402
from eden.lab.standin_lab import build_standin_lab  # noqa: E402

MARK = "EDEN_BOARD_LANE"
def scenario(name: str, description: str, steps: str) -> str:
    """A one-board scenario on qemu-x86_64 with ``steps`` (YAML lines): the lane's short jobs."""
    return (f"name: {name}\ndescription: {description}\nseed: 1\nfleet:\n  - profile: qemu-x86_64\n    group: dut\n"
            "images:\n  base: {version: 13.4.0}\ncontroller:\n  config_items:\n    timer.config.interval: 10\n"
            f"steps:\n{steps}")


BOOT = scenario("board-boot", "One board powers on and onboards (the lane's short job).",
                "  - power_on: {}\n  - expect: {onboarded: true, within: 5m}\n")


def eden(*args: str, env: dict[str, str], log: Path, timeout: float = 1200) -> int:
    with open(log, "wb") as out:
        try:
            return subprocess.run([sys.executable, "-m", "eden", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout, cwd=ROOT).returncode
        except subprocess.TimeoutExpired:
            return -1


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def events(run_dir: Path) -> list[dict[str, object]]:
    try:
        return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    except OSError:
        return []


def summary(run_dir: Path) -> dict[str, object]:
    try:
        data: dict[str, object] = json.loads((run_dir / "summary.json").read_text())
        return data
    except (OSError, ValueError):
        return {}


def when_booting(lab: object, place: str, what: str, timeout: float = 900.0) -> None:
    """``what`` (a board command: replug, unplug) once the place's next boot has put some output on
    its serial line: while a run watches the console, not before it has connected."""
    from eden.lab.standin_lab import StandinLab

    assert isinstance(lab, StandinLab)
    start = lab.board(place, "status")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            status = lab.board(place, "status")
        except OSError:  # the lab is gone: the phase ended without a boot
            return
        sent = int(str(status.get("tx_bytes", 0))) - int(str(start.get("tx_bytes", 0)))
        if status.get("powered") and status.get("boots") != start.get("boots") and sent > 1500:
            lab.board(place, what)
            return
        time.sleep(0.2)


def marked(value: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f"{MARK}={value}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


TAMPER = scenario("board-tamper", "An attested board's firmware is changed while it is off; its next quote is refused.",
                  "  - power_on: {}\n  - expect: {attestation: COMPLETE, within: 5m}\n  - tamper: {stage: firmware}\n"
                  "  - power_cycle: {off_for: 5s}\n  - expect: {attestation: RESTART_WAIT, within: 5m}\n")


def labgrid_phase(work: Path, lab: object, place: str, env: dict[str, str], scenario: Path) -> dict[str, object]:
    from labtools import LabgridCoordinator, LabgridExporter

    from eden.lab.standin_lab import StandinLab

    assert isinstance(lab, StandinLab)
    lg_dir = work / "labgrid"
    lg_dir.mkdir()
    coordinator = LabgridCoordinator(lg_dir)
    exporter = None
    try:
        exporter = LabgridExporter(lg_dir, coordinator, "bench", {"standin-1": {
            "NetworkSerialPort": {"host": "127.0.0.1", "port": lab.console_ports[place], "protocol": "raw"},
            "PDUDaemonPort": {"host": f"127.0.0.1:{lab.pdu_port}", "pdu": "standin", "index": 1}}})
        coordinator.client("-p", "lg-standin-1", "create")
        coordinator.client("-p", "lg-standin-1", "add-match", "bench/standin-1/*")
        text = lab.lab_file.read_text()
        # the lab file's entry for the board, with labgrid in place of its own power and console
        entry = text.split(f"  {place}:\n", 1)[1].split("\n  standin-", 1)[0]
        kept = [line for line in entry.splitlines() if not line.startswith(("    power:", "      pdudaemon:", "    console:",
                                                                              "      network:", "      reattach:", "      first_output:"))]
        head = text.split("places:\n", 1)[0].replace("db: leases.sqlite", "db: labgrid-leases.sqlite")
        lg_lab = lab.lab_file.with_name("lab-labgrid.yaml")
        lg_lab.write_text(head + "places:\n  lg-1:\n" + "\n".join(kept) + "\n"
                          f"    labgrid: {{coordinator: '{coordinator.address}', place: lg-standin-1}}\n")
        rc = eden("run", str(scenario), "--backend", "board", "--out", str(work / "labgrid-run"), "--quiet", "--no-html",
                  env={**{k: v for k, v in env.items() if k != "EDEN_LAB_PLACES"}, "EDEN_LAB": str(lg_lab)},
                  log=work / "labgrid-run.log")
        other = coordinator.client("-p", "lg-standin-1", "acquire", user="someone-else", check=False)
        return {"rc": rc, "output": tail(work / "labgrid-run.log", 2000),
                "acquired": [e for e in events(work / "labgrid-run") if e.get("what") == "labgrid_acquired"],
                "power_on": any(e.get("what") == "power_on" and e.get("source") == "device" for e in events(work / "labgrid-run")),
                "other_acquire_after": {"rc": other.returncode, "output": other.stdout + other.stderr}}
    finally:
        if exporter is not None:
            exporter.stop()
        coordinator.stop()


def main(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    obs: dict[str, object] = {}
    mark = f"lane-{os.getpid()}"
    tmp = work / "runs-tmp"
    tmp.mkdir(exist_ok=True)
    t0 = time.monotonic()
    lab = build_standin_lab(work / "lab", ["qemu-x86_64", "qemu-x86_64"], ttl=20.0, first_output=30.0)
    obs["lab_up_s"] = round(time.monotonic() - t0, 1)
    env = {**os.environ, "EDEN_LAB": str(lab.lab_file), MARK: mark, "TMPDIR": str(tmp)}
    first = lab.places[0]
    SMOKE = work / "board-boot.yaml"
    SMOKE.write_text(BOOT)
    TAMPER_FILE = work / "board-tamper.yaml"
    TAMPER_FILE.write_text(TAMPER)
    LONG = work / "board-boot-wait.yaml"
    LONG.write_text(BOOT.replace("name: board-boot", "name: board-boot-wait") + "  - wait: 2m\n")
    try:
        # 1. a dead board
        lab.board(first, "dead")
        rc = eden("lab", "check", first, "--lab", str(lab.lab_file), "--json", "--out", str(work / "dead-check"),
                  env=env, log=work / "dead-check.log")
        check = []
        try:
            check = json.loads((work / "dead-check.log").read_text().strip().splitlines()[-1])
        except (ValueError, IndexError):
            pass
        t = time.monotonic()
        rc_bad = eden("run", str(SMOKE), "--backend", "board", "--out", str(work / "on-bad"), "--quiet", "--no-html",
                      env={**env, "EDEN_LAB_WAIT": "600", "EDEN_LAB_PLACES": first}, log=work / "on-bad.log")
        bad_s = round(time.monotonic() - t, 1)
        rc_other = eden("run", str(SMOKE), "--backend", "board", "--out", str(work / "on-other"), "--quiet", "--no-html",
                        env=env, log=work / "on-other.log")
        other = [e for e in events(work / "on-other") if e.get("what") == "place_leased"]
        obs["dead"] = {"check_rc": rc, "check": check, "run_rc": rc_bad, "run_s": bad_s,
                       "run_error": str(summary(work / "on-bad").get("error", "")), "run_output": tail(work / "on-bad.log", 1500),
                       "other_rc": rc_other, "other_places": [e.get("place") for e in other]}
        lab.board(first, "alive")

        # 2. the suite, with a re-plug of the first board's serial adapter during it
        replug = threading.Thread(target=when_booting, args=(lab, first, "replug"), daemon=True)
        replug.start()
        t = time.monotonic()
        rc = eden("qualify", str(ROOT / "suites" / "board-ci.yaml"), "--lab", str(lab.lab_file), "--out",
                  str(work / "suite"), "--no-history", env=env, log=work / "suite.log", timeout=1500)
        replug.join()
        obs["suite"] = {"rc": rc, "s": round(time.monotonic() - t, 1), "output": tail(work / "suite.log")}
        # the later phases do not hang on the suite's verdict on the first board
        eden("lab", "health", first, "--lab", str(lab.lab_file), "--set", "good", "--reason", "lane: next phase",
             env=env, log=work / "health-set.log")

        # 2b. tamper through the place's tamper command: the next boot's quote is refused
        rc = eden("run", str(TAMPER_FILE), "--backend", "board", "--out", str(work / "tamper"), "--quiet", "--no-html",
                  env=env, log=work / "tamper.log")
        obs["tamper"] = {"rc": rc, "output": tail(work / "tamper.log", 2000),
                         "applied": [e for e in events(work / "tamper") if e.get("what") == "tamper_applied"]}

        env = {**env, "EDEN_LAB_PLACES": first}  # from here on, every job wants the first board

        # 3. a serial adapter pulled out for good
        threading.Thread(target=when_booting, args=(lab, first, "unplug"), daemon=True).start()
        rc = eden("run", str(LONG), "--backend", "board", "--out", str(work / "unplugged"), "--quiet", "--no-html",
                  env=env, log=work / "unplugged.log")
        obs["unplugged"] = {"rc": rc, "summary": summary(work / "unplugged"), "output": tail(work / "unplugged.log", 1500),
                            "events": [e for e in events(work / "unplugged") if str(e.get("what", "")).startswith("console-")]}
        lab.board(first, "plug")

        # 4. kill -9 while holding the lease, then two runs for the one place
        loaded = load_lab(lab.lab_file)
        killed = subprocess.Popen([sys.executable, "-m", "eden", "run", str(SMOKE), "--backend", "board", "--out",
                                   str(work / "killed"), "--quiet", "--no-html"], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        held = None
        deadline = time.monotonic() + 120
        with LeaseStore(loaded.db_path) as store:
            while time.monotonic() < deadline and held is None:
                st = store.states([first])[0]
                held = st.lease
                time.sleep(0.5)
            time.sleep(3.0)  # well into its run: the board is being written or booting
            os.kill(killed.pid, signal.SIGKILL)
            killed.wait()
            killed_at = time.time()
            after = store.states([first])[0].lease
        time.sleep(2.0)
        obs["killed_workdirs"] = sorted(p.name for p in tmp.iterdir())  # the killed run's, until the next run reaps it
        obs["killed"] = {"held": held is not None, "still_held_after_kill": after is not None and after.token == (held.token if held else None),
                         "expires_in_s": round(after.expires_at - killed_at, 1) if after else None,
                         "left_processes": marked(mark)}
        t = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-m", "eden", "run", str(SMOKE), "--backend", "board", "--out",
                                   str(work / f"compete-{k}"), "--quiet", "--no-html"], env=env, cwd=ROOT,
                                  stdout=open(work / f"compete-{k}.log", "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                 for k in (1, 2)]
        rcs = [p.wait(900) for p in procs]
        with LeaseStore(loaded.db_path) as store:
            log = [e for e in store.history(first, limit=60) if (e["at"] or 0) >= killed_at - 1]
        obs["compete"] = {"rcs": rcs, "s": round(time.monotonic() - t, 1),
                          "log": [{"event": e["event"], "owner": e["owner"], "at": e["at"]} for e in log],
                          "outputs": [tail(work / f"compete-{k}.log", 1500) for k in (1, 2)]}

        # 4b. a run stopped with SIGTERM (a CI job cancelled): it switches the board off and gives
        # the lease back at once, without waiting for the TTL
        stopped = subprocess.Popen([sys.executable, "-m", "eden", "run", str(SMOKE), "--backend", "board", "--out",
                                    str(work / "stopped"), "--quiet", "--no-html"], env=env, cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        with LeaseStore(loaded.db_path) as store:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and store.states([first])[0].lease is None:
                time.sleep(0.5)
            held_before = store.states([first])[0].lease is not None
            time.sleep(8.0)
            stopped.send_signal(signal.SIGTERM)
            rc = stopped.wait(120)
            after_stop = store.states([first])[0].lease
        board = lab.board(first, "status")
        obs["stopped"] = {"rc": rc, "held_before": held_before, "lease_after": after_stop is not None,
                          "board_powered_after": board.get("powered"), "left_processes": marked(mark)}

        # 5. the board as a labgrid place
        obs["labgrid"] = labgrid_phase(work, lab, first, env, SMOKE)

        # 6. leftovers
        with LeaseStore(loaded.db_path) as store:
            leases = [st.place for st in store.states(lab.places) if st.lease is not None]
        obs["leaks"] = {"processes": marked(mark), "leases": leases, "tmp": sorted(p.name for p in tmp.iterdir())}
    finally:
        lab.close()
        obs["total_s"] = round(time.monotonic() - t0, 1)
        (work / "observations.json").write_text(json.dumps(obs, indent=2, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
