"""An EVE board on ``--backend board`` (docs/board.md "EVE boards"), without an EVE image (none can be
downloaded here): a stand-in board with UEFI firmware (OVMF and swtpm, ``firmware: ovmf`` in its
board.json) behind a real PDUDaemon and a real ser2net, whose media driver gets the synthetic
EVE-layout disk of tests/evedisk.py as ``EDEN_EVE_IMAGE``. Its GRUB prints the profile's boot
marker, reads CONFIG by its FAT label and shows ``server``, then powers the board off.

What is asserted: the board backend writes the live image and EVE's CONFIG (the lab address, the
controller's root and onboarding certificates, the board's own serial as ``soft_serial``) onto
the board's storage through the media driver, grown for EVE's IMGB and P3; the board boots what
was written (its console, read through ser2net, shows CONFIG's ``server``); the boot marker and
the controller's ``onboarded`` reach the timeline (the registration comes from ``eden agent`` on
the host with the board's serial and the CONFIG files: this tests the backend, not EVE); the
controller pre-registered the board's hardware serial from the lab file. Bad input (an EVE place
without a serial, no ``EDEN_EVE_IMAGE``) is refused at validation with file:line:col."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from eden_subprocess import env as eden_env
from eden_subprocess import start_eden
from evedisk import make_disk, register_as, synthetic_eve

from eden.errors import EXIT_OK
from eden.lab.standin import command
from eden.scenario.load import load_scenario
from eden.qemu import eve_image as ev

DEVICE = "eve-0"
SCENARIO = """
name: eve-board
description: an EVE board onboards to the lab's controller
seed: 1
fleet:
  - profile: eve-qemu-x86_64
    group: eve
images:
  eve-13: {version: 13.4.0}
steps:
  - power_on: {}
  - expect: {onboarded: true, within: 90s}
metrics: [onboarding.time]
"""


EVE_LAB = """\
lab: eve
controller: {listen: '127.0.0.1:0', advertise: 10.0.2.2}
places:
  board-1:
    profile: eve-qemu-x86_64
    power: {command: {'on': 'true', 'off': 'true'}}
    console: {network: {url: 'tcp://127.0.0.1:9'}}
    media: {device: board-1.img}
