"""``report.html``: the self-contained qualification report a release manager reads at a glance.

One file, no network: inline CSS, plots as base64 PNG data URIs, system fonts, a three-line inline
script that only opens a collapsed entry when a matrix link points at it. It holds the summary
counts, the qualification matrix (scenario x profile, with the history trend of each cell when
given), the failed and broken entries with their reasons, key timings, mean ± 95 % confidence
intervals over replications, per-entry details (expectations, steps, timings, rollouts, plots) and
the run's environment. Links point only at local files (run folders, junit.xml, summary.md).
"""

from __future__ import annotations

import base64
import html
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from eden.reports.markdown import (
    NO_PROFILE,
    cell_counts,
    cell_verdict,
    controller_answers,
    failed_expectations,
    failure_reasons,
    fmt_seconds,
    fmt_observed,
    fmt_value,
    headline,
    matrix,
    profile_label,
    profile_of,
)
from eden.reports.model import KEY_TIMINGS, EntryResult, ExpectationRecord, SuiteResults, TimingStats
from eden.reports.plots import PLOT_TITLES, entry_plots
from eden.reports.stats import MeanCI, mean_ci
from eden.reports.timeline_slice import tail_slice, timeline_slice

History = dict[tuple[str, str], list[dict[str, Any]]]

TIMING_LABELS = {
    "boot.time": "boot",
    "onboarding.time": "onboarding",
    "update.duration": "update duration",
    "rollback.time": "rollback time",
    "reconnect.time": "reconnect time",
    "attestation.time": "attestation time",
}
ICON = {"passed": "✔", "failed": "✖", "broken": "⚠"}
TREND_LENGTH = 12
MAX_SLICES = 5
"""Timeline slices shown per entry (the Allure report has one per failed expectation)."""
ATTENTION_SHOWN = 10
"""Entries listed under "Needs attention" before the rest fold away."""

