"""The run verdict and the suite entry verdict name one outcome in two vocabularies."""

from __future__ import annotations

from typing import get_args

from eden.verdicts import EntryVerdict, RunVerdict, entry_verdict


def test_every_run_verdict_has_one_entry_verdict() -> None:
    assert {v: entry_verdict(v) for v in get_args(RunVerdict)} == {"passed": "passed", "failed": "failed", "error": "broken"}
    assert set(map(entry_verdict, get_args(RunVerdict))) == set(get_args(EntryVerdict))


def test_a_failed_criterion_fails_a_passed_run_but_not_a_broken_one() -> None:
    assert entry_verdict("passed", criteria_failed=True) == "failed"
    assert entry_verdict("error", criteria_failed=True) == "broken"
    assert entry_verdict(None) == "passed"  # a summary without a verdict
