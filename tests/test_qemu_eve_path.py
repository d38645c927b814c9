"""The real-EVE path of the ``qemu`` backend without an EVE image (docs/real-eve.md "Running scenarios
on EVE"): ``eden run`` with a device on the ``eve-qemu-x86_64`` profile and
``EDEN_EVE_IMAGE`` pointing at a synthetic disk with EVE's live layout (tests/evedisk.py) whose
EFI System partition holds a GRUB that prints the profile's boot marker, reads CONFIG and powers off.

What is asserted: no reference image is built; the per-VM disk's CONFIG partition holds the
controller's address (as the guest sees it), root certificate, onboarding certificate and key and
the soft serial (read back with ``read_eve_config`` while the run is on); the scenario image's
``path:`` file is in the controller's datastore; the VM really powers on with OVMF and swtpm
(QMP events, the QEMU command line); the boot marker reaches the timeline; a VM that never
onboards fails its expectation (exit 1, a product failure, not an infrastructure error); nothing
is left behind. A wrong ``EDEN_EVE_IMAGE`` is invalid input (exit 2) before any VM starts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from evedisk import make_disk, register_as, run, synthetic_eve
from eden_subprocess import env, run_eden, start_eden
from leakcheck import marked_processes

from eden.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from eden.qemu import eve_image as ev

pytestmark = [pytest.mark.slow, pytest.mark.qemu]
MARK = f"eden-qemu-eve-test-{os.getpid()}"
DEVICE = "eve-0"
SERIAL = f"eve-qemu-x86_64-{DEVICE}"


SCENARIO = """
name: eve-path
description: an EVE device on a synthetic EVE-layout disk; it boots but never onboards
seed: 1
fleet:
  - profile: eve-qemu-x86_64
    group: eve
    overrides: {memory: 1G, reserved_memory: 256M, cores: 1}
images:
  eve-13: {version: 13.4.0, path: rootfs.img}
steps:
  - power_on: {}
  - expect: {onboarded: true, within: 25s}
"""


def _ours() -> set[int]:
    return marked_processes("EDEN_TEST_MARK", MARK)


SOCK_DIR = Path(f"/tmp/eqe-{os.getpid()}")
"""Where this module's Machines make their short socket directories (EDEN_SOCK_DIR), so that VMs
of other runs on the host do not count as leaks."""


@pytest.fixture(autouse=True)
def _sock_dir() -> Iterator[None]:
    SOCK_DIR.mkdir(exist_ok=True)
    try:
        yield
    finally:
        shutil.rmtree(SOCK_DIR, ignore_errors=True)


def _assert_sock_dirs_removed(out: Path) -> None:
    """The short socket directories the run's Machines made (named in their QEMU command lines)
    are gone."""
    cmdlines = list((out / "logs").glob("qemu-*.cmdline"))
    assert cmdlines
    dirs = {m for f in cmdlines for m in re.findall(rf"{SOCK_DIR}/eden-vm-[^/\s,]+", f.read_text())}
    assert dirs, "the VM's sockets were not in EDEN_SOCK_DIR"
    assert list(SOCK_DIR.iterdir()) == [], f"VM socket directories left behind: {sorted(SOCK_DIR.iterdir())}"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return env(tmp_path, mark=MARK, drop=("EDEN_EVE_IMAGE",), EDEN_SOCK_DIR=str(SOCK_DIR), **extra)


def _synthetic_eve(tmp_path: Path) -> Path:
    return synthetic_eve(tmp_path, then_halt=True)  # it shows CONFIG, then powers off: no core kept busy


def _run_with(tmp_path: Path, scenario: Path, out: Path, env: dict[str, str],
              during: Callable[[Path], None]) -> tuple[subprocess.Popen[str], str]:
    """``eden run`` in the background; ``during(work dir)`` once the EVE device's QEMU started."""
    proc = start_eden("run", str(scenario), "--backend", "qemu", "--out", str(out), "--quiet", env=env)
    try:
        deadline = time.monotonic() + 60
        while not (cmdlines := list((tmp_path / "tmp").glob(f"eden-qemu-*/devices/{DEVICE}/vm/qemu.cmdline"))):
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the VM never started"
            time.sleep(0.2)
        during(cmdlines[0].parents[3])
        text, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, text


