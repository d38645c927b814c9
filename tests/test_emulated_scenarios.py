"""The device-facing scenarios pass on the emulated backend, as they do on the simulator.

One suite run (``suites/emulated.yaml``) with every entry in parallel: a real controller and real
agent processes per entry, in real time (about 14 minutes, mostly EVE's own timers: the network
outage needs two failed port tests at the 300 s minimum interval). ``tests/conftest.py`` starts
that run when the session is collected and schedules this test last, so the waiting overlaps with
the rest of the suite. The same files run on the simulator in ``tests/test_sim_scenarios.py``.
"""

from __future__ import annotations

import pytest

from conftest import DEVICE_SCENARIOS, EMULATED_FAULT_SCENARIOS, assert_device_suite_passed, assert_tamper_refused_for_pcrs


@pytest.mark.slow
@pytest.mark.background("emulated")
def test_emulated_suite_passes(emulated_suite_run) -> None:  # type: ignore[no-untyped-def]
    out, results = assert_device_suite_passed(emulated_suite_run, "emulated", 45 * 60, "agent-",
                                              DEVICE_SCENARIOS + EMULATED_FAULT_SCENARIOS)
    assert_tamper_refused_for_pcrs(out, results, {0})  # the soft TPM's quote, refused on PCR 0