"""


def test_an_eve_place_without_its_serial_or_an_eve_image_is_refused(tmp_path: Path) -> None:
    """What ``eden validate --backend board`` reports (the CLI prints these issues, exit 2)."""
    from eden.backends.board import input_issues

    scenario = tmp_path / "eve.yaml"
    scenario.write_text(SCENARIO)
    loaded = load_scenario(scenario)
    lab = tmp_path / "lab.yaml"
    lab.write_text(EVE_LAB)
    issues = input_issues(loaded, {"EDEN_LAB": str(lab)})
    at = {(i.file, i.line, i.col): i.message for i in issues}
    assert "hardware serial" in at[(str(lab), 5, 5)], issues  # at the place's profile key
    assert any(f == str(scenario) and "EDEN_EVE_IMAGE is not set" in m for (f, _l, _c), m in at.items()), issues
    lab.write_text(EVE_LAB.replace("    profile:", "    serial: ABC123\n    profile:"))
    live = make_disk(tmp_path / "live.raw")  # EVE's layout: what validation looks for
    assert input_issues(loaded, {"EDEN_LAB": str(lab), "EDEN_EVE_IMAGE": str(live)}) == []


class _Person:
    """The person at the lab host's terminal (a pty: eden's stdin and stdout): when asked to write
    the board's image, copies it onto the stand-in board's storage and presses Enter."""

    def __init__(self, board: Path) -> None:
        self.board = board
        self.master, self.slave = pty.openpty()
        self.text = ""
        self.wrote: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.text += chunk.decode(errors="replace")
            m = re.search(r"write (\S+) to the board's storage", self.text)
            if m is not None and not self.wrote:
                subprocess.run(["cp", "--sparse=always", m[1], str(self.board / "disk.img")], check=True)
                self.wrote.append(m[1])
                os.write(self.master, b"\n")

    def close(self) -> None:
        os.close(self.slave)
        os.close(self.master)
        self._thread.join(5)


def _run_eve_board(tmp_path: Path, *, by_hand: bool) -> dict[str, Any]:
    """``eden run --backend board`` of SCENARIO on a one-place stand-in lab of an EVE board; the
    registration comes once the board's console shows it booted what was written."""
    from eden.controller.client import AdminClient
    from eden.controller.layout import Layout
    from eden.lab.leases import LeaseStore
    from eden.lab.standin_lab import build_standin_lab

    live = synthetic_eve(tmp_path, then_halt=True)  # a board that shows CONFIG, then powers itself off
    scenario = tmp_path / "eve.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    env = eden_env(tmp_path, drop=["EDEN_LAB"], EDEN_EVE_IMAGE=str(live))
    agents: list[subprocess.Popen[str]] = []
    seen: dict[str, Any] = {"live": live, "live_before": live.read_bytes(), "out": out}
    with build_standin_lab(tmp_path / "lab", ["eve-qemu-x86_64"], name="eve", first_output=60) as lab:
        place = lab.places[0]
        board = lab.boards[place]
        seen.update(place=place, board=board, serial=f"standin-{place}")
        person = None
        popen: dict[str, Any] = {}
        if by_hand:
            text = lab.lab_file.read_text()
            lab.lab_file.write_text(re.sub(r"    media:\n      device: .*\n", "    media: {manual: {}}\n", text))
            person = _Person(board)
            popen = {"stdin": person.slave, "stdout": person.slave}
        proc = start_eden("run", str(scenario), "--backend", "board", "--lab", str(lab.lab_file), "--out", str(out),
                          "--quiet", env=env, **popen)
        try:
            deadline = time.monotonic() + 180
            while not command(board, "status").get("powered"):
                assert proc.poll() is None, (person.text if person else proc.communicate()[0])[-3000:]
                assert time.monotonic() < deadline, "the board was never switched on"
                time.sleep(0.2)
            work = next((tmp_path / "tmp").glob("eden-board-*"))
            capture = work / "devices" / DEVICE / "console" / "console.log"
            while "EDEN-TEST config=" not in (capture.read_text(errors="replace") if capture.is_file() else ""):
                assert proc.poll() is None, (person.text if person else proc.communicate()[0])[-3000:]
                assert time.monotonic() < deadline, "the board's console never showed its boot loader"
                time.sleep(0.2)
            seen["api"] = json.loads((work / "controller" / "serve.json").read_text())["api_url"]
            seen["root"] = Layout(work / "controller").root_cert.read_bytes()
            seen["device"] = AdminClient.for_dir(work / "controller").device(seen["serial"])
            agents.append(register_as(tmp_path, seen["serial"], DEVICE, work / "devices" / DEVICE / "config", seen["api"], env))
            if person is None:
                seen["text"] = proc.communicate(timeout=240)[0]
            else:
                proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for a in agents:
                if a.poll() is None:
                    os.killpg(a.pid, signal.SIGKILL)
                a.wait()
            if person is not None:
                person.close()
                seen.update(text=person.text, wrote=person.wrote)
        seen["rc"] = proc.returncode
        seen["powered_after"] = command(board, "status").get("powered")
        with LeaseStore(lab.lab_file.parent / "leases.sqlite") as store:
            seen["leases_after"] = [st.lease for st in store.states([place])]
        seen["cmdline"] = (board / "vm" / "qemu.cmdline").read_text()
        disk = board / "disk.img"
        seen["disk_size"] = disk.stat().st_size
        seen["config"] = {name: ev.read_eve_config(disk, name) for name in ev.list_eve_config(disk)}
    return seen


