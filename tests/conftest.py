"""Suite-wide test plumbing.

Real-time runs (the emulated and qemu backends' suites, and a few long scenarios) spend most of
their wall time waiting on EVE's own timers. Their tests (marker ``background("<run>")``) are moved
to the end of the session, and the runs are started as soon as collection finishes, in the
background, so their waits overlap with the rest of the tests. The tests assert the runs' results;
nothing is skipped.

Runs of one *lane* go one after another (the QEMU runs: TCG VMs on two cores slow each other's
boots); lanes run side by side.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from eden_subprocess import argv as eden_argv
from eden_subprocess import env as eden_env
from leakcheck import marked_processes

ROOT = Path(__file__).resolve().parents[1]
QUEUE_LIMIT = 3600.0
"""Seconds a run may wait for the runs before it in its lane (a bound, not an estimate)."""


class BackgroundRun:
    """A command started in the background; ``wait`` returns (rc, output) once it ended."""

    def __init__(self, name: str, argv: list[str], work: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.work = work
        self.env = env
        self.log = open(work / "output.log", "w+", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = threading.Event()
        self.cancelled = False
        self.created = time.monotonic()
        self.began: float | None = None
        self.ended: float | None = None

    @property
    def out(self) -> Path:
        """A scenario run's output directory (``eden run --out``)."""
        return self.work / "out"

    def leftovers(self) -> list[str]:
        """What a finished scenario run left behind: live processes carrying its marker, entries in
        its TMPDIR and in its VM socket directory."""
        assert self.env is not None and "EDEN_TEST_MARK" in self.env, f"{self.name} is not a scenario run"
        left = [f"process {pid}" for pid in sorted(marked_processes("EDEN_TEST_MARK", self.env["EDEN_TEST_MARK"]))]
        for where in ("tmp", "sock"):
            left += [f"{where}/{p.name}" for p in sorted((self.work / where).iterdir())]
        return left

    def timing(self) -> str:
        if self.began is None:
            return f"{self.name}: not started"
        start = self.began - self.created
        took = f"{self.ended - self.began:.0f} s" if self.ended is not None else "still running at the end"
        return f"{self.name}: started +{start:.0f} s, took {took}"

    def start(self) -> None:
        self.began = time.monotonic()
        if not self.cancelled:
            # its own process group, so that ``stop`` reaches the run's workers too
            self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env=self.env, start_new_session=True)
        self.started.set()

    def wait(self, timeout: float) -> tuple[int, str]:
        """Wait for the run to end, at most ``timeout`` seconds from its start."""
        assert self.started.wait(QUEUE_LIMIT), "the runs before this one in its lane did not end"
        assert self.proc is not None, "the run was cancelled"
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        self.log.seek(0)
        return rc, self.log.read()

    def stop(self) -> None:
        """End the run and every worker it started (none may write into the work dir afterwards).

        SIGTERM first: ``eden run``/``eden qualify`` then stop and clean up after themselves
        (eden.interrupt), which takes seconds; SIGKILL to the group only if it does not end."""
        self.cancelled = True
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


class Lane(threading.Thread):
    """Starts its runs one after another, each when the one before it ended."""

    def __init__(self, runs: list[BackgroundRun]) -> None:
        super().__init__(daemon=True)
        self.runs = runs

    def run(self) -> None:
        for run in self.runs:
            run.start()
            if run.proc is not None:
                run.proc.wait()
            run.ended = time.monotonic()


@dataclass(frozen=True)
class Background:
    """A background run: its lane and how to build its command line and environment in its work dir."""

    lane: str
    argv: Callable[[Path], list[str]]
    env: Callable[[Path], dict[str, str]] | None = None


SUITE_JOBS = {"emulated": 8, "qemu": 6}
"""Real-time suites (``suites/<name>.yaml``) and how many of their entries run at once."""


def _suite_argv(name: str) -> Callable[[Path], list[str]]:
    def build(work: Path) -> list[str]:
        argv = eden_argv("qualify", str(ROOT / "suites" / f"{name}.yaml"), "--jobs", str(SUITE_JOBS[name]),
                         "--out", str(work / "suite"), "--no-history")
        if name == "qemu":
            # Nine TCG VMs booting at once on two cores slow every boot: the entries start 20 s apart,
            # longest first (suites/qemu.yaml).
            argv += ["--stagger", "20"]
            argv = _image_first(argv, work)
        return argv
    return build


