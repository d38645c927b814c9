"""The device-facing scenarios pass on real QEMU VMs, as they do on the simulator and emulated.

One suite run (``suites/qemu.yaml``), every entry in parallel: per entry a real controller and one
VM per device booting the reference image (built once before the suite starts), with swtpm, serial
console and user networking, in real time under TCG. ``tests/conftest.py`` starts it when the
session is collected and schedules this test last, so its waiting overlaps the rest of the suite.
"""

from __future__ import annotations

import pytest

from conftest import DEVICE_SCENARIOS, assert_device_suite_passed


@pytest.mark.slow
@pytest.mark.qemu
@pytest.mark.background("qemu")
def test_qemu_suite_passes(qemu_suite_run) -> None:  # type: ignore[no-untyped-def]
    # the console capture of every VM is attached to the report
    out, results = assert_device_suite_passed(qemu_suite_run, "qemu", 50 * 60, "console-")
    # the updates really went through the datastore and the other slot: the agents said so
    run_dir = results["entries"][DEVICE_SCENARIOS.index("baseos-update")]["run_dir"]
    timeline = (out / run_dir / "events.jsonl").read_text()
    assert '"platform_written"' in timeline and '"platform_boot"' in timeline
