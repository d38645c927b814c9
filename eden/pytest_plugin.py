"""pytest plugin (entry point ``pytest11: eden``): scenario files as test items, and a fleet fixture.

* ``pytest scenarios/`` collects every YAML file whose top level is a mapping with ``fleet`` and
  ``name`` as one item per ``--eden-profile`` (or one item when none is given). Other YAML files
  (hardware profiles, suites) are ignored.
* Failure classes as in ``eden qualify``: the scenario *runs* in the item's setup, so invalid input
  or an infrastructure error is a pytest **error** (JUnit ``<error>``, Allure *broken*); its
  expectations are *judged* in the call, so a failed expectation is a **failure** (JUnit
  ``<failure>``, Allure *failed*).
* JUnit properties (profile, backend, seed, image versions) go to ``item.user_properties``. When
  allure-pytest is active (``--alluredir``) the item also gets the scenario's steps (simulated
  times in the titles), parameters, labels and attachments (metrics, timeline slices).
* Fixture ``eden_fleet``: a factory of :class:`eden.fleet.Fleet` on the chosen backend.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from eden.errors import InfrastructureError, InvalidInput
from eden.fleet import Fleet, StepParams, dump_yaml, scenario_doc, with_profile
from eden.run import RunResult, execute
from eden.scenario.load import LoadedScenario, load_scenario
from eden.verdicts import entry_verdict

NO_PROFILE = "-"
"""The profile shown for an item that keeps its scenario's own fleet (as in eden qualify)."""
RUNS_KEY = pytest.StashKey[Path]()
COLLECTED_KEY = pytest.StashKey[int]()


# ------------------------------------------------------------------------------------ options --


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("eden", "eden: EVE-OS scenarios and fleets")
    group.addoption("--eden-backend", default="sim", metavar="NAME", help="backend for scenario items and eden_fleet (default: sim)")
    group.addoption(
        "--eden-profile",
        action="append",
        default=[],
        metavar="PROFILE",
        help="hardware profile substituted into every fleet entry; repeat to run each scenario on several profiles",
    )
    group.addoption("--eden-seed", type=int, default=None, metavar="N", help="override every scenario's seed")
    group.addoption("--eden-out", default=None, metavar="DIR", help="where run folders go (default: a folder under pytest's basetemp)")


@dataclass(frozen=True)
class Options:
    backend: str
    profiles: list[str]
    seed: int | None
    out: str | None


def options(config: pytest.Config) -> Options:
    """The ``--eden-*`` options of this session."""
    return Options(
        backend=config.getoption("eden_backend"),
        profiles=list(dict.fromkeys(config.getoption("eden_profile") or [])),
        seed=config.getoption("eden_seed"),
        out=config.getoption("eden_out"),
    )


def pytest_configure(config: pytest.Config) -> None:
    from eden.backends.registry import REGISTRY, runnable_backends

    opts = options(config)
    if opts.backend not in REGISTRY or opts.backend not in runnable_backends():
        known = ", ".join(runnable_backends())
        state = "is not runnable in this build" if opts.backend in REGISTRY else "is unknown"
        raise pytest.UsageError(f"--eden-backend: backend '{opts.backend}' {state}; runnable: {known}")
    if opts.profiles:
        from eden.profiles import load_profiles

        known_profiles = load_profiles()
        bad = [p for p in opts.profiles if p not in known_profiles]
        if bad:
            raise pytest.UsageError(f"--eden-profile: unknown profile {', '.join(bad)}; known: {', '.join(known_profiles)}")


def runs_root(config: pytest.Config) -> Path:
    """The folder that holds this session's run folders (``--eden-out`` or under basetemp)."""
    if RUNS_KEY not in config.stash:
        out = options(config).out
        if out:
            root = Path(out)
        else:
            factory = getattr(config, "_tmp_path_factory", None)
            if factory is not None:
                root = factory.getbasetemp() / "eden-runs"
            else:  # the tmp_path plugin is disabled
                import tempfile

                root = Path(tempfile.mkdtemp(prefix="eden-runs-"))
        root.mkdir(parents=True, exist_ok=True)
        config.stash[RUNS_KEY] = root.resolve()
    return config.stash[RUNS_KEY]


def _new_run_dir(config: pytest.Config, scenario: str, profile: str | None) -> Path:
    base = runs_root(config) / (f"{scenario}--{profile}" if profile else scenario)
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    out.mkdir(parents=True)
    return out


