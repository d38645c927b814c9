"""``summary.md``: a short Markdown summary for a CI job summary; plus the plain-text helpers the
other reports share (failure reasons, number and time formatting, matrix layout)."""

from __future__ import annotations

import json
from collections import defaultdict

from eden.reports.model import CriterionResult, EntryResult, ExpectationRecord, SuiteResults

SYMBOL = {"passed": "✅", "failed": "❌", "broken": "⚠️"}
NO_PROFILE = "-"
"""Matrix column of an entry that keeps its scenario's own fleet (profile None)."""


# ------------------------------------------------------------------------------ shared helpers --
def fmt_seconds(value: float | None) -> str:
    """``0 s``, ``35 ms``, ``1.21 s``, ``12.3 s``, ``4m05s``, ``2h13m`` (``-`` for None)."""
    if value is None:
        return "-"
    v = float(value)
    if v == 0:
        return "0 s"
    if abs(v) < 1:
        return f"{v * 1000:.0f} ms"
    if abs(v) < 10:
        return f"{v:.2f} s"
    if abs(v) < 120:
        return f"{v:.1f} s"
    if abs(v) < 3600:
        return f"{int(v // 60)}m{int(v % 60):02d}s"
    return f"{int(v // 3600)}h{int(v % 3600 // 60):02d}m"


def fmt_value(value: object, limit: int = 160, _nested: bool = False) -> str:
    """A compact one-line rendering of an observed value (``key=value, ...``)."""
    if isinstance(value, dict):
        text = ", ".join(f"{k}={fmt_value(v, limit, True)}" for k, v in value.items())
        if _nested:
            text = "{" + text + "}"
    elif isinstance(value, (list, tuple)):
        text = json.dumps(value, default=str)
    elif isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt_observed(crit: CriterionResult) -> str:
    """A criterion's observed value with its unit (``12.3 s``, ``42 req/s``)."""
    value = crit.observed
    if crit.unit == "s" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt_seconds(value)
    text = fmt_value(value)
    return f"{text} {crit.unit}" if crit.unit and value is not None else text


def _status_counts(st: object, sep: str) -> str:
    status = st.get("status") if isinstance(st, dict) else None
    return sep.join(f"{code} ×{n}" for code, n in status.items()) if isinstance(status, dict) else ""


def controller_answers(entry: EntryResult) -> str:
    """The controller's answers per HTTP status, all kinds and then per kind:
    ``200 ×15 · 304 ×280 (config 200 ×3 304 ×280; info 201 ×18)``; empty when none were recorded."""
    controller = entry.metrics.get("controller") or {}
    every = _status_counts(controller.get("all"), " · ")
    if not every:
        return ""
    kinds = [f"{kind} {text}" for kind, st in controller.items() if kind != "all" and (text := _status_counts(st, " "))]
    return f"{every} ({'; '.join(kinds)})" if kinds else every


def profile_of(entry: EntryResult) -> str:
    return entry.profile or NO_PROFILE


def profile_label(profile: str) -> str:
    """How a matrix column is titled (``own fleet`` for entries that keep the scenario's fleet)."""
    return "own fleet" if profile == NO_PROFILE else profile


def headline(results: SuiteResults) -> tuple[str, str]:
    """(css verdict, text) for the whole run: product failures and harness errors both named."""
    c = results.counts()
    failures = f"{c['failed']} product failure{'s' if c['failed'] != 1 else ''}"
    errors = f"{c['broken']} harness / infrastructure error{'s' if c['broken'] != 1 else ''}"
    if c["failed"]:
        return "failed", "NOT QUALIFIED: " + failures + (f", {errors}" if c["broken"] else "")
    if results.interrupted:
        return "broken", f"INTERRUPTED ({results.interrupted}): {c['passed']} of {len(results.entries)} entries passed before the stop"
    if c["broken"]:
        return "broken", f"INCOMPLETE: {errors}; the product was not fully judged"
    if not results.entries:
        return "broken", "EMPTY: no entry was run"
    return "passed", f"QUALIFIED: all {len(results.entries)} entries passed"


def failed_expectations(entry: EntryResult) -> list[ExpectationRecord]:
    return [e for e in entry.expectations if e.get("status") == "failed"]


