"""Timings cut from the timeline: rollbacks of crash-on-boot images and retried updates."""

from __future__ import annotations

from pathlib import Path

from eden.run import execute, load_for_backend

SCENARIO = """
name: crash-then-retry
seed: 5
fleet:
  - {profile: nuc-class, group: dut}
images:
  base: {version: 1.0}
  crashy: {version: 2.0, behaviour: crash-on-boot}
controller:
  config_items: {timer.config.interval: 10, timer.test.baseimage.update: 60}
steps:
  - power_on: {}
  - expect: {device_state: ONLINE, within: 5m}
  - baseos_update: {image: crashy}
  - expect: {boot_reason: FALLBACK, version: base, within: 15m}
expect:
  - baseos_status: FAILED
"""


def test_crash_on_boot_rollback_is_timed_and_failed_attempt_not_counted_as_update(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    summary = execute(load_for_backend(path, "sim"), out_dir=tmp_path / "out").summary
    assert summary["verdict"] == "passed", summary["expectations"]
    timings = summary["metrics"]["timings"]
    assert summary["metrics"]["counters"]["rollbacks"] == 1
    assert timings["rollback.time"]["count"] == 1
    # crash at 0.6 x boot time, then a full boot of the old image: between one and two boot times
    boot = timings["boot.time"]["max"]
    assert 0.5 * boot < timings["rollback.time"]["max"] < 2.5 * boot
    assert timings["update.duration"]["count"] == 0


def test_onboarding_is_timed_once_when_both_ends_report_it() -> None:
    """Real backends hear 'onboarded' from the agent and from the controller: one onboarding."""
    from eden.metrics import timings
    from eden.timeline import Timeline

    tl = Timeline()
    tl.add(0.0, "device", "d-0", "boot_start", {})
    tl.add(20.0, "controller", "d-0", "onboarded", {})
    tl.add(20.1, "device", "d-0", "onboarded", {})
    tl.add(30.0, "device", "d-1", "boot_start", {})
    tl.add(55.0, "device", "d-1", "onboarded", {})
    assert timings(tl)["onboarding.time"] == [20.0, 25.0]