def test_an_eve_device_boots_with_its_config_and_fails_to_onboard(tmp_path: Path) -> None:
    live = _synthetic_eve(tmp_path)
    live_before = live.read_bytes()
    (tmp_path / "rootfs.img").write_bytes(os.urandom(64 * 1024))  # stands for EVE's rootfs image
    scenario = tmp_path / "eve.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    env = _env(tmp_path, EDEN_EVE_IMAGE=str(live), EDEN_QEMU_TCG_SCALE="1")  # it fails at 25 s, as written
    t0 = time.monotonic()
    seen: dict[str, object] = {}

    def during(work: Path) -> None:
        """Once QEMU has started, CONFIG was written: copy the per-VM disk and read the
        controller's side (the run's working directory is removed at its end)."""
        from eden.controller.client import AdminClient
        from eden.controller.layout import Layout

        run("cp", "--sparse=always", str(work / "devices" / DEVICE / "disk.raw"), str(tmp_path / "vm-disk.raw"))
        layout = Layout(work / "controller")
        seen["root"] = layout.root_cert.read_bytes()
        seen["onboard"] = layout.cert("onboard").read_bytes()
        seen["api"] = json.loads((work / "controller" / "serve.json").read_text())["api_url"]
        admin = AdminClient.for_dir(work / "controller")
        seen["content"] = admin.content()
        seen["device"] = admin.device(SERIAL)

    proc, text = _run_with(tmp_path, scenario, out, env, during)
    wall = time.monotonic() - t0

    # A VM that never onboards is a failed expectation: exit 1, not an infrastructure error.
    assert proc.returncode == EXIT_FAILED, text[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "failed" and summary.get("error") is None, summary
    assert [e["status"] for e in summary["expectations"]] == ["failed"], summary["expectations"]

    # CONFIG of the per-VM disk: what the device needs to reach and trust our controller.
    vm_disk = tmp_path / "vm-disk.raw"
    port = str(seen["api"]).rsplit(":", 1)[1].strip("/")
    assert ev.read_eve_config(vm_disk, "server") == f"10.0.2.2:{port}\n".encode()
    assert ev.read_eve_config(vm_disk, "root-certificate.pem") == seen["root"]
    assert ev.read_eve_config(vm_disk, "v2tlsbaseroot-certificates.pem") == seen["root"]
    assert ev.read_eve_config(vm_disk, "onboard.cert.pem") == seen["onboard"]
    assert b"PRIVATE KEY" in ev.read_eve_config(vm_disk, "onboard.key.pem")
    assert ev.read_eve_config(vm_disk, "soft_serial") == f"{SERIAL}\n".encode()
    assert ev.list_eve_config(vm_disk) == sorted([*ev.DEVICE_CONFIG_FILES, "soft_serial"])  # no spec.json, hostname
    assert vm_disk.stat().st_size == 8 * 2**30  # grown to the profile's storage for EVE's IMGB and P3
    assert live.read_bytes() == live_before  # the user's image is never written
    # Pre-registered as on the reference image, with EVE's PCRs learned at its first quote.
    assert seen["device"]["serial"] == SERIAL and seen["device"]["learn"] is True and not seen["device"]["onboarded"]  # type: ignore[index]
    # The scenario image's path: is EVE's rootfs in the controller's datastore.
    assert [(c["name"], c["version"], c["size"]) for c in seen["content"]] == [("eve-13", "13.4.0", 64 * 1024)]  # type: ignore[index, union-attr]

    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    harness = {e["what"]: e for e in events if e["source"] == "harness"}
    assert "image_ready" not in harness and "slots_ready" not in harness  # no reference image built
    assert harness["eve_image"]["path"] == str(live.resolve()) and harness["eve_image"]["devices"] == [DEVICE]
    assert harness["eve_config_written"]["partition"] == 4 and harness["eve_config_written"]["server"] == f"10.0.2.2:{port}"
    assert any(e["source"] == "qmp" and e["what"] == "RESUME" and e["device"] == DEVICE for e in events)
    assert any(e["source"] == "device" and e["what"] == "power_on" for e in events)
    markers = [e for e in events if e["source"] == "console" and e["what"] == "boot_marker"]
    assert len(markers) == 1 and markers[0]["text"] == "Linux version" and markers[0]["since_power_on"] > 0, markers
    assert not any(e["what"] == "onboarded" for e in events)

    # The machine: OVMF (code read-only, per-VM variables), swtpm, the disk on virtio, no -kernel,
    # the pre-registered serial in SMBIOS; console and swtpm logs kept.
    run_info = json.loads((out / "run.json").read_text())
    accel = run_info["device_timings"]["accel"]
    cmd = (out / "logs" / f"qemu-{DEVICE}.cmdline").read_text()
    assert "-kernel" not in cmd and "if=pflash,format=raw,unit=0,readonly=on" in cmd and "OVMF_VARS.fd" in cmd
    assert "-tpmdev emulator" in cmd and "tpm-tis" in cmd and "virtio-blk-pci" in cmd
    assert f"-smbios type=1,serial={SERIAL}" in cmd and "-machine q35" in cmd
    assert ("-cpu max" in cmd) == (accel == "tcg")
    console = (out / "logs" / f"console-{DEVICE}.log").read_text(errors="replace")
    assert "Linux version 0.0-eden-synthetic" in console and f"10.0.2.2:{port}" in console
    assert "config=(hd0,gpt4)" in console  # GRUB found the CONFIG eden wrote, by its FAT label
    assert any("swtpm" in f.name for f in (out / "logs").iterdir()), sorted(f.name for f in (out / "logs").iterdir())
    timings = run_info["device_timings"]["devices"][DEVICE]
    assert timings["power_on_to_onboarded"] == [] and 0 < timings["power_on_to_boot_marker"][0] < 60, timings
    print(f"\nqemu EVE path: wall {wall:.1f} s, power-on to boot marker {timings['power_on_to_boot_marker'][0]} s ({accel})")

    assert not _ours(), "processes left behind"
    assert list((tmp_path / "tmp").iterdir()) == [], "temp dirs left behind"
    _assert_sock_dirs_removed(out)


ONBOARD = """
name: eve-onboard-seen
description: the EVE device's serial onboards (by a stand-in on the host); the backend must see it
seed: 1
fleet:
  - profile: eve-qemu-x86_64
    group: eve
    overrides: {memory: 1G, reserved_memory: 256M, cores: 1}
images:
  eve-13: {version: 13.4.0}
steps:
  - power_on: {}
  - expect: {onboarded: true, within: 45s}
metrics: [onboarding.time]
"""


def test_onboarding_of_an_eve_device_is_seen_through_the_controller(tmp_path: Path) -> None:
    """EVE prints nothing eden parses, so the backend learns of onboarding from the controller's
    admin API. No EVE can register here: while the VM runs the synthetic GRUB, a stand-in on the
    host (``eden agent``, eden's emulated device) registers with the VM's serial and the CONFIG
    files the backend made for it. This tests the backend's observation, not EVE."""
    live = _synthetic_eve(tmp_path)
    scenario = tmp_path / "onboard.yaml"
    scenario.write_text(ONBOARD)
    out = tmp_path / "out"
    env = _env(tmp_path, EDEN_EVE_IMAGE=str(live))
    agents: list[subprocess.Popen[str]] = []

    def during(work: Path) -> None:
        api = json.loads((work / "controller" / "serve.json").read_text())["api_url"]
        agents.append(register_as(tmp_path, SERIAL, DEVICE, work / "devices" / DEVICE / "config", api, env))

    try:
        proc, text = _run_with(tmp_path, scenario, out, env, during)
    finally:
        for a in agents:
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGKILL)
            a.wait()
    assert agents, "the stand-in never started"
    assert proc.returncode == EXIT_OK, text[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "passed", summary["expectations"]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    onboarded = [e for e in events if e["what"] == "onboarded"]
    assert [(e["source"], e["device"]) for e in onboarded] == [("controller", DEVICE)], onboarded  # no agent line
    power_on = next(e["t"] for e in events if e["source"] == "device" and e["what"] == "power_on")
    timings = json.loads((out / "run.json").read_text())["device_timings"]["devices"][DEVICE]
    assert timings["power_on_to_onboarded"] == [pytest.approx(onboarded[0]["t"] - power_on, abs=0.01)], (timings, power_on)
    assert 0 < timings["power_on_to_onboarded"][0] < 45
    assert summary["metrics"]["timings"]["onboarding.time"]["count"] == 1
    assert not _ours(), "processes left behind"
    assert list((tmp_path / "tmp").iterdir()) == [], "temp dirs left behind"
    _assert_sock_dirs_removed(out)


REFERENCE = """
name: reference
description: a reference-image device
fleet:
  - profile: qemu-x86_64
images:
  base: {version: 13.4.0}
steps:
  - power_on: {}
"""


def _eden_run(tmp_path: Path, scenario: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return run_eden("run", str(scenario), "--backend", "qemu", "--out", str(tmp_path / "out"), "--quiet",
                    env=_env(tmp_path, **extra), timeout=120)


def test_a_wrong_eve_image_is_invalid_input_before_any_vm_starts(tmp_path: Path) -> None:
    scenario = tmp_path / "eve.yaml"
    scenario.write_text(SCENARIO)
    (tmp_path / "rootfs.img").write_bytes(b"x")
    not_a_disk = tmp_path / "live.raw"
    not_a_disk.write_bytes(b"\0" * 2**20)
    no_config = make_disk(tmp_path / "noconfig.raw", [(1, "EFI System", ev.EFI_SYSTEM_TYPE, 4), (2, "IMGA", ev.ROOTFS_TYPE, 4)])
    cases = [
        ({"EDEN_EVE_IMAGE": str(not_a_disk)}, scenario, "no GPT partition table"),
        ({"EDEN_EVE_IMAGE": str(no_config)}, scenario, "no GPT partition named 'CONFIG' (partitions: 1:EFI System, 2:IMGA)"),
        ({"EDEN_EVE_IMAGE": str(tmp_path / "missing.raw")}, scenario, "EDEN_EVE_IMAGE: EVE image not found"),
        ({}, scenario, "EDEN_EVE_IMAGE is not set"),
    ]
    reference = tmp_path / "reference.yaml"
    reference.write_text(REFERENCE)
    cases.append(({"EDEN_EVE_IMAGE": str(no_config)}, reference, "EDEN_EVE_IMAGE is set but no device of the fleet is an EVE device"))
    good = make_disk(tmp_path / "good.raw")
    missing_rootfs = tmp_path / "sub" / "eve.yaml"
    missing_rootfs.parent.mkdir()
    missing_rootfs.write_text(SCENARIO)  # path: rootfs.img is relative to the scenario file
    cases.append(({"EDEN_EVE_IMAGE": str(good)}, missing_rootfs, "image eve-13: path 'rootfs.img' not found"))
    # a qcow2 is checked once converted into the per-VM raw disk: after the controller started,
    # still before any VM, and the controller is stopped
    qcow = tmp_path / "noconfig.qcow2"
    run("qemu-img", "convert", "-O", "qcow2", str(no_config), str(qcow))
    cases.append(({"EDEN_EVE_IMAGE": str(qcow)}, scenario, "no GPT partition named 'CONFIG'"))
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(SCENARIO.replace("fleet:\n", "fleet:\n  - profile: qemu-x86_64\n"))
    cases.append(({"EDEN_EVE_IMAGE": str(good)}, mixed, "mixes EVE and reference-image devices"))
    for extra, sc, message in cases:
        proc = _eden_run(tmp_path, sc, **extra)
        text = proc.stdout + proc.stderr
        assert proc.returncode == EXIT_INVALID, (extra, text[-2000:])
        assert message in text, (message, text[-2000:])
        assert "Traceback" not in text
        assert not list((tmp_path / "tmp").glob("eden-qemu-*")), "the working directory was left behind"
        assert not list((tmp_path / "out").glob("logs/qemu-*.cmdline")), "a VM was started"
    assert not _ours(), "processes left behind"


def test_validate_for_qemu_reports_real_image_inputs_at_their_position(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`eden validate --backend qemu` checks what `run` would refuse at start:
    a missing path: image points at its `path:`, a missing EDEN_EVE_IMAGE at the EVE fleet entry."""
    from eden import cli

    scenario = tmp_path / "eve.yaml"
    scenario.write_text(SCENARIO)
    monkeypatch.delenv("EDEN_EVE_IMAGE", raising=False)
    assert cli.main(["validate", "--backend", "qemu", str(scenario)]) == EXIT_INVALID
    err = capsys.readouterr().err
    lines = SCENARIO.splitlines()
    line = lines.index("  eve-13: {version: 13.4.0, path: rootfs.img}")
    col = lines[line].index("rootfs.img") + 1
    assert f"eve.yaml:{line + 1}:{col}: error: image eve-13: path 'rootfs.img' not found" in err, err
    fleet = lines.index("  - profile: eve-qemu-x86_64")
    assert f"eve.yaml:{fleet + 1}:14: error: the fleet has EVE devices (profile eve-qemu-x86_64) but EDEN_EVE_IMAGE is not set" in err, err
    # the same file validates for the simulator, which needs neither
    assert cli.main(["validate", str(scenario)]) == EXIT_OK
    mixed = tmp_path / "ref.yaml"
    mixed.write_text(REFERENCE.replace("  base: {version: 13.4.0}", "  base: {version: 13.4.0, path: rootfs.img}"))
    assert cli.main(["validate", "--backend", "qemu", str(mixed)]) == EXIT_INVALID
    assert "no device of the fleet runs EVE-OS" in capsys.readouterr().err