def _assert_booted_and_onboarded(tmp_path: Path, seen: dict[str, Any]) -> None:
    assert seen["rc"] == EXIT_OK, seen["text"][-3000:]
    assert seen["powered_after"] is False  # left switched off, through PDUDaemon
    assert seen["leases_after"] == [None]
    place, serial, out = seen["place"], seen["serial"], seen["out"]
    # The live image with EVE's CONFIG for the lab's controller, on the board's storage.
    port = str(seen["api"]).rsplit(":", 1)[1].strip("/")
    config = seen["config"]
    assert config["server"] == f"10.0.2.2:{port}\n".encode()
    assert config["root-certificate.pem"] == seen["root"]
    assert config["soft_serial"] == f"{serial}\n".encode()
    assert sorted(config) == sorted([*ev.DEVICE_CONFIG_FILES, "soft_serial"])
    assert seen["live"].read_bytes() == seen["live_before"]  # the user's image is never written
    # The controller pre-registered the board's own serial (the lab file's), learning its PCRs.
    assert seen["device"]["serial"] == serial and seen["device"]["learn"] is True
    cmd = seen["cmdline"]
    assert f"-smbios type=1,serial={serial}" in cmd and "if=pflash" in cmd and "-kernel" not in cmd

    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "passed", summary["expectations"]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    harness = {e["what"]: e for e in events if e["source"] == "harness"}
    assert "image_ready" not in harness  # no reference image for an EVE board
    assert harness["place_leased"]["place"] == place
    assert harness["eve_config_written"]["server"] == f"10.0.2.2:{port}"
    power_on = next(e for e in events if e["source"] == "device" and e["what"] == "power_on")
    assert power_on["power"] == "pdudaemon", power_on
    markers = [e for e in events if e["source"] == "console" and e["what"] == "boot_marker"]
    assert len(markers) == 1 and markers[0]["text"] == "Linux version", markers
    assert not [e for e in events if e["what"] in ("unexpected_reset", "kernel_panic")]
    onboarded = [e for e in events if e["what"] == "onboarded"]
    assert [(e["source"], e["device"]) for e in onboarded] == [("controller", DEVICE)], onboarded
    # the board booted what was written: its console, through ser2net, shows CONFIG's server
    console = (out / "logs" / f"console-{DEVICE}.log").read_text(errors="replace")
    assert "Linux version 0.0-eden-synthetic" in console and f"10.0.2.2:{port}" in console, console[-2000:]
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["places"] == {DEVICE: place}
    timings = run_info["device_timings"]["devices"][DEVICE]
    assert 0 < timings["power_on_to_boot_marker"][0] < timings["power_on_to_onboarded"][0], timings
    assert list((tmp_path / "tmp").iterdir()) == [], "temp dirs left behind"


@pytest.mark.slow
@pytest.mark.qemu
def test_an_eve_board_gets_its_image_and_config_boots_them_and_is_seen_onboarding(tmp_path: Path) -> None:
    seen = _run_eve_board(tmp_path, by_hand=False)
    _assert_booted_and_onboarded(tmp_path, seen)
    assert seen["disk_size"] == 8 * 2**30  # grown to the profile's storage for EVE's IMGB and P3
    events = [json.loads(line) for line in (seen["out"] / "events.jsonl").read_text().splitlines()]
    media = next(e for e in events if e["what"] == "media_written")
    assert media["device"] == str(seen["board"] / "disk.img"), media


@pytest.mark.slow
@pytest.mark.qemu
def test_a_board_without_a_media_device_is_written_by_a_person_when_asked(tmp_path: Path) -> None:
    """``media: {manual: {}}``: eden makes the image in the run's folder and asks at the terminal;
    the person (the test, on eden's pty) writes it to the board and presses Enter."""
    seen = _run_eve_board(tmp_path, by_hand=True)
    _assert_booted_and_onboarded(tmp_path, seen)
    assert len(seen["wrote"]) == 1 and "Place eve-1: write" in seen["text"], seen["text"][-2000:]
    assert seen["disk_size"] == seen["live"].stat().st_size  # not grown: the image's storage-init grows it
    assert not Path(seen["wrote"][0]).exists()  # removed after the Enter: it held the onboarding key
    events = [json.loads(line) for line in (seen["out"] / "events.jsonl").read_text().splitlines()]
    media = next(e for e in events if e["what"] == "media_written")
    assert media["device"] == "manual", media