def failure_reasons(entry: EntryResult) -> list[str]:
    """One line per reason the entry is not passed: the broken error, or each failed expectation
    (name: why; observed ...) and each failed pass criterion."""
    if entry.verdict == "broken":
        return [f"harness/infrastructure error: {entry.error or 'unknown error'}"]
    out = []
    for exp in failed_expectations(entry):
        why = (exp.get("detail") or {}).get("why") or "not met"
        out.append(f"{exp.get('name', '?')}: {why}; observed {fmt_value(exp.get('observed'))}")
    for crit in entry.criteria:
        if crit.status == "failed":
            out.append(f"criterion {crit.name}: {crit.why or 'not met'}; observed {fmt_observed(crit)}")
    if not out and entry.verdict == "failed":
        out.append(f"run verdict {entry.run_verdict or 'failed'}")
    return out


def matrix(results: SuiteResults) -> tuple[list[str], list[str], dict[tuple[str, str], list[EntryResult]]]:
    """(scenarios, profiles, cell -> entries), in first-seen order."""
    scenarios: list[str] = []
    profiles: list[str] = []
    cells: dict[tuple[str, str], list[EntryResult]] = defaultdict(list)
    for e in results.entries:
        s, p = e.scenario, profile_of(e)
        if s not in scenarios:
            scenarios.append(s)
        if p not in profiles:
            profiles.append(p)
        cells[(s, p)].append(e)
    return scenarios, profiles, dict(cells)


def cell_verdict(entries: list[EntryResult]) -> str:
    """The verdict shown for a matrix cell: failed if any failed, else broken if any, else passed."""
    verdicts = {e.verdict for e in entries}
    for v in ("failed", "broken", "passed"):
        if v in verdicts:
            return v
    return "passed"


def cell_counts(entries: list[EntryResult]) -> dict[str, int]:
    out = {"passed": 0, "failed": 0, "broken": 0}
    for e in entries:
        out[e.verdict] += 1
    return out


# --------------------------------------------------------------------------------- summary.md --
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _cell_md(entries: list[EntryResult]) -> str:
    if not entries:
        return "·"
    counts = cell_counts(entries)
    if len(entries) == 1:
        return f"{SYMBOL[entries[0].verdict]} {entries[0].verdict}"
    parts = [f"{SYMBOL[v]} {counts[v]}" for v in ("passed", "failed", "broken") if counts[v]]
    return " ".join(parts) + f" of {len(entries)}"


def render_markdown(results: SuiteResults, *, html_name: str = "report.html") -> str:
    """The CI job summary: verdict and counts, the matrix table, failed and broken entries."""
    counts = results.counts()
    total = len(results.entries)
    verdict, text = headline(results)
    lines = [
        f"## {SYMBOL[verdict]} eden qualification `{results.suite}`: {text}",
        "",
        f"**{total} entries**: {SYMBOL['passed']} {counts['passed']} passed · {SYMBOL['failed']} {counts['failed']} failed"
        f" · {SYMBOL['broken']} {counts['broken']} broken  ",
        f"backend `{results.backend}` · host `{results.host or '-'}` · started {results.started or '-'}"
        f" · wall {fmt_seconds(results.wall_seconds)}",
        "",
    ]
    scenarios, profiles, cells = matrix(results)
    if scenarios:
        lines.append("| scenario | " + " | ".join(_md_escape(profile_label(p)) for p in profiles) + " |")
        lines.append("|---|" + "---|" * len(profiles))
        for s in scenarios:
            row = [_cell_md(cells.get((s, p), [])) for p in profiles]
            lines.append(f"| {_md_escape(s)} | " + " | ".join(row) + " |")
        lines.append("")
    bad = [e for e in results.entries if e.verdict != "passed"]
    if bad:
        lines.append("### Failed and broken")
        lines.append("")
        for e in bad:
            reasons = failure_reasons(e)
            more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
            kind = "product failure" if e.verdict == "failed" else "broken (harness / infrastructure)"
            lines.append(
                f"- {SYMBOL[e.verdict]} **{_md_escape(e.scenario)}** · {_md_escape(profile_label(profile_of(e)))} · r{e.replication}"
                f" (seed {e.seed}), {kind}: {_md_escape(reasons[0] if reasons else '-')}{more}"
            )
        lines.append("")
    lines.append(
        f"Full report: [{html_name}]({html_name}) (self-contained HTML) · JUnit: `junit.xml` · "
        "Allure results: `allure-results/`"
    )
    return "\n".join(lines) + "\n"
