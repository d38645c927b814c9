"""Render every report of a suite run from its stored results: the one entry point for
``eden qualify`` and ``eden report DIR``."""

from __future__ import annotations

from pathlib import Path
from eden.reports.allure import write_allure
from eden.reports.html import History, write_html
from eden.reports.junit import write_junit
from eden.reports.markdown import render_markdown
from eden.reports.model import SuiteResults
from eden.reports.plots import entry_plots

__all__ = ["write_all", "write_run_html"]


def write_all(results: SuiteResults, out_dir: Path, *, history: History | None = None) -> dict[str, Path]:
    """Write ``allure-results/``, ``junit.xml``, ``report.html`` and ``summary.md`` into ``out_dir``
    (the suite output folder, which the entries' ``run_dir`` are relative to).

    ``history`` maps (scenario, profile) -> earlier runs ``{started, verdict, timings}``, oldest
    first; it adds a trend to each matrix cell. Returns {"allure", "junit", "html", "markdown"} ->
    path. Plots are drawn once and shared by the Allure and HTML reports."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, dict[str, bytes]] = {e.id: entry_plots(e) for e in results.entries}
    md = out_dir / "summary.md"  # before report.html, whose footer links only the files that exist
    md.write_text(render_markdown(results, html_name="report.html"), encoding="utf-8")
    paths: dict[str, Path] = {
        "allure": write_allure(results, out_dir, base_dir=out_dir, plots=plots),
        "junit": write_junit(results, out_dir / "junit.xml"),
        "markdown": md,
    }
    paths["html"] = write_html(results, out_dir / "report.html", history=history, plots=plots)
    return paths


def write_run_html(run_dir: Path, *, features: list[str] | None = None) -> Path:
    """``report.html`` for one ``eden run`` folder (its summary.json and run.json), as a suite of one
    entry, so a single run gets the same page as ``eden qualify``. Returns its path."""
    import json

    from eden.reports.model import entry_from_summary

    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    name = str(summary.get("scenario") or info.get("scenario") or run_dir.name)
    entry = entry_from_summary(summary, info, entry_id=name, suite=name, scenario_file=str(info.get("file", "")),
                               profile=None, replication=0, run_dir=".", features=features or [])
    results = SuiteResults(suite=name, description=str(summary.get("description", "")), suite_file=str(info.get("file", "")),
                           backend=entry.backend, started=entry.started, wall_seconds=entry.wall_seconds,
                           host=str(info.get("host", "")), platform=str(info.get("platform", "")),
                           python=str(info.get("python", "")), versions=dict(info.get("versions") or {}),
                           command=str(info.get("command", "")), entries=[entry])
    return write_html(results, run_dir / "report.html")