CSS = """
:root{--pass:#1a7f37;--pass-bg:#dafbe1;--pass-bd:#4ac26b;--fail:#cf222e;--fail-bg:#ffebe9;--fail-bd:#ff8182;
--broken:#8250df;--broken-bg:#fbefff;--broken-bd:#c297ff;--ink:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
html{scroll-behavior:smooth;scroll-padding-top:64px}
body{margin:0;font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI","Liberation Sans","DejaVu Sans",Helvetica,Arial,sans-serif;color:var(--ink);background:#eef1f4}
code,pre,.mono{font-family:"DejaVu Sans Mono","Liberation Mono",Menlo,Consolas,monospace;font-size:12.5px}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
header.top{position:sticky;top:0;z-index:10;display:flex;align-items:center;gap:18px;padding:10px 28px;background:#1f2328;color:#fff;box-shadow:0 1px 4px rgba(0,0,0,.25)}
header.top .brand{font-weight:700;letter-spacing:.3px;font-size:15px}
header.top .brand span{color:#9198a1;font-weight:400;margin-left:6px}
header.top nav{display:flex;gap:14px;margin-left:auto;font-size:13px}
header.top nav a{color:#d1d9e0}
main{max-width:1680px;margin:0 auto;padding:22px 24px 40px}
section.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:0 0 20px;box-shadow:0 1px 2px rgba(31,35,40,.04)}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}h3{font-size:14.5px;margin:18px 0 8px}h4{font-size:13px;margin:14px 0 6px;color:var(--muted);text-transform:uppercase;letter-spacing:.4px}
.sub{color:var(--muted);margin:0 0 14px}
.hero{display:flex;gap:22px;align-items:flex-start;flex-wrap:wrap}
.hero .title{flex:1 1 420px}
.verdict-banner{display:inline-flex;align-items:center;gap:8px;padding:5px 14px;border-radius:999px;font-weight:700;font-size:14px;border:1px solid}
.tiles{display:flex;gap:12px;flex-wrap:wrap;margin-top:6px}
.tile{min-width:112px;padding:10px 14px;border-radius:8px;border:1px solid var(--line);background:var(--soft)}
.tile .n{font-size:26px;font-weight:700;line-height:1.1}.tile .l{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.4px}
.tile.passed{background:var(--pass-bg);border-color:var(--pass-bd)}.tile.passed .n{color:var(--pass)}
.tile.failed{background:var(--fail-bg);border-color:var(--fail-bd)}.tile.failed .n{color:var(--fail)}
.tile.broken{background:var(--broken-bg);border-color:var(--broken-bd)}.tile.broken .n{color:var(--broken)}
.bar{display:flex;height:10px;border-radius:5px;overflow:hidden;margin:16px 0 2px;background:var(--soft)}
.bar .passed{background:var(--pass-bd)}.bar .failed{background:var(--fail)}.bar .broken{background:var(--broken)}
.meta{display:flex;flex-wrap:wrap;gap:6px 22px;color:var(--muted);font-size:13px;margin-top:10px}.meta b{color:var(--ink);font-weight:600}
.passed-c{color:var(--pass)}.failed-c{color:var(--fail)}.broken-c{color:var(--broken)}
.pill{display:inline-flex;align-items:center;gap:5px;padding:1px 9px;border-radius:999px;font-weight:600;font-size:12.5px;border:1px solid;white-space:nowrap}
.pill.passed,.verdict-banner.passed{color:var(--pass);background:var(--pass-bg);border-color:var(--pass-bd)}
.pill.failed,.verdict-banner.failed{color:var(--fail);background:var(--fail-bg);border-color:var(--fail-bd)}
.pill.broken,.verdict-banner.broken{color:var(--broken);background:var(--broken-bg);border-color:var(--broken-bd)}
.pill.skipped,.pill.pending,.pill.interrupted{color:var(--muted);background:var(--soft);border-color:var(--line)}
table{border-collapse:collapse;width:100%}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600;font-size:12.5px;color:#353c44;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.matrix{width:auto;min-width:60%}
table.matrix th.scn{min-width:150px;max-width:260px;white-space:normal;overflow-wrap:anywhere}
table.matrix td{padding:0;border:1px solid #fff;min-width:128px}
table.matrix thead th{white-space:normal;overflow-wrap:anywhere}
table.matrix td.cell a{display:block;padding:8px 10px;color:inherit;text-decoration:none}
table.matrix td.cell a:hover{filter:brightness(.96)}
table.matrix td.cell.passed{background:var(--pass-bg)}table.matrix td.cell.failed{background:var(--fail-bg)}table.matrix td.cell.broken{background:var(--broken-bg)}
table.matrix td.cell.empty{background:var(--soft);color:#9198a1;text-align:center;padding:9px}
table.matrix th{border:1px solid #fff}
.cell .v{font-weight:700;display:flex;align-items:center;gap:6px}
.cell.passed .v{color:var(--pass)}.cell.failed .v{color:var(--fail)}.cell.broken .v{color:var(--broken)}
.cell .c{font-size:12px;color:var(--muted)}
.trend{display:flex;flex-wrap:wrap;align-items:center;gap:1px;margin-top:5px;font-size:11.5px;color:var(--muted)}
.trend i{display:inline-block;width:8px;height:9px;border-radius:2px;background:#d1d9e0}
.trend i.passed{background:var(--pass-bd)}.trend i.failed{background:var(--fail)}.trend i.broken{background:var(--broken)}
.trend .rate{margin-left:5px;white-space:nowrap}
.legend{display:flex;gap:16px;margin-top:10px;font-size:12.5px;color:var(--muted);flex-wrap:wrap}
.legend i{display:inline-block;width:11px;height:11px;border-radius:3px;vertical-align:-1px;margin-right:5px}
ul.issues{list-style:none;padding:0;margin:0}
ul.issues li{padding:8px 12px;border-left:4px solid;border-radius:4px;margin-bottom:8px;background:var(--soft)}
ul.issues li.failed{border-color:var(--fail);background:var(--fail-bg)}ul.issues li.broken{border-color:var(--broken);background:var(--broken-bg)}
ul.issues .why{display:block;color:#353c44;font-size:13px}
.ok-note{color:var(--pass);font-weight:600}
details.entry{border:1px solid var(--line);border-radius:8px;margin:0 0 12px;background:#fff}
details.entry>summary{list-style:none;cursor:pointer;display:flex;align-items:center;gap:12px;flex-wrap:wrap;padding:10px 14px;border-radius:8px}
details.entry>summary::-webkit-details-marker{display:none}
details.entry>summary::before{content:"▸";color:var(--muted);font-size:12px;width:10px}
details.entry[open]>summary::before{content:"▾"}
details.entry[open]>summary{border-bottom:1px solid var(--line);border-radius:8px 8px 0 0;background:var(--soft)}
details.entry.failed{border-left:4px solid var(--fail)}details.entry.broken{border-left:4px solid var(--broken)}details.entry.passed{border-left:4px solid var(--pass-bd)}
details.entry .name{font-weight:700}details.entry .facts{color:var(--muted);font-size:12.5px;margin-left:auto}
.entry-body{padding:6px 18px 16px}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;font-size:13px}
.kv dt{color:var(--muted)}.kv dd{margin:0}
.cols{display:grid;grid-template-columns:minmax(300px,1fr) minmax(300px,1.2fr);gap:8px 32px}
.error-box{background:var(--broken-bg);border:1px solid var(--broken-bd);color:#512a97;border-radius:6px;padding:10px 12px;margin:10px 0;white-space:pre-wrap}
.fail-box{background:var(--fail-bg);border:1px solid var(--fail-bd);border-radius:6px;padding:2px 0;margin:10px 0}
.fail-box table td,.fail-box table th{border-bottom-color:#ffcecb;background:transparent}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px;margin-top:8px}
figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:6px;background:#fff}
figure img{width:100%;height:auto;display:block}
figcaption{font-size:12px;color:var(--muted);padding:2px 4px}
details.more>summary{cursor:pointer;color:var(--accent);font-size:13px;margin:8px 0}
.muted{color:var(--muted)}.small{font-size:12px}
.ci{font-weight:600;white-space:nowrap}
footer{color:var(--muted);font-size:12px;text-align:center;padding:10px 0 30px}
.scroll{overflow-x:auto}
pre.slice{max-height:420px;overflow:auto;background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:8px 10px;margin:4px 0 10px;white-space:pre}
"""

