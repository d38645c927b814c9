"""The device-facing scenarios pass on real QEMU VMs, as they do on the simulator and emulated.

One suite run (``suites/qemu.yaml``), every entry in parallel: per entry a real controller and one
VM per device booting the reference image (built once before the suite starts), with swtpm, serial
console and user networking, in real time under TCG. ``tests/conftest.py`` starts it when the
session is collected and schedules this test last, so its waiting overlaps the rest of the suite.
"""

from __future__ import annotations

import json

import pytest

from conftest import assert_device_suite_passed, assert_tamper_refused_for_pcrs


@pytest.mark.slow
@pytest.mark.qemu
@pytest.mark.background("qemu")
def test_qemu_suite_passes(qemu_suite_run) -> None:  # type: ignore[no-untyped-def]
    # the console capture of every VM is attached to the report
    out, results = assert_device_suite_passed(qemu_suite_run, "qemu", 50 * 60, "console-")
    # the updates really went through the datastore and the other slot: the agents said so
    entries = {e["scenario"]: e for e in results["entries"]}
    run_dir = entries["baseos-update"]["run_dir"]
    timeline = (out / run_dir / "events.jsonl").read_text()
    assert '"platform_written"' in timeline and '"platform_boot"' in timeline
    # the tampered VM's swtpm quote was verified and refused for the PCRs the firmware tamper changes
    assert_tamper_refused_for_pcrs(out, results, {2, 10})

    # onboarding-smoke, in detail: what a real VM adds to the timeline, and real timings
    run_dir = out / entries["onboarding-smoke"]["run_dir"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert all(e["status"] == "passed" for e in summary["expectations"]), summary["expectations"]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    markers = [e["marker"] for e in events if e["source"] == "console" and e["what"] == "boot_marker"]
    for m in ("stage", "slot", "measured", "switch_root", "network", "agent-start"):
        assert m in markers, markers
    assert any(e["source"] == "qmp" and e["what"] == "RESUME" for e in events)
    # under TCG the scenario's deadlines were stretched (eden.qemu.hostcheck.tcg_deadline_scale)
    ready = next(e for e in events if e["what"] == "image_ready")
    assert ready["deadline_scale"] == (2.0 if ready["accel"] == "tcg" else 1.0), ready
    first = next(x for x in summary["expectations"] if x["where"] == "steps[1]")
    assert first["deadline"] is not None and first["deadline"] > 300 * ready["deadline_scale"] - 5, first
    device = {e["what"] for e in events if e["source"] == "device"}
    assert {"power_on", "boot_start", "booted", "onboarded", "attested"} <= device, device
    assert any(e["source"] == "controller" for e in events)
    console = (run_dir / "logs" / "console-dut-0.log").read_text(errors="replace")
    assert "EDEN-BOOT: agent-start" in console and '"what":"onboarded"' in console.replace(" ", "")
    assert (run_dir / "logs" / "console-dut-0.raw").stat().st_size > 0
    assert (run_dir / "logs" / "controller.log").exists()
    assert ",cache=unsafe" in (run_dir / "logs" / "qemu-dut-0.cmdline").read_text()  # guest flushes are not host fsyncs
    # real timings, from power-on, measured on the host
    t = json.loads((run_dir / "run.json").read_text())["device_timings"]["devices"]["dut-0"]
    assert 0 < t["power_on_to_agent_start"][0] < t["power_on_to_onboarded"][0] < 600, t
    onboarding = summary["metrics"]["timings"]["onboarding.time"]
    assert onboarding["min"] >= t["power_on_to_agent_start"][0] - 1.0, (onboarding, t)  # counted from power-on
