"""Scenario texts the real-time tests share (each test writes one into its tmp_path)."""

from __future__ import annotations


def preamble(name: str, description: str, *, seed: int = 1, group: str | None = None) -> str:
    """The head of a one-reference-device scenario, up to and including ``images:`` with the base
    image; the caller appends further images, then ``controller:``, ``steps:`` and ``expect:``."""
    device = "  - profile: qemu-x86_64\n" + (f"    group: {group}\n" if group else "")
    return f"""
name: {name}
description: {description}
seed: {seed}
fleet:
{device}images:
  base: {{version: 13.4.0}}
"""


def onboard_then_wait(name: str, description: str, *, within: str = "1m", wait: str = "10m") -> str:
    """One reference device that powers on, onboards within ``within``, then waits ``wait``: a run
    that lasts long enough to be interrupted or killed from outside."""
    return preamble(name, description) + f"""steps:
  - power_on: {{}}
  - expect: {{onboarded: true, within: {within}}}
  - wait: {wait}
"""


FALLBACK_DURING_OUTAGE = preamble(
    "fallback-during-outage",
    '"force_fallback while devices cannot reach the controller: the admin side takes the change and the'
    ' device falls back to its old image once it reaches the controller again (sim and emulated alike)"',
    group="dut",
) + """  next: {version: 13.5.0, size: 20M}
controller:
  config_items:
    timer.config.interval: 5
    timer.test.baseimage.update: 30
steps:
  - power_on: {}
  - expect: {onboarded: true, device_state: ONLINE, within: 1m}
  - baseos_update: {image: next}
  - expect: {current_partition: {state: active, version: next}, within: 4m}
  - controller_outage: {}
  - force_fallback: {}
  - wait: 10s
  - controller_restore:
  - expect: {current_partition: {state: active, version: base}, within: 3m}
"""
"""A scenario the sim and emulated backends must both pass (tests/test_backend_ports.py and
tests/test_emulated_backend.py)."""
