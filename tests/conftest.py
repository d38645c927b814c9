"""Suite-wide test plumbing.

Real-time suites (the emulated and qemu backends' scenarios) spend most of their wall time waiting
on EVE's own timers. Their tests (marker ``background("<suite>")``) are moved to the end of the
session, and the suites are started as soon as collection finishes, in the background, so their
waits overlap with the rest of the tests. The tests assert the runs' results; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from eden_subprocess import argv as eden_argv

ROOT = Path(__file__).resolve().parents[1]


class BackgroundRun:
    """A command started at collection time; ``wait`` returns (rc, output, work dir)."""

    def __init__(self, argv: list[str], work: Path) -> None:
        self.work = work
        self.log = open(work / "output.log", "w+", encoding="utf-8")
        # its own process group, so that ``stop`` reaches the suite's workers too
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)

    def wait(self, timeout: float) -> tuple[int, str]:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self.log.seek(0)
        return rc, self.log.read()

    def stop(self) -> None:
        """End the run and every worker it started (none may write into the work dir afterwards).

        SIGTERM first: ``eden qualify`` then stops its entries and cleans up after them
        (eden.interrupt), which takes seconds; SIGKILL to the group only if it does not end."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


_BACKGROUND: dict[str, BackgroundRun] = {}
SUITES = {"emulated": 6, "qemu": 6}
"""Real-time suites (``suites/<name>.yaml``) and how many of their entries run at once."""


def _suite_argv(name: str, work: Path) -> list[str]:
    argv = eden_argv("qualify", str(ROOT / "suites" / f"{name}.yaml"), "--jobs", str(SUITES[name]),
                     "--out", str(work / "suite"), "--no-history")
    if name == "qemu":
        # Nine TCG VMs booting at once on two cores slow every boot: the entries start 20 s apart,
        # longest first (suites/qemu.yaml).
        argv += ["--stagger", "20"]
        # The suite needs the reference image: build it once, up front, so that its entries do not
        # queue on the build lock while their scenario clocks run.
        argv = ["sh", "-c", f"{sys.executable} -m eden image build >{work}/image-build.log 2>&1; exec \"$@\"", "sh", *argv]
    return argv


@pytest.hookimpl(trylast=True)  # after ``-m``/``-k`` deselection: only suites whose test will run start
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    late = [i for i in items if i.get_closest_marker("background")]
    if not late or config.option.collectonly:
        return
    items[:] = [i for i in items if not i.get_closest_marker("background")] + late
    wanted = sorted({m.args[0] for i in late for m in i.iter_markers("background")})
    for name in wanted:
        work = Path(tempfile.mkdtemp(prefix=f"eden-bg-{name}-"))
        _BACKGROUND[name] = BackgroundRun(_suite_argv(name, work), work)


def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    import shutil

    for run in _BACKGROUND.values():
        run.stop()
        shutil.rmtree(run.work, ignore_errors=True)
    _BACKGROUND.clear()


def background_run(name: str) -> BackgroundRun:
    """A suite's background run (started when its test was collected)."""
    run = _BACKGROUND.get(name)
    assert run is not None, f"the background run of suite {name!r} was not started"
    return run


@pytest.fixture
def emulated_suite_run() -> BackgroundRun:
    return background_run("emulated")


@pytest.fixture
def qemu_suite_run() -> BackgroundRun:
    return background_run("qemu")


DEVICE_SCENARIOS = [
    "onboarding-smoke",
    "baseos-update",
    "baseos-update-rollback",
    "update-with-power-loss",
    "network-outage-recovery",
    "attestation-tamper",
]
"""The six device scenarios of ``suites/emulated.yaml`` and ``suites/qemu.yaml``."""


def assert_device_suite_passed(run: BackgroundRun, backend: str, timeout: float, log_prefix: str) -> tuple[Path, dict[str, Any]]:
    """The suite run finished with every device scenario passed on ``backend``: verdicts, exit code,
    summaries, controller traffic, ``logs/<log_prefix>*`` attachments and a clean JUnit file.
    Returns the suite's output directory and its results."""
    import json

    rc, output = run.wait(timeout=timeout)
    out = run.work / "suite"
    results = json.loads((out / "results.json").read_text())
    verdicts = {e["scenario"]: e["verdict"] for e in results["entries"]}
    detail = {e["scenario"]: [x["name"] for x in e["expectations"] if x["status"] != "passed"] for e in results["entries"]}
    assert verdicts == {s: "passed" for s in DEVICE_SCENARIOS}, (detail, output[-3000:])
    assert rc == 0, output[-3000:]
    assert results["backend"] == backend
    for entry in results["entries"]:
        summary = json.loads((out / entry["run_dir"] / "summary.json").read_text())
        assert summary["backend"] == backend
        # the controller served this run over the wire: it counted signed config requests
        assert summary["metrics"]["controller"]["config"]["requests"] > 0
        assert any(a.startswith(f"logs/{log_prefix}") for a in entry["attachments"]), entry["attachments"]
    junit = (out / "junit.xml").read_text()
    assert junit.count("<testcase") == len(DEVICE_SCENARIOS) and "<failure" not in junit and "<error" not in junit
    return out, results


def assert_tamper_refused_for_pcrs(out: Path, results: dict[str, Any], pcrs: set[int]) -> None:
    """attestation-tamper: every quote the controller judged was a signed TPM quote (certs posted
    first), one passed, and each refused quote failed on the PCR values, naming ``pcrs`` (the PCRs
    the tamper changes), not on a broken signature or structure (eden.controller.quote)."""
    import json

    entry = next(e for e in results["entries"] if e["scenario"] == "attestation-tamper")
    events = [json.loads(line) for line in (out / entry["run_dir"] / "events.jsonl").read_text().splitlines()]
    ctl = [e for e in events if e["source"] == "controller"]
    quotes = [e for e in ctl if e["what"] == "attestation" and e.get("type") == "QUOTE"]
    assert any(e["what"] == "certs_posted" for e in ctl), {e["what"] for e in ctl}
    assert quotes and all(e["tpm"] for e in quotes), quotes
    assert any(e["code"] == "SUCCESS" for e in quotes), quotes
    failed = [e for e in quotes if e["code"] != "SUCCESS"]
    assert failed and all(e["code"] == "QUOTE_FAILED" and e.get("field") == "pcr_values" and set(e["mismatch"]) == pcrs
                          for e in failed), failed