SCRIPT = (
    "function edenOpen(){var e=document.getElementById(decodeURIComponent(location.hash.slice(1)));"
    "if(e&&e.tagName==='DETAILS'){e.open=true;}}"
    "window.addEventListener('hashchange',edenOpen);edenOpen();"
)


def h(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def anchor(entry: EntryResult) -> str:
    """The HTML id of an entry's details."""
    return "e-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", entry.id)


def _pill(verdict: str, text: str | None = None) -> str:
    return f'<span class="pill {h(verdict)}">{ICON.get(verdict, "•")} {h(text or verdict)}</span>'


def _local_href(path: str) -> str:
    return quote(path.replace("\\", "/"), safe="/._-~")


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ------------------------------------------------------------------------------------ sections --
def _hero(results: SuiteResults) -> str:
    counts = results.counts()
    total = len(results.entries)
    verdict, text = headline(results)
    rate = f"{100.0 * counts['passed'] / total:.0f} %" if total else "-"
    scenarios, profiles, _ = matrix(results)
    bar = "".join(
        f'<div class="{v}" style="width:{100.0 * counts[v] / total:.3f}%" title="{counts[v]} {v}"></div>'
        for v in ("passed", "failed", "broken")
        if total and counts[v]
    )
    tiles = [
        f'<div class="tile"><div class="n">{total}</div><div class="l">entries</div></div>',
        f'<div class="tile passed"><div class="n">{counts["passed"]}</div><div class="l">passed</div></div>',
        f'<div class="tile failed"><div class="n">{counts["failed"]}</div><div class="l">failed (product)</div></div>',
        f'<div class="tile broken"><div class="n">{counts["broken"]}</div><div class="l">broken (harness)</div></div>',
        f'<div class="tile"><div class="n">{rate}</div><div class="l">pass rate</div></div>',
    ]
    meta = [
        ("suite", results.suite),
        ("backend", results.backend),
        ("started", results.started or "-"),
        ("wall", fmt_seconds(results.wall_seconds)),
        ("matrix", f"{len(scenarios)} scenarios × {len(profiles)} profiles"),
        ("host", results.host or "-"),
    ]
    return (
        '<section class="card" id="summary"><div class="hero"><div class="title">'
        f"<h1>Qualification report: {h(results.suite)}</h1>"
        f'<p class="sub">{h(results.description) if results.description else "EVE-OS qualification with eden"}</p>'
        f'<span class="verdict-banner {verdict}">{ICON[verdict]} {h(text)}</span>'
        '<div class="meta">' + "".join(f"<span>{h(k)} <b>{h(v)}</b></span>" for k, v in meta) + "</div>"
        '</div><div class="tiles">' + "".join(tiles) + "</div></div>"
        f'<div class="bar">{bar}</div></section>'
    )


def _trend(items: list[dict[str, Any]]) -> str:
    recent = items[-TREND_LENGTH:]
    if not recent:
        return '<div class="trend"><span class="rate">no history</span></div>'
    squares = "".join(
        f'<i class="{h(str(it.get("verdict")))}" title="{h(it.get("started", ""))}: {h(it.get("verdict"))}"></i>' for it in recent
    )
    passed = sum(1 for it in recent if it.get("verdict") == "passed")
    return f'<div class="trend" title="last {len(recent)} runs, oldest first">{squares}<span class="rate">{100.0 * passed / len(recent):.0f} % of {len(recent)}</span></div>'


