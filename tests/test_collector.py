"""The collector policy for long runs (eden/runtime/collector.py): frozen and rare while the run
lasts, the interpreter's own settings back afterwards (qualify runs many scenarios per process)."""

from __future__ import annotations

import gc

from eden.runtime import collector


def test_long_lived_freezes_raises_the_thresholds_and_restores_both() -> None:
    before = gc.get_threshold()
    fleet = [{"node": i} for i in range(1000)]  # a long-lived graph built before the run
    with collector.long_lived():
        assert gc.get_threshold() == collector.RUN_THRESHOLDS
        assert gc.get_freeze_count() >= len(fleet)  # the fleet is out of the collector's scans
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_settings_come_back_when_the_run_fails() -> None:
    before = gc.get_threshold()
    try:
        with collector.long_lived():
            raise RuntimeError("the run broke")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
