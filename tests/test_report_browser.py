"""The HTML qualification report in a real headless browser (Debian ``chromium``).

The report is rendered from real simulator runs (the same suite as tests/test_reports.py), then
chromium loads it from a file:// URL: once for a screenshot, once for the rendered DOM, each with a
net log. The page must render (a non-trivial screenshot showing the verdict colours), hold the
matrix and the plot images once rendered, and make no network request: no URL in the net log may
use http, https, ws or wss.

Chromium itself contacts Google at start-up whatever the page does (the accounts ListAccounts call,
the component updater, network time). Those endpoints are pointed at a ``chrome://`` URL with
chromium's own switches, so nothing leaves the machine and the net log stays a strict check of the
page; ``--host-resolver-rules`` makes any remaining name lookup fail. A control run with a page
that does load an external image proves that the check sees such a request.

Chromium is installed by ``scripts/install-system-deps`` (``scripts/test`` runs it). When it is
missing, the test fails and says so: a skipped browser check would hide a broken report.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eden.reports.model import KEY_TIMINGS, EntryResult, SuiteResults
from eden.reports.plots import DPI, TEXT_PT
from eden.reports.render import write_all

from test_reports import PROFILE_A, PROFILE_B, ROOT, build_suite_results

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
TIMEOUT = 60
NETWORK_SCHEMES = ("http:", "https:", "ws:", "wss:")
ALLOWED_SCHEMES = ("file:", "data:", "chrome:", "about:", "blob:")


def _chromium() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        path = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if path and os.access(path, os.X_OK):
            return path
    pytest.fail(
        "chromium was not found (looked for /usr/bin/chromium and chromium on PATH). The HTML report "
        "test needs Debian's headless chromium: run scripts/install-system-deps (as root), or "
        "scripts/test, which bootstraps the project (scripts/bootstrap) and installs it.",
        pytrace=False,
    )


def _pids_using(marker: str) -> list[int]:
    """Live processes whose command line names ``marker`` (our private user-data dir)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode("utf-8", "replace")
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            out.append(int(entry.name))
    return out