def _history_of(history: History, scenario: str, profile: str) -> list[dict[str, Any]]:
    """A cell's history; the no-profile column may be keyed ``"-"`` or None."""
    items = history.get((scenario, profile))
    if items is None and profile == NO_PROFILE:
        items = history.get((scenario, None))  # type: ignore[arg-type]
    return list(items or [])


def _matrix(results: SuiteResults, history: History | None) -> str:
    scenarios, profiles, cells = matrix(results)
    head = '<tr><th class="scn">scenario \\ profile</th>' + "".join(f"<th>{h(profile_label(p))}</th>" for p in profiles) + "</tr>"
    rows = []
    for s in scenarios:
        tds = []
        for p in profiles:
            entries = cells.get((s, p), [])
            if not entries:
                tds.append('<td class="cell empty">·</td>')
                continue
            verdict = cell_verdict(entries)
            counts = cell_counts(entries)
            target = next(e for e in entries if e.verdict == verdict)
            if len(entries) == 1:
                sub = f"seed {entries[0].seed} · {fmt_seconds(entries[0].wall_seconds)} wall"
            else:
                kinds = [v for v in ("passed", "failed", "broken") if counts[v]]
                if len(kinds) == 1:
                    sub = f"{len(entries)}/{len(entries)} replications {kinds[0]}"
                else:
                    sub = " · ".join(f"{counts[v]} {v}" for v in kinds) + f" (of {len(entries)})"
            trend = _trend(_history_of(history, s, p)) if history is not None else ""
            tds.append(
                f'<td class="cell {verdict}"><a href="#{anchor(target)}" title="{h(s)} on {h(profile_label(p))}">'
                f'<div class="v">{ICON[verdict]} {verdict}</div><div class="c">{h(sub)}</div>{trend}</a></td>'
            )
        rows.append(f'<tr><th class="scn">{h(s)}</th>' + "".join(tds) + "</tr>")
    legend = (
        '<div class="legend"><span><i style="background:var(--pass-bd)"></i>passed</span>'
        '<span><i style="background:var(--fail)"></i>failed: an expectation or criterion failed (product)</span>'
        '<span><i style="background:var(--broken)"></i>broken: harness / infrastructure error, not judged</span>'
        + (f"<span>trend: last {TREND_LENGTH} recorded runs, oldest first, with the pass rate</span>" if history is not None else "")
        + "<span>a cell with replications shows its worst verdict and the counts</span></div>"
    )
    return (
        '<section class="card" id="matrix"><h2>Qualification matrix</h2>'
        f'<div class="scroll"><table class="matrix"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>{legend}</section>'
    )


def _attention(results: SuiteResults) -> str:
    bad = [e for e in results.entries if e.verdict != "passed"]
    excluded = ""
    if results.excluded:
        rows = "".join(
            f"<tr><td>{h(x.get('scenario', ''))}</td><td>{h(profile_label(x.get('profile') or NO_PROFILE))}</td><td>{h(x.get('reason', ''))}</td></tr>"
            for x in results.excluded
        )
        excluded = (
            f'<details><summary>{len(results.excluded)} combination(s) excluded by the suite, with reasons</summary>'
            f"<table><thead><tr><th>scenario</th><th>profile</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table></details>"
        )
    if not bad:
        body = '<p class="ok-note">✔ Every entry passed: no product failure and no harness error.</p>'
    else:
        items = []
        for e in bad:
            kind = "product failure" if e.verdict == "failed" else "harness / infrastructure error"
            reasons = "".join(f'<span class="why">{h(r)}</span>' for r in failure_reasons(e))
            items.append(
                f'<li class="{e.verdict}">{_pill(e.verdict)} <a href="#{anchor(e)}"><b>{h(e.scenario)}</b> on {h(profile_label(profile_of(e)))}'
                f" · r{e.replication}</a> <span class=\"muted small\">({kind}, seed {e.seed})</span>{reasons}</li>"
            )
        body = f'<ul class="issues">{"".join(items[:ATTENTION_SHOWN])}</ul>'
        if len(items) > ATTENTION_SHOWN:  # a long list folds: the matrix above already shows every cell
            body += (f'<details class="more"><summary>{len(items) - ATTENTION_SHOWN} more entries need attention</summary>'
                     f'<ul class="issues">{"".join(items[ATTENTION_SHOWN:])}</ul></details>')
    return f'<section class="card" id="attention"><h2>Needs attention</h2>{body}{excluded}</section>'


def _timing_cell(stats: TimingStats | None) -> str:
    if not stats or not stats.get("count"):
        return '<td class="num muted">-</td>'
    return (
        f'<td class="num" title="n={stats.get("count")}, p95 {fmt_seconds(stats.get("p95"))}, max {fmt_seconds(stats.get("max"))}">'
        f'{fmt_seconds(stats.get("p50"))}<br><span class="muted small">{fmt_seconds(stats.get("p95"))}</span></td>'
    )


