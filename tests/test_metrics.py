"""Timings cut from the timeline: rollbacks of crash-on-boot images and retried updates.

A crash-on-boot image dies before its nodeagent runs: the old image reports the stale UPDATE
reason and no FAILED status (spec §3), so rollbacks are counted by partition outcome."""

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
  - expect: {boot_reason: UPDATE, version: base, other_partition: {state: inprogress, version: crashy}, within: 15m}
expect:
  - baseos_status: NONE
"""

ROLLOUT = """
name: bad-image-rollout
seed: 3
fleet:
  - {profile: nuc-class, count: 20, group: nuc}
images:
  base: {version: 1.0}
  crashy: {version: 2.0, behaviour: crash-on-boot}
controller:
  config_items: {timer.config.interval: 10, timer.test.baseimage.update: 60}
steps:
  - power_on: {}
  - expect: {device_state: ONLINE, within: 10m}
  - rollout:
      image: crashy
      waves: [{fraction: 50%}, {fraction: 100%}]
      error_threshold: 5%
      on_error: stop
      wave_timeout: 6h
expect:
  - rollout: {state: stopped}
  - name: nobody got the second wave
    version: base
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


def test_a_rollout_halts_on_devices_that_came_back_without_a_failed_status(tmp_path: Path) -> None:
    """An image that dies before its nodeagent leaves no FAILED status (§3); the device is back on
    the old version with the new one inprogress, and the rollout counts that as a failure at once
    rather than waiting for its 6 h wave timeout."""
    path = tmp_path / "r.yaml"
    path.write_text(ROLLOUT)
    summary = execute(load_for_backend(path, "sim"), out_dir=tmp_path / "out").summary
    assert summary["verdict"] == "passed", summary["expectations"]
    assert summary["metrics"]["counters"]["rollbacks"] == 10
    assert summary["simulated_seconds"] < 2 * 3600, "the rollout waited for its wave timeout"


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