def _run_chromium(work: Path, url: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run headless chromium on ``url`` with a private profile and a net log; kill every process
    it started afterwards. Returns the completed process and the net log path."""
    profile = work / "profile"
    netlog = work / "netlog.json"
    args = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-features=NetworkTimeServiceQuerying",
        "--component-updater=url-source=chrome://eden-no-network/",
        '--gaia-config-contents={"urls":{"list_accounts_url":{"url":"chrome://eden-no-network/ListAccounts"}}}',
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        f"--log-net-log={netlog}",
        "--window-size=1400,2000",
        *extra,
        url,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {TIMEOUT} s")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while (left := _pids_using(str(profile))) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
    assert not _pids_using(str(profile)), "chromium processes were left running"
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr), netlog


def _netlog_urls(netlog: Path) -> set[str]:
    """Every ``url`` in the params of the net log's events."""
    assert netlog.is_file(), "chromium wrote no net log"
    text = netlog.read_text(encoding="utf-8", errors="replace").rstrip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # a log cut short: close the events array
        data = json.loads(text.rstrip(",") + "]}")
    urls: set[str] = set()
    for event in data.get("events", []):
        params = event.get("params") or {}
        if isinstance(params, dict) and isinstance(params.get("url"), str):
            urls.add(params["url"])
    return urls


def _network_urls(urls: set[str]) -> list[str]:
    return sorted(u for u in urls if u.lower().startswith(NETWORK_SCHEMES))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _chromium()
    out = tmp_path_factory.mktemp("browser-report")
    results = build_suite_results(out)
    results.save(out)
    history = {
        ("onboarding-smoke", PROFILE_A): [
            {"started": f"2026-11-{d:02d}T00:00:00+00:00", "verdict": v, "timings": {}}
            for d, v in enumerate(["passed", "failed", "passed", "broken", "passed", "passed"], start=1)
        ]
    }
    return write_all(results, out, history=history)["html"]


def _pixels(png: Path) -> np.ndarray:
    from matplotlib import image

    img = image.imread(str(png))
    if img.dtype != np.uint8:
        img = (img * 255).round().astype(np.uint8)
    return img[..., :3]


def _count_colour(img: np.ndarray, hex_colour: str, tol: int = 3) -> int:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    return int((np.abs(img.astype(np.int16) - rgb).max(axis=-1) <= tol).sum())


def test_report_screenshot_renders_and_makes_no_network_request(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    result, netlog = _run_chromium(tmp_path, report.resolve().as_uri(), f"--screenshot={shot}")
    assert shot.is_file(), f"no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"
    assert shot.stat().st_size > 20_000, "the screenshot is suspiciously small"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = _pixels(shot)
    assert img.shape[0] == 2000 and img.shape[1] == 1400
    sample = img[::20, ::20].reshape(-1, 3)
    assert len({tuple(p) for p in sample}) > 50, "the screenshot is (almost) a single colour"
    # the matrix cells show the three verdict colours (passed, failed, broken backgrounds)
    for colour in ("#dafbe1", "#ffebe9", "#fbefff"):
        assert _count_colour(img, colour) > 2000, f"no {colour} area in the screenshot"
    urls = _netlog_urls(netlog)
    assert not _network_urls(urls), f"the report made network requests: {_network_urls(urls)}"
    assert all(u.lower().startswith(ALLOWED_SCHEMES) for u in urls), sorted(urls)


def test_report_dom_has_matrix_and_plots(report: Path, tmp_path: Path) -> None:
    result, netlog = _run_chromium(tmp_path, report.resolve().as_uri(), "--dump-dom")
    dom = result.stdout
    assert "<table class=\"matrix\">" in dom, f"no matrix in the DOM (exit {result.returncode}): {result.stderr[-2000:]}"
    matrix = dom.split('<table class="matrix">', 1)[1].split("</table>", 1)[0]
    for name in ("onboarding-smoke", "baseos-update", "fleet-rollout-small", PROFILE_A, PROFILE_B):
        assert f">{name}<" in matrix, name
    assert matrix.count('class="trend"') >= 1
    plots = dom.count('<img src="data:image/png;base64,')
    assert plots >= 4, f"{plots} plot images in the DOM"
    assert "Needs attention" in dom and "±" in dom
    assert not _network_urls(_netlog_urls(netlog))


def test_the_network_check_sees_an_external_request(tmp_path: Path) -> None:
    """Control: a page that loads an external image shows up in the net log (name lookup fails
    through --host-resolver-rules, so nothing leaves the machine)."""
    page = tmp_path / "external.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://eden-report-check.invalid/x.png"></body></html>')
    _result, netlog = _run_chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert "http://eden-report-check.invalid/x.png" in _network_urls(_netlog_urls(netlog))


# ------------------------------------------------------------ the report in a 1400 px window --
MEASURE = """<script>window.addEventListener('load',function(){
document.querySelectorAll('details').forEach(function(d){d.open=true;});
var res={page:document.documentElement.scrollWidth,view:document.documentElement.clientWidth,cut:[],plots:[]};
document.querySelectorAll('table').forEach(function(t,i){var box=t.closest('.scroll')||t.parentElement;
 if(box.scrollWidth>box.clientWidth+1||t.getBoundingClientRect().right>res.view){var sec=t.closest('section');
  res.cut.push({section:sec?sec.id:'',table:i,width:Math.round(t.getBoundingClientRect().width),box:box.clientWidth});}});
document.querySelectorAll('img.plot').forEach(function(im){res.plots.push(im.getBoundingClientRect().width/im.naturalWidth);});
var p=document.createElement('pre');p.id='eden-measure';p.textContent=JSON.stringify(res);document.body.appendChild(p);});</script>"""


def _measure(page: Path, work: Path) -> dict[str, Any]:
    """Lay ``page`` out in chromium's 1400 px window, every section unfolded, and return which
    tables do not fit their box (columns hidden behind a scroll bar or past the window) and the
    scale each plot is shown at."""
    probe = page.with_name("measure-" + page.name)
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    result, _ = _run_chromium(work, probe.resolve().as_uri(), "--dump-dom")
    found = re.search(r'<pre id="eden-measure">(.*?)</pre>', result.stdout)
    assert found, f"the measuring script did not run (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def _wide_suite() -> SuiteResults:
    """The widest matrix and timing table a qualification has: every shipped profile, every key
    timing, long scenario names, replications and a full trend."""
    profiles = sorted(p.stem for p in (ROOT / "hw_profiles").glob("*.yaml"))
    scenarios = ["update-with-power-loss", "network-outage-recovery", "baseos-update-rollback", "attestation-tamper"]
    entries = [
        EntryResult(
            id=f"{s}--{p}--r{r}", suite="qualification", scenario=s, scenario_file=f"scenarios/{s}.yaml", profile=p,
            backend="qemu", seed=1000 + r, replication=r, verdict="passed" if r == 0 else "failed", devices=1000,
            wall_seconds=12345.6, simulated_seconds=86400.0,
            timings={k: {"count": 1000, "p50": 1234.5, "p95": 3599.9, "max": 4000.0} for k in KEY_TIMINGS},
        )
        for s in scenarios for p in profiles for r in range(2)
    ]
    return SuiteResults(suite="qualification", backend="qemu", started="2026-11-01T00:00:00+00:00", entries=entries)


def test_the_widest_report_fits_a_1400_px_window(tmp_path: Path) -> None:
    results = _wide_suite()
    history = {e.key: [{"started": "2026-11-01", "verdict": "passed", "timings": {}}] * 12 for e in results.entries}
    page = write_all(results, tmp_path / "out", history=history)["html"]
    measured = _measure(page, tmp_path)
    assert measured["page"] <= measured["view"], measured
    assert measured["cut"] == [], measured["cut"]


def test_the_report_fits_and_its_plots_are_readable(report: Path, tmp_path: Path) -> None:
    measured = _measure(report, tmp_path)
    assert measured["cut"] == [], measured["cut"]
    assert measured["plots"], "no plot was laid out"
    # Plot text is at least TEXT_PT; shown at this scale, that many CSS pixels:
    smallest_px = TEXT_PT * DPI / 72 * min(measured["plots"])
    assert smallest_px >= 9.5, (smallest_px, measured["plots"])