def _timings_overview(results: SuiteResults) -> str:
    keys = [k for k in KEY_TIMINGS if any((e.timings.get(k) or {}).get("count") for e in results.entries)]
    head = (
        "<tr><th>entry</th><th>verdict</th><th class=\"num\">seed</th><th class=\"num\">devices</th>"
        "<th class=\"num\">simulated</th><th class=\"num\">wall</th>"
        + "".join(f'<th class="num">{h(TIMING_LABELS[k])}<br><span class="muted small">p50, p95 below</span></th>' for k in keys)
        + "</tr>"
    )
    rows = []
    for e in results.entries:
        rows.append(
            f'<tr><td><a href="#{anchor(e)}">{h(e.scenario)}</a> <span class="muted">{h(profile_label(profile_of(e)))} r{e.replication}</span></td>'
            f"<td>{_pill(e.verdict)}</td><td class=\"num\">{e.seed}</td><td class=\"num\">{e.devices}</td>"
            f'<td class="num">{fmt_seconds(e.simulated_seconds)}</td><td class="num">{fmt_seconds(e.wall_seconds)}</td>'
            + "".join(_timing_cell(e.timings.get(k)) for k in keys)
            + "</tr>"
        )
    return (
        '<section class="card" id="timings"><h2>Key timings</h2>'
        '<p class="sub">Per entry, in the run\'s clock (simulated seconds on the simulator): median / 95th percentile over the devices and events.</p>'
        f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div></section>'
    )


def replication_rows(entries: list[EntryResult]) -> list[tuple[str, MeanCI]]:
    """(metric label, MeanCI) for wall seconds, simulated seconds and each key timing's p50."""
    rows: list[tuple[str, MeanCI | None]] = [
        ("wall seconds", mean_ci((e.wall_seconds for e in entries), lower=0.0)),  # times: never below 0
        ("simulated seconds", mean_ci((e.simulated_seconds for e in entries), lower=0.0)),
    ]
    for key in KEY_TIMINGS:
        ci = mean_ci(((e.timings.get(key) or {}).get("p50") for e in entries), lower=0.0)
        if ci is not None:
            rows.append((f"{TIMING_LABELS[key]} p50 (s)", ci))
    return [(label, ci) for label, ci in rows if ci is not None]


def _replications(results: SuiteResults) -> str:
    scenarios, profiles, cells = matrix(results)
    blocks = []
    for s in scenarios:
        for p in profiles:
            entries = cells.get((s, p), [])
            if len(entries) < 2:
                continue
            counts = cell_counts(entries)
            rows = []
            for label, ci in replication_rows(entries):
                low = "-" if ci.low is None else f"{ci.low:.3f}"
                high = "-" if ci.high is None else f"{ci.high:.3f}"
                interval = "n too small" if ci.too_small else f"[{low}, {high}]"
                rows.append(
                    f'<tr><td>{h(label)}</td><td class="num">{ci.n}</td><td class="num ci">{h(ci.format(3))}</td>'
                    f'<td class="num">{interval}</td><td class="num">{"-" if ci.stdev is None else f"{ci.stdev:.3f}"}</td></tr>'
                )
            seeds = ", ".join(str(e.seed) for e in entries)
            blocks.append(
                f'<h3>{h(s)} on {h(profile_label(p))} <span class="muted small">{len(entries)} replications (seeds {h(seeds)}): '
                + ", ".join(f"{counts[v]} {v}" for v in ("passed", "failed", "broken") if counts[v])
                + "</span></h3>"
                '<table><thead><tr><th>metric</th><th class="num">n</th><th class="num">mean ± 95 % CI</th>'
                '<th class="num">interval</th><th class="num">std dev</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
            )
    if not blocks:
        return ""
    return (
        '<section class="card" id="replications"><h2>Replications: mean ± 95 % confidence interval</h2>'
        '<p class="sub">Student t interval over the replications of one scenario × profile (t quantiles for df ≤ 30, normal beyond). '
        'An interval that would reach below 0 s is not shown: the replications are too few or too spread for it.</p>'
        + "".join(blocks)
        + "</section>"
    )