def _image_first(argv: list[str], work: Path) -> list[str]:
    """``argv`` after ``eden image build``: a QEMU run needs the reference image; built up front
    (or found in the cache), runs do not queue on the build lock while their scenario clocks run."""
    return ["sh", "-c", f"{sys.executable} -m eden image build >{work}/image-build.log 2>&1; exec \"$@\"", "sh", *argv]


def _scenario_argv(text: str, backend: str) -> Callable[[Path], list[str]]:
    """``eden run`` of a scenario text on ``backend``; results in ``<work>/out``."""
    def build(work: Path) -> list[str]:
        scenario = work / "scenario.yaml"
        scenario.write_text(text, encoding="utf-8")
        argv = eden_argv("run", str(scenario), "--backend", backend, "--out", str(work / "out"), "--quiet")
        return _image_first(argv, work) if backend == "qemu" else argv
    return build


def _scenario_env(name: str) -> Callable[[Path], dict[str, str]]:
    """A scenario run's environment: its own TMPDIR (``<work>/tmp``), a marker every process it starts
    inherits, and its own directory for VM sockets (EDEN_SOCK_DIR), so that its leak checks see only
    what this run left."""
    def build(work: Path) -> dict[str, str]:
        (work / "sock").mkdir()
        return eden_env(work, mark=f"eden-bg-{name}-{os.getpid()}", EDEN_SOCK_DIR=str(work / "sock"))
    return build


SUITES = {"emulated": "emulated", "qemu": "qemu"}
"""Background suites and their lanes (the suites run first in their lanes: the longest runs)."""


def _script_argv(script: str) -> Callable[[Path], list[str]]:
    """``python tests/<script> WORK`` (a script driving eden the way a person would, e.g. a lab
    admin against a stand-in lab: tests/board_lane.py), after ``eden image build``."""
    def build(work: Path) -> list[str]:
        return _image_first([sys.executable, str(ROOT / "tests" / script), str(work)], work)
    return build


def _background(marker: pytest.Mark) -> Background:
    """The run a ``background`` marker names: a suite, ``background("emulated")``, a scenario text,
    ``background("name", lane=..., scenario=TEXT, backend=...)``, or a script,
    ``background("name", lane=..., script="board_lane.py")``."""
    name = marker.args[0]
    if name in SUITES:
        return Background(SUITES[name], _suite_argv(name))
    kw = marker.kwargs
    if "script" in kw:
        return Background(kw["lane"], _script_argv(kw["script"]), _scenario_env(name))
    return Background(kw["lane"], _scenario_argv(kw["scenario"], kw["backend"]), _scenario_env(name))


_BACKGROUND: dict[str, BackgroundRun] = {}
_LANES: list[Lane] = []
_TIMINGS: list[str] = []


def _terminated(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM to pytest (a CI system cancelling the job) ends the session as a Ctrl-C does, so
    that ``pytest_sessionfinish`` stops the background runs: they are in their own sessions and
    would outlive pytest otherwise. Only where SIGTERM has its default disposition (a launcher that
    set its own is left alone)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)