# ---------------------------------------------------------------------------------- collection --


def scenario_name(path: Path) -> str | None:
    """The scenario's ``name`` if ``path`` is a scenario file (a mapping with ``fleet`` and
    ``name``), else None. A file that does not parse counts when both keys start a line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        if re.search(r"^fleet\s*:", text, re.M) and (m := re.search(r"^name\s*:\s*['\"]?([\w.-]+)", text, re.M)):
            return m.group(1)
        return None
    if isinstance(data, dict) and "fleet" in data and "name" in data:
        return str(data["name"]) if isinstance(data["name"], (str, int, float)) and data["name"] != "" else path.stem
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix in (".yaml", ".yml"):
        name = scenario_name(file_path)
        if name is not None:
            return ScenarioFile.from_parent(parent, path=file_path, scenario=name)
    return None


class ScenarioFile(pytest.File):
    """A scenario file: one item per ``--eden-profile`` (one item without the option)."""

    def __init__(self, *, scenario: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario

    def collect(self) -> Iterator[ScenarioItem]:
        profiles = options(self.config).profiles
        for profile in profiles or [None]:
            name = f"{self.scenario}[{profile}]" if profile else self.scenario
            yield ScenarioItem.from_parent(self, name=name, scenario=self.scenario, profile=profile)


class ScenarioFailed(AssertionError):
    """At least one expectation (or blocking step) failed: a product failure."""


class ScenarioItem(pytest.Item):
    """Runs the scenario in setup (errors there are infrastructure or input problems) and judges
    its expectations in the call."""

    def __init__(self, *, scenario: str, profile: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.profile = profile
        self.result: RunResult | None = None
        self.loaded: LoadedScenario | None = None
        self.run_dir: Path | None = None

    def setup(self) -> None:
        opts = options(self.config)
        self.config.stash[COLLECTED_KEY] = self.config.stash.get(COLLECTED_KEY, 0) + 1
        report = AllureReport.for_item(self)
        self.user_properties += [("profile", self.profile or NO_PROFILE), ("backend", opts.backend)]
        if report:
            report.begin(self, opts)
        self.run_dir = _new_run_dir(self.config, self.scenario, self.profile)
        self.loaded = load_for_item(self.path, opts.backend, self.profile, self.run_dir)
        sc = self.loaded.scenario
        seed = sc.seed if opts.seed is None else opts.seed
        self.user_properties += [("seed", seed), ("devices", len(self.loaded.devices))]
        self.user_properties += [(f"image.{name}", img.version) for name, img in sc.images.items()]
        self.result = execute(self.loaded, backend_name=opts.backend, seed=opts.seed, out_dir=self.run_dir)
        verdict = entry_verdict(self.result.verdict)
        self.user_properties += [("verdict", verdict), ("run_dir", str(self.run_dir))]
        if self.result.summary.get("simulated_seconds") is not None:
            self.user_properties.append(("simulated_seconds", f"{self.result.summary['simulated_seconds']:g}"))
        if report:
            report.scenario(self.loaded, self.result, self.profile)
        if self.result.verdict == "error":
            raise InfrastructureError(self.result.error or "the backend failed")

    def runtest(self) -> None:
        assert self.result is not None
        if self.result.verdict != "passed":
            raise ScenarioFailed(failure_message(self.result, self.profile))

    def _describe(self, exc: BaseException) -> str | None:
        where = f"\nrun folder: {self.run_dir}" if self.run_dir else ""
        if isinstance(exc, ScenarioFailed):
            return str(exc)
        if isinstance(exc, InfrastructureError):
            return f"infrastructure error (broken: the product was not judged): {exc}{where}"
        if isinstance(exc, InvalidInput):
            return f"invalid input (the scenario did not run):\n{exc}"
        return None

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        return self._describe(excinfo.value) or super().repr_failure(excinfo, style)

    def _repr_failure_py(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        # pytest formats setup errors with this one: no traceback for eden's own error classes
        return self._describe(excinfo.value) or super()._repr_failure_py(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"scenario {self.name}"


def load_for_item(path: Path, backend: str, profile: str | None, run_dir: Path) -> LoadedScenario:
    """Validate the scenario for ``backend``, on ``profile`` when given. Uses the loader's
    ``fleet_profile`` when it has one, else loads a substituted copy written into ``run_dir``."""
    import inspect

    from eden.backends.registry import backend_capabilities

    caps, max_devices = backend_capabilities(backend)
    if profile is None:
        return load_scenario(path, backend=backend, capabilities=caps, max_devices=max_devices)
    if "fleet_profile" in inspect.signature(load_scenario).parameters:
        return load_scenario(path, backend=backend, capabilities=caps, max_devices=max_devices, fleet_profile=profile)  # type: ignore[call-arg]
    copy = run_dir / path.name
    copy.write_text(f"# {path} with profile {profile}\n" + dump_yaml(with_profile(scenario_doc(path), profile)), encoding="utf-8")
    return load_scenario(copy, backend=backend, capabilities=caps, max_devices=max_devices)


def failure_message(result: RunResult, profile: str | None) -> str:
    """What failed, with observed values and why, for the AssertionError of a failed scenario."""
    s = result.summary
    exps = s.get("expectations", [])
    failed = [e for e in exps if e.get("status") == "failed"]
    on = f" on {profile}" if profile else ""
    lines = [f"scenario {s.get('scenario')}{on} failed ({s.get('backend')}, seed {s.get('seed')}): {len(failed)} of {len(exps)} expectations failed"]
    for e in failed:
        detail = e.get("detail") or {}
        lines.append(f"  FAILED {e.get('name')} ({e.get('where')}, line {e.get('line')})")
        lines.append(f"    observed: {json.dumps(e.get('observed'), sort_keys=True, default=str)}")
        if detail.get("why"):
            lines.append(f"    why: {detail['why']}")
        for dev, seen in (detail.get("failing") or {}).items():
            lines.append(f"    {dev}: {json.dumps(seen, sort_keys=True, default=str)}")
    for step in s.get("steps", []):
        if step.get("status") in ("failed", "interrupted"):
            why = (step.get("detail") or {}).get("why", "")
            lines.append(f"  step {step['index']} '{step['name']}' {step['status']}" + (f": {why}" if why else ""))
    lines.append(f"run folder: {result.out_dir}")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if config.stash.get(COLLECTED_KEY, 0):
        terminalreporter.write_line(f"eden: run folders in {runs_root(config)}")


# -------------------------------------------------------------------------------------- allure --


class AllureReport:
    """Puts a scenario run into the current allure-pytest test result, with the conventions of
    ``eden qualify`` (eden.reports.allure): the same step names, parameters, labels and
    attachments. Steps are replayed after the run; their run-clock times are a step parameter."""

    def __init__(self, config: pytest.Config) -> None:
        import allure
        from allure_commons.types import AttachmentType, LabelType

        self.config = config
        self.allure = allure
        self.Attachment = AttachmentType
        self.Label = LabelType

    @classmethod
    def for_item(cls, item: pytest.Item) -> AllureReport | None:
        if item.config.pluginmanager.get_plugin("allure_listener") is None:
            return None
        return cls(item.config)

    def parameter(self, name: str, value: object) -> None:
        allure_parameter(self.config, name, value)

    def begin(self, item: ScenarioItem, opts: Options) -> None:
        """What is known before the run: enough to file a broken result in the right place."""
        dyn = self.allure.dynamic
        dyn.label(self.Label.PARENT_SUITE, opts.backend)
        dyn.label(self.Label.SUITE, "eden")
        dyn.label(self.Label.SUB_SUITE, item.path.stem)
        dyn.story(item.scenario)
        dyn.tag(item.profile or NO_PROFILE, opts.backend)
        self.parameter("profile", item.profile or NO_PROFILE)
        self.parameter("backend", opts.backend)

    def scenario(self, loaded: LoadedScenario, result: RunResult, profile: str | None) -> None:
        from eden.reports.model import features_of

        dyn = self.allure.dynamic
        sc, summary = loaded.scenario, result.summary
        if sc.description:
            dyn.description(sc.description)
        self.parameter("seed", summary.get("seed"))
        for name, version in summary.get("images", {}).items():
            self.parameter(f"image {name}", version)
        self.parameter("devices", summary.get("devices", 0))
        dyn.feature(*features_of(sc))
        if sc.device_count > 1:
            dyn.tag("fleet")
        broken = result.verdict == "error"
        for step in summary.get("steps", []):
            self._step(step, broken)
        final = [e for e in summary.get("expectations", []) if str(e.get("where", "")).startswith("expect")]
        if final:
            self._expectations(final)
        attach = self.allure.attach
        end = summary.get("simulated_seconds")
        for exp in summary.get("expectations", []):
            if exp.get("status") == "failed":
                attach(slice_text(result.out_dir, exp, end), name=f"timeline around '{exp.get('name')}'", attachment_type=self.Attachment.TEXT)
        if broken:
            attach(tail_text(result.out_dir, end), name="timeline: end of the run", attachment_type=self.Attachment.TEXT)
        if "metrics" in summary:
            attach(json.dumps(summary["metrics"], indent=2, sort_keys=True), name="metrics.json", attachment_type=self.Attachment.JSON)
        attach(json.dumps(summary, indent=2, sort_keys=True, default=str), name="summary.json", attachment_type=self.Attachment.JSON)
        attach(loaded.path.read_text(encoding="utf-8"), name=f"scenario {loaded.path.name}", attachment_type=self.Attachment.YAML)

    def _step(self, step: dict[str, Any], broken: bool) -> None:
        detail = step.get("detail") or {}
        name = str(step.get("name") or step.get("action"))
        expectation = detail.get("expectation")
        title = f"{name}: {expectation}" if expectation and expectation != name else name
        params = {"devices": str(step.get("devices", 0))}
        start, stop = step.get("start"), step.get("stop")
        if start is not None:
            params["run clock"] = f"{float(start):g}s → {float(stop if stop is not None else start):g}s"
        status = str(step.get("status"))
        why = detail.get("why") or status
        if detail.get("observed") is not None:
            why += f"; observed {_fmt(detail['observed'])}"
        if status == "interrupted":  # a harness fault breaks the step; the run's duration fails it
            status = "broken" if broken else "failed"
        _replay(title, params, status, why)

    def _expectations(self, final: list[dict[str, Any]]) -> None:
        from allure_commons._allure import StepContext

        statuses = {str(e.get("status")) for e in final}
        status = "failed" if "failed" in statuses else ("skipped" if statuses == {"skipped"} else "passed")

        class Parent(StepContext):  # the children are reported inside the parent step
            def __enter__(self) -> None:
                super().__enter__()
                for exp in final:
                    params = {"where": f"{exp.get('where')} (line {exp.get('line')})", "observed": _fmt(exp.get("observed"))}
                    why = (exp.get("detail") or {}).get("why") or "not met"
                    _replay(f"expect: {exp.get('name')}", params, str(exp.get("status")), f"{why}; observed {_fmt(exp.get('observed'))}")

        _step_with_status(lambda: Parent("expectations", {}), status, "an expectation failed" if status == "failed" else "not evaluated")


def allure_parameter(config: pytest.Config, name: str, value: object) -> None:
    """Set a parameter of the current Allure test result to ``str(value)``, as eden qualify writes
    them (``allure.dynamic.parameter`` would show the repr: ``'sim'``)."""
    from allure_commons.model2 import Parameter

    listener = config.pluginmanager.get_plugin("allure_listener")
    test = listener.allure_logger.get_test(None) if listener is not None else None
    if test is None:
        return
    for param in test.parameters:
        if param.name == name:
            param.value = str(value)
            return
    test.parameters.append(Parameter(name=name, value=str(value)))


def _replay(title: str, params: dict[str, str], status: str, why: str) -> None:
    """One finished step as an Allure step with ``status`` (passed/failed/broken/skipped)."""
    from allure_commons._allure import StepContext

    _step_with_status(lambda: StepContext(title, params), status, why)


def _step_with_status(step: Callable[[], AbstractContextManager[object]], status: str, why: str) -> None:
    """Enter and leave an Allure step context, raising inside it what gives it ``status``
    (allure: AssertionError = failed, another exception = broken, a pytest skip = skipped)."""
    marker: BaseException | None = None
    if status == "failed":
        marker = AssertionError(why)
    elif status == "broken":
        marker = RuntimeError(why)
    elif status in ("skipped", "pending"):
        marker = pytest.skip.Exception(why)
    try:
        with step():
            if marker is not None:
                raise marker
    except BaseException as exc:
        if exc is not marker:
            raise



def _fmt(value: object) -> str:
    """An observed value on one line (as eden.reports.markdown.fmt_value renders it)."""
    try:
        from eden.reports.markdown import fmt_value
    except ImportError:
        return json.dumps(value, sort_keys=True, default=str)
    return fmt_value(value)


def allure_fleet_step(title: str, params: StepParams, error: BaseException | None) -> None:
    """One Fleet driver call as an Allure step (failed on an AssertionError, else broken)."""
    from allure_commons._allure import StepContext

    shown = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str) for k, v in params.items()}
    status = "passed" if error is None else ("failed" if isinstance(error, AssertionError) else "broken")
    _step_with_status(lambda: StepContext(title, shown), status, str(error) if isinstance(error, AssertionError) else f"{type(error).__name__}: {error}")



def slice_text(run_dir: Path, exp: dict[str, Any], end: float | None) -> str:
    """The timeline around a failed expectation (eden.reports.timeline_slice when present)."""
    try:
        from eden.reports.timeline_slice import timeline_slice
    except ImportError:
        return _own_slice(run_dir, exp, end)
    return timeline_slice(run_dir, exp, end=end)


def tail_text(run_dir: Path, end: float | None) -> str:
    """The last events before the end of a broken run."""
    try:
        from eden.reports.timeline_slice import tail_slice
    except ImportError:
        return _own_slice(run_dir, {"name": "end of the run"}, end)
    return tail_slice(run_dir, end)


def _own_slice(run_dir: Path, exp: dict[str, Any], end: float | None, window: float = 120.0) -> str:
    t1 = next((float(exp[k]) for k in ("met_at", "deadline") if exp.get(k) is not None), float(end or 0.0))
    failing = set((exp.get("detail") or {}).get("failing") or {}) or None
    events = run_dir / "events.jsonl"
    lines = [f"expectation: {exp.get('name')}; window {max(0.0, t1 - window):g}s .. {t1:g}s"]
    if events.is_file():
        for line in events.read_text(encoding="utf-8").splitlines():
            e = json.loads(line)
            if t1 - window <= e["t"] <= t1 and (failing is None or e.get("device") in failing or e.get("device") is None):
                lines.append(line)
    return "\n".join(lines[-300:]) + "\n"


# ------------------------------------------------------------------------------------- fixture --


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "eden_profile" in metafunc.fixturenames:
        profiles = options(metafunc.config).profiles
        if profiles:
            metafunc.parametrize("eden_profile", profiles, indirect=True, ids=profiles)


@pytest.fixture
def eden_profile(request: pytest.FixtureRequest) -> str | None:
    """The ``--eden-profile`` this test runs on (tests using it are parametrized over the option)."""
    return getattr(request, "param", None)


@pytest.fixture
def eden_fleet(request: pytest.FixtureRequest, eden_profile: str | None, tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """Factory of running fleets: ``eden_fleet("scenarios/onboarding-smoke.yaml")`` or
    ``eden_fleet(profile="nuc-class", count=3, images={...}, config_items={...})``.

    Honours --eden-backend, --eden-profile (replaces every fleet entry's profile) and --eden-seed.
    Every fleet is closed at teardown."""
    opts = options(request.config)
    made: list[Fleet] = []

    def make(scenario: str | Path | None = None, /, **spec: Any) -> Fleet:
        seed = opts.seed if opts.seed is not None else spec.pop("seed", None)
        spec.pop("seed", None)
        workdir = tmp_path / f"fleet-{len(made)}"
        if scenario is not None:
            if spec:
                raise TypeError(f"eden_fleet(scenario) takes no fleet spec; got {', '.join(spec)}")
            fleet = Fleet.from_file(_resolve(request, scenario), backend=opts.backend, seed=seed, profile=eden_profile, workdir=workdir)
        else:
            if eden_profile is not None:
                spec["profile"] = eden_profile
            fleet = Fleet.from_spec(**spec, backend=opts.backend, seed=seed, workdir=workdir)
        made.append(fleet)
        props = [("profile", eden_profile or ", ".join(sorted(fleet.loaded.profiles))), ("backend", opts.backend), ("seed", fleet.seed)]
        images = [(f"image.{k}", v) for k, v in fleet.versions.items()]
        request.node.user_properties.extend(p for p in props + images if p not in request.node.user_properties)
        if request.config.pluginmanager.get_plugin("allure_listener") is not None:
            for key, value in props + [(f"image {k}", v) for k, v in fleet.versions.items()]:
                allure_parameter(request.config, key, value)
            fleet.on_step = allure_fleet_step
        return fleet

    yield make
    for fleet in made:
        fleet.close()


def _resolve(request: pytest.FixtureRequest, scenario: str | Path) -> Path:
    """A scenario path as given, else relative to the rootdir, else to the test file."""
    path = Path(scenario)
    for candidate in (path, request.config.rootpath / path, request.path.parent / path):
        if candidate.is_file():
            return candidate
    return path
