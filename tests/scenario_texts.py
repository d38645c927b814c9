"""Scenario texts the real-time tests share (each test writes one into its tmp_path)."""

from __future__ import annotations


def onboard_then_wait(name: str, description: str, *, within: str = "1m", wait: str = "10m") -> str:
    """One reference device that powers on, onboards within ``within``, then waits ``wait``: a run
    that lasts long enough to be interrupted or killed from outside."""
    return f"""
name: {name}
description: {description}
seed: 1
fleet:
  - profile: qemu-x86_64
images:
  base: {{version: 13.4.0}}
steps:
  - power_on: {{}}
  - expect: {{onboarded: true, within: {within}}}
  - wait: {wait}
"""
