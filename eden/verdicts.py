"""The verdict vocabulary at the two levels where eden judges, and the one translation between them.

A run (``eden run``, ``summary.json``, the pytest plugin's outcome) is ``passed``, ``failed`` (the
product did not do what was expected) or ``error`` (the harness or the infrastructure failed, so the
product was not judged). A suite entry (``eden qualify``, ``results.json`` and every report cut from
it) says the same in the words of test reports (Allure, JUnit): an ``error`` run is a ``broken``
entry. Both spellings are on disk, so both stay; :func:`entry_verdict` is the only place that maps one
onto the other.
"""

from __future__ import annotations

from typing import Literal

RunVerdict = Literal["passed", "failed", "error"]
EntryVerdict = Literal["passed", "failed", "broken"]


def entry_verdict(run: RunVerdict | None, *, criteria_failed: bool = False) -> EntryVerdict:
    """A suite entry's verdict from its run's: ``broken`` for a harness error, ``failed`` when the run
    or one of the suite's pass criteria failed, else ``passed``."""
    if run == "error":
        return "broken"
    if run == "failed" or criteria_failed:
        return "failed"
    return "passed"