def _kv(pairs: list[tuple[str, str]]) -> str:
    """A definition list; values are already HTML."""
    return '<dl class="kv">' + "".join(f"<dt>{h(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _entry(entry: EntryResult, plots: dict[str, bytes], base_dir: Path | None) -> str:
    run_dir = entry.run_dir
    links = []
    if run_dir:
        for name in ["summary.json", "run.json", "events.jsonl", "events.npz", *entry.attachments]:
            if base_dir is not None and not (base_dir / run_dir / name).is_file():
                continue
            links.append(f'<a href="{_local_href(run_dir.rstrip("/") + "/" + name)}">{h(name)}</a>')
    facts = f"seed {entry.seed} · {entry.devices} device(s) · simulated {fmt_seconds(entry.simulated_seconds)} · wall {fmt_seconds(entry.wall_seconds)}"
    left = _kv(
        [
            ("scenario", f"<b>{h(entry.scenario)}</b> <span class=\"muted\">({h(entry.scenario_file)})</span>"),
            ("profile", h(profile_label(profile_of(entry)))),
            ("backend", h(entry.backend)),
            *([("lab place", h(", ".join(f"{d} on {p}" for d, p in sorted(entry.places.items()))))] if entry.places else []),
            ("seed / replication", f"{entry.seed} / r{entry.replication}"),
            ("images", h(", ".join(f"{k} {v}" for k, v in entry.versions.items()) or "-")),
            ("features", h(", ".join(entry.features) or "-")),
            ("started", h(entry.started or "-")),
            ("wall / simulated", f"{fmt_seconds(entry.wall_seconds)} / {fmt_seconds(entry.simulated_seconds)}"),
            ("run verdict", h(entry.run_verdict or "-")),
            *([("controller answers", h(answers))] if (answers := controller_answers(entry)) else []),
            ("files", " · ".join(links) or "-"),
        ]
    )
    timing_rows = []
    for key in KEY_TIMINGS:
        st = entry.timings.get(key) or {}
        if st.get("count"):
            timing_rows.append(
                f"<tr><td>{h(TIMING_LABELS[key])}</td><td class=\"num\">{st.get('count')}</td><td class=\"num\">{fmt_seconds(st.get('p50'))}</td>"
                f"<td class=\"num\">{fmt_seconds(st.get('p95'))}</td><td class=\"num\">{fmt_seconds(st.get('max'))}</td></tr>"
            )
    right = (
        '<table><thead><tr><th>key timing</th><th class="num">count</th><th class="num">p50</th><th class="num">p95</th><th class="num">max</th></tr></thead>'
        f"<tbody>{''.join(timing_rows)}</tbody></table>"
        if timing_rows
        else '<p class="muted">No key timing was recorded.</p>'
    )
    parts = [f'<div class="cols"><div><h4>Run</h4>{left}</div><div><h4>Key timings</h4>{right}</div></div>']
    if entry.description:
        parts.insert(0, f'<p class="muted">{h(entry.description)}</p>')
    if entry.verdict == "broken":
        parts.append(f'<h4>Harness / infrastructure error</h4><div class="error-box mono">{h(entry.error or "unknown error")}</div>')
    failed = failed_expectations(entry)
    if failed:
        rows = "".join(
            f"<tr><td><b>{h(x.get('name'))}</b></td><td class=\"mono\">{h(x.get('where'))} · line {h(x.get('line'))}</td>"
            f"<td>{h((x.get('detail') or {}).get('why') or 'not met')}</td><td class=\"mono\">{h(fmt_value(x.get('observed'), 300))}</td>"
            f"<td class=\"num\">{fmt_seconds(x.get('deadline'))}</td></tr>"
            for x in failed
        )
        parts.append(
            '<h4>Failed expectations</h4><div class="fail-box"><table><thead><tr><th>expectation</th><th>where</th><th>why</th>'
            f'<th>observed</th><th class="num">deadline</th></tr></thead><tbody>{rows}</tbody></table></div>'
        )
    parts.append(_slices(entry, failed, base_dir))
    if entry.criteria:
        rows = "".join(
            f"<tr><td>{h(c.name)}</td><td>{_pill(c.status)}</td><td class=\"mono\">{h(fmt_observed(c))}</td><td>{h(c.why)}</td></tr>"
            for c in entry.criteria
        )
        parts.append(f"<h4>Pass criteria</h4><table><thead><tr><th>criterion</th><th>status</th><th>observed</th><th>why</th></tr></thead><tbody>{rows}</tbody></table>")
    if entry.steps:
        step_rows = []
        for step in entry.steps:
            start, stop = step.get("start"), step.get("stop")
            dur = None if start is None or stop is None else float(stop) - float(start)
            expectation = (step.get("detail") or {}).get("expectation")
            label = h(step.get("name")) + (f' <span class="muted small">{h(expectation)}</span>' if expectation else "")
            step_rows.append(
                f"<tr><td class=\"num\">{int(step.get('index', 0)) + 1}</td><td>{label}</td><td class=\"num\">{step.get('devices', 0)}</td>"
                f'<td class="num">{fmt_seconds(start)}</td><td class="num">{fmt_seconds(stop)}</td><td class="num">{fmt_seconds(dur)}</td>'
                f"<td>{_pill(str(step.get('status')))}</td></tr>"
            )
        parts.append(
            '<h4>Steps <span class="muted small" style="text-transform:none">(run clock)</span></h4><table><thead><tr><th class="num">#</th><th>step</th>'
            '<th class="num">devices</th><th class="num">start</th><th class="num">stop</th><th class="num">duration</th><th>status</th></tr></thead>'
            f"<tbody>{''.join(step_rows)}</tbody></table>"
        )
    if entry.expectations:
        rows = "".join(
            f"<tr><td>{h(x.get('name'))}</td><td class=\"mono\">{h(x.get('where'))}</td><td>{_pill(str(x.get('status')))}</td>"
            f"<td class=\"mono\">{h(fmt_value(x.get('observed'), 200))}</td><td class=\"num\">{fmt_seconds(x.get('met_at'))}</td></tr>"
            for x in entry.expectations
        )
        parts.append(
            f'<details class="more"><summary>All {len(entry.expectations)} expectations</summary><table><thead><tr><th>expectation</th>'
            f'<th>where</th><th>status</th><th>observed</th><th class="num">met at</th></tr></thead><tbody>{rows}</tbody></table></details>'
        )
    for r in entry.rollouts:
        rows = "".join(
            f"<tr><td class=\"num\">{int(w.get('wave', 0)) + 1}</td><td class=\"num\">{w.get('devices')}</td><td class=\"num\">{fmt_seconds(w.get('start'))}</td>"
            f"<td class=\"num\">{fmt_seconds(w.get('stop'))}</td><td class=\"num{' passed-c' if w.get('succeeded') else ''}\">{w.get('succeeded')}</td><td class=\"num{' failed-c' if w.get('failed') else ''}\">{w.get('failed')}</td>"
            f"<td class=\"num\">{w.get('timed_out', 0)}</td><td>{h(w.get('outcome'))}</td></tr>"
            for w in r.get("waves", [])
        )
        parts.append(
            f"<h4>Rollout of {h(r.get('image'))} ({h(r.get('version'))}) to {h(r.get('devices'))} devices: {h(r.get('state'))}</h4>"
            '<table><thead><tr><th class="num">wave</th><th class="num">devices</th><th class="num">start</th><th class="num">stop</th>'
            f'<th class="num">succeeded</th><th class="num">failed</th><th class="num">timed out</th><th>outcome</th></tr></thead><tbody>{rows}</tbody></table>'
        )
    if plots:
        figs = "".join(
            f'<figure><img src="{_png_uri(png)}" alt="{h(PLOT_TITLES.get(k, k))}" title="{h(PLOT_TITLES.get(k, k))}" class="plot"></figure>'
            for k, png in plots.items()
        )
        parts.append(f'<h4>Fleet plots</h4><div class="plots">{figs}</div>')
    is_open = " open" if entry.verdict != "passed" else ""  # passed entries fold: a long suite stays short
    return (
        f'<details class="entry {entry.verdict}" id="{anchor(entry)}"{is_open}><summary>{_pill(entry.verdict)}'
        f'<span class="name">{h(entry.scenario)}</span><span>{h(profile_label(profile_of(entry)))} · r{entry.replication}</span>'
        f'<span class="facts">{h(facts)}</span></summary><div class="entry-body">{"".join(parts)}</div></details>'
    )


def _slices(entry: EntryResult, failed: list[ExpectationRecord], base_dir: Path | None) -> str:
    """The timeline slice before each failed expectation (before the error of a broken run), as the
    Allure report attaches them, so the HTML page alone shows what led to a failure. Needs the run
    folder (``base_dir``); at most ``MAX_SLICES`` per entry, each capped in lines."""
    if base_dir is None or not entry.run_dir or not (base_dir / entry.run_dir).is_dir():
        return ""
    run_dir = base_dir / entry.run_dir
    cuts = [(f"Timeline before '{x.get('name', '?')}'", timeline_slice(run_dir, x, end=entry.simulated_seconds)) for x in failed[:MAX_SLICES]]
    if entry.verdict == "broken":
        cuts.append(("Timeline: the end of the run", tail_slice(run_dir, entry.simulated_seconds)))
    more = f'<p class="muted small">{len(failed) - MAX_SLICES} more failed expectation(s): see the Allure report.</p>' if len(failed) > MAX_SLICES else ""
    return "".join(
        f'<details class="more slice"{" open" if i == 0 else ""}><summary>{h(title)}</summary><pre class="mono slice">{h(text)}</pre></details>' for i, (title, text) in enumerate(cuts)
    ) + more


def _environment(results: SuiteResults) -> str:
    images: dict[str, set[str]] = {}
    for e in results.entries:
        for k, v in e.versions.items():
            images.setdefault(k, set()).add(str(v))
    pairs = [
        ("suite", f"{h(results.suite)} <span class=\"muted\">{h(results.suite_file)}</span>"),
        ("backend", h(results.backend)),
        ("command", f'<code>{h(results.command or "-")}</code>'),
        ("started / finished", f"{h(results.started or '-')} / {h(results.finished or '-')}"
         + (f" <strong>(interrupted by {h(results.interrupted)})</strong>" if results.interrupted else "")),
        ("wall", fmt_seconds(results.wall_seconds)),
        ("jobs", h(results.jobs)),
        ("host", h(results.host or "-")),
        ("platform", h(results.platform or "-")),
        ("python", h(results.python or "-")),
        ("images", h("; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in sorted(images.items())) or "-")),
        ("seeds", h(", ".join(sorted({str(e.seed) for e in results.entries}, key=lambda s: int(s))) or "-")),
    ]
    versions = "".join(f"<tr><td>{h(k)}</td><td class=\"mono\">{h(v)}</td></tr>" for k, v in sorted(results.versions.items()))
    table = f"<table><thead><tr><th>package</th><th>version</th></tr></thead><tbody>{versions}</tbody></table>" if versions else '<p class="muted">No versions recorded.</p>'
    return f'<section class="card" id="environment"><h2>Environment</h2><div class="cols"><div>{_kv(pairs)}</div><div>{table}</div></div></section>'


def _footer(now: str, base_dir: Path | None) -> str:
    """Links to the sibling reports; with ``base_dir``, only to those that exist (a single ``eden run``
    folder has no junit.xml)."""
    names = ["junit.xml", "summary.md", "allure-results/"]
    if base_dir is not None:
        names = [n for n in names if (base_dir / n.rstrip("/")).exists()]
    links = "".join(f' · <a href="{n}">{n}</a>' for n in names)
    source = "results.json" if base_dir is None or (base_dir / "results.json").exists() else "summary.json"
    return f"<footer>Generated by eden at {h(now)} from {source}{links}</footer></main>"


def render_html(
    results: SuiteResults,
    *,
    history: History | None = None,
    plots: dict[str, dict[str, bytes]] | None = None,
    base_dir: Path | None = None,
) -> str:
    """The whole report as one HTML string. ``plots`` maps entry id -> plots (computed when None);
    ``history`` maps (scenario, profile) -> earlier runs ``{started, verdict, timings}``, oldest
    first (no trend is shown when None); ``base_dir`` (the folder of report.html, which entries'
    ``run_dir`` are relative to) lets the links list only files that exist."""
    if plots is None:
        plots = {e.id: entry_plots(e) for e in results.entries}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    nav = [("summary", "Summary"), ("matrix", "Matrix"), ("attention", "Attention"), ("timings", "Timings")]
    replications = _replications(results)
    if replications:
        nav.append(("replications", "Replications"))
    nav += [("entries", "Entries"), ("environment", "Environment")]
    verdict, _text = headline(results)
    counts = results.counts()
    status = ", ".join(f"{counts[v]} {v}" for v in ("failed", "broken") if counts[v]) or "all passed"
    body = [
        '<header class="top"><div class="brand">eden<span>qualification report</span></div>'
        f'<span class="pill {verdict}">{ICON[verdict]} {h(results.suite)}: {h(status)}</span><nav>'
        + "".join(f'<a href="#{k}">{h(v)}</a>' for k, v in nav)
        + "</nav></header><main>",
        _hero(results),
        _matrix(results, history),
        _attention(results),
        _timings_overview(results),
        replications,
        '<section class="card" id="entries"><h2>Entries</h2>'
        + "".join(_entry(e, plots.get(e.id, {}), base_dir) for e in results.entries)
        + "</section>",
        _environment(results),
        _footer(now, base_dir),
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>eden qualification: {h(results.suite)} ({h(status)})</title><style>{CSS}</style></head><body>"
        + "".join(body)
        + f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_html(
    results: SuiteResults,
    path: Path,
    *,
    history: History | None = None,
    plots: dict[str, dict[str, bytes]] | None = None,
) -> Path:
    """Write ``report.html`` to ``path`` (entries' run folders relative to its folder) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(results, history=history, plots=plots, base_dir=path.parent), encoding="utf-8")
    return path
