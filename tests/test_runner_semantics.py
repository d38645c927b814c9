"""Runner semantics that are easy to get wrong: runs cut off by `duration`, controller faults
triggered by a device condition, and pause/resume of a blocking rollout."""

from __future__ import annotations

from pathlib import Path

from eden.run import execute, load_for_backend

BASE = """
name: {name}
seed: 3
fleet:
  - profile: qemu-x86_64
    group: dut
    count: {count}
images:
  base: {{version: 1.0}}
  next: {{version: 2.0}}
  bad: {{version: 2.1, behaviour: crash-on-boot}}
controller:
  config_items:
    timer.config.interval: 10
    timer.test.baseimage.update: 60
"""


def run(tmp_path: Path, name: str, body: str, count: int = 1) -> dict:
    path = tmp_path / f"{name}.yaml"
    path.write_text(BASE.format(name=name, count=count) + body)
    result = execute(load_for_backend(path, "sim"), out_dir=tmp_path / f"out-{name}")
    return result.summary


def test_duration_cutting_the_steps_fails_the_run(tmp_path: Path) -> None:
    summary = run(
        tmp_path,
        "cut",
        """
duration: 2m
steps:
  - power_on: {}
  - expect: {version: next, within: 1h}
expect:
  - device_state: ONLINE
""",
    )
    assert summary["verdict"] == "failed"
    assert [s["status"] for s in summary["steps"]] == ["passed", "interrupted"]
    (exp,) = [e for e in summary["expectations"] if e["where"].startswith("expect[")]
    assert exp["status"] == "failed" and "duration ended" in exp["detail"]["why"]


def test_controller_fault_with_when_fires_once_on_the_first_device(tmp_path: Path) -> None:
    summary = run(
        tmp_path,
        "ctrlwhen",
        """
steps:
  - power_on: {}
  - expect: {device_state: ONLINE, within: 5m}
  - baseos_update: {image: next}
  - expect: {current_partition: {state: inprogress, version: next}, within: 10m}
  - wait: 3m
faults:
  - controller_503: {duration: 2m}
    when: {current_partition: {state: inprogress}}
expect:
  - name: the 503s during the test window delayed but did not prevent the commit
    current_partition: {state: active, version: next}
    within: 10m
  - metric: {name: controller.rejected_503, min: 1}
""",
    )
    assert summary["verdict"] == "passed", summary["expectations"]


def test_paused_rollout_hands_back_the_steps_and_resumes(tmp_path: Path) -> None:
    summary = run(
        tmp_path,
        "pause",
        """
steps:
  - power_on: {}
  - expect: {device_state: ONLINE, within: 5m}
  - rollout:
      image: bad
      waves: [{count: 1}, {fraction: 100%}]
      on_error: pause
      wave_timeout: 30m
  - expect: {rollout: {state: paused}}
  - rollout:
      image: next
      waves: [{fraction: 100%}]
  - resume_rollout: {}
expect:
  - name: the second rollout completed while the first was paused
    version: next
    within: 30m
""",
        count=3,
    )
    assert summary["verdict"] == "passed", summary["expectations"]
    first, second = summary["rollouts"]
    assert first["waves"][0]["outcome"] == "error threshold exceeded"
    assert second["state"] == "completed"
