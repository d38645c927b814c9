"""Render every report of a suite run from its stored results: the one entry point for
``eden qualify`` and ``eden report DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eden.reports.allure import write_allure
from eden.reports.html import History, write_html
from eden.reports.junit import write_junit
from eden.reports.markdown import render_markdown
from eden.reports.model import SuiteResults
from eden.reports.plots import entry_plots

__all__ = ["write_all"]


def write_all(results: SuiteResults, out_dir: Path, *, history: History | None = None) -> dict[str, Path]:
    """Write ``allure-results/``, ``junit.xml``, ``report.html`` and ``summary.md`` into ``out_dir``
    (the suite output folder, which the entries' ``run_dir`` are relative to).

    ``history`` maps (scenario, profile) -> earlier runs ``{started, verdict, timings}``, oldest
    first; it adds a trend to each matrix cell. Returns {"allure", "junit", "html", "markdown"} ->
    path. Plots are drawn once and shared by the Allure and HTML reports."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, dict[str, bytes]] = {e.id: entry_plots(e) for e in results.entries}
    paths: dict[str, Any] = {
        "allure": write_allure(results, out_dir, base_dir=out_dir, plots=plots),
        "junit": write_junit(results, out_dir / "junit.xml"),
        "html": write_html(results, out_dir / "report.html", history=history, plots=plots),
    }
    md = out_dir / "summary.md"
    md.write_text(render_markdown(results, html_name="report.html"), encoding="utf-8")
    paths["markdown"] = md
    return paths