@pytest.hookimpl(trylast=True)  # after ``-m``/``-k`` deselection: only runs whose test will run start
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    late = [i for i in items if i.get_closest_marker("background")]
    if not late or config.option.collectonly:
        return
    items[:] = [i for i in items if not i.get_closest_marker("background")] + late
    specs: dict[str, Background] = {}
    for item in late:
        for marker in item.iter_markers("background"):
            specs.setdefault(marker.args[0], _background(marker))
    # suites first in their lanes, then the scenario runs in collection order
    order = sorted(specs, key=lambda name: name not in SUITES)
    lanes: dict[str, list[BackgroundRun]] = {}
    for name in order:
        spec = specs[name]
        work = Path(tempfile.mkdtemp(prefix=f"eden-bg-{name}-"))
        run = BackgroundRun(name, spec.argv(work), work, spec.env(work) if spec.env is not None else None)
        _BACKGROUND[name] = run
        lanes.setdefault(spec.lane, []).append(run)
    for runs in lanes.values():
        lane = Lane(runs)
        _LANES.append(lane)
        lane.start()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """When each background run started and how long it took (what decides the suite's wall time)."""
    if not _TIMINGS:
        return
    terminalreporter.section("background runs")
    for line in _TIMINGS:
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    import shutil

    for run in _BACKGROUND.values():
        run.stop()
    for lane in _LANES:
        lane.join(120)
    for run in _BACKGROUND.values():
        run.stop()  # one the lane started while the others were being stopped
        run.log.close()
        shutil.rmtree(run.work, ignore_errors=True)
    _TIMINGS[:] = [run.timing() for run in _BACKGROUND.values()]
    _BACKGROUND.clear()
    _LANES.clear()


def background_run(name: str) -> BackgroundRun:
    """A background run (started when its test was collected)."""
    run = _BACKGROUND.get(name)
    assert run is not None, f"the background run {name!r} was not started"
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
EMULATED_FAULT_SCENARIOS = ["controller-and-agent-faults", "hung-agent-in-test-window"]
"""Also in ``suites/emulated.yaml``: faults through the agent's fault inbox and the real controller
(run in parallel with the six, inside the network outage's 11 minutes)."""


def assert_device_suite_passed(run: BackgroundRun, backend: str, timeout: float, log_prefix: str,
                               scenarios: list[str] | None = None) -> tuple[Path, dict[str, Any]]:
    """The suite run finished with every device scenario (``scenarios``, default the six) passed on
    ``backend``: verdicts, exit code, summaries, controller traffic, ``logs/<log_prefix>*``
    attachments and a clean JUnit file. Returns the suite's output directory and its results."""
    import json

    expected = scenarios if scenarios is not None else DEVICE_SCENARIOS

    rc, output = run.wait(timeout=timeout)
    out = run.work / "suite"
    results = json.loads((out / "results.json").read_text())
    verdicts = {e["scenario"]: e["verdict"] for e in results["entries"]}
    detail = {e["scenario"]: [x["name"] for x in e["expectations"] if x["status"] != "passed"] for e in results["entries"]}
    assert verdicts == {s: "passed" for s in expected}, (detail, output[-3000:], _why_failed(out, results))
    assert rc == 0, output[-3000:]
    assert results["backend"] == backend
    for entry in results["entries"]:
        summary = json.loads((out / entry["run_dir"] / "summary.json").read_text())
        assert summary["backend"] == backend
        # the controller served this run over the wire: it counted signed config requests
        assert summary["metrics"]["controller"]["config"]["requests"] > 0
        assert any(a.startswith(f"logs/{log_prefix}") for a in entry["attachments"]), entry["attachments"]
    junit = (out / "junit.xml").read_text()
    assert junit.count("<testcase") == len(expected) and "<failure" not in junit and "<error" not in junit
    return out, results


def _why_failed(out: Path, results: dict[str, Any], tail: int = 8) -> str:
    """For each failed entry: its failed expectations' reasons and the last device events of each
    device (the run's work dir, where the console logs were, is gone once the suite ends)."""
    import json

    lines = []
    for entry in results["entries"]:
        if entry["verdict"] == "passed":
            continue
        lines.append(f"== {entry['scenario']}")
        lines += [f"  {x['name']}: {x.get('detail', {}).get('why', x['status'])}" for x in entry["expectations"] if x["status"] != "passed"]
        path = out / entry["run_dir"] / "events.jsonl"
        if not path.is_file():
            continue
        by_device: dict[str, list[str]] = {}
        for line in path.read_text().splitlines():
            e = json.loads(line)
            if e.get("device") and e.get("source") in ("device", "console", "controller", "qmp"):
                by_device.setdefault(e["device"], []).append(f"{e['t']:.0f}s {e['source']} {e['what']}")
        for dev, seen in sorted(by_device.items()):
            lines.append(f"  {dev}: " + " | ".join(seen[-tail:]))
    return "\n".join(lines)


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
