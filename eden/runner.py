"""Run a scenario's steps, faults, rollouts and expectations on any backend.

Everything here is a generator that yields :class:`~eden.backends.base.Sleep` or
:class:`~eden.backends.base.Spawn` to its driver, so the same code runs in simulated time (SimPy)
and in real time (asyncio). The runner never touches a device directly: it asks the backend to
``apply`` an action and reads the controller's device views back.

Semantics, in short:

* Steps run in order. ``wait`` lets time pass; an inline ``expect`` blocks until its condition holds
  (or fails the run at its ``within`` deadline, skipping the remaining steps). Steps with a duration
  (``network_flap``, ``controller_outage`` / ``controller_503`` / ``controller_hang`` with ``duration``) block for it.
* Faults run concurrently from the start: ``at`` fires once at that time, ``when`` fires per device
  the first time the device satisfies the condition, ``after`` later.
* Top-level expectations are watched once the steps are done; ``within`` counts from there.
  ``always`` expectations are checked from the start to the end of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Literal, NotRequired, TypedDict

from eden.backends.base import Backend, RunGen, Sleep, Spawn
from eden.backends.ports import DeviceView
from eden.conditions import (CheckOutcome, DeviceMatcher, DeviceWatch, FromPoint, Matcher, describe_expectation, metric_outcome,
                             rollout_outcome)
from eden.metrics import compute_metric
from eden.scenario.load import LoadedScenario
from eden.scenario.model import (
    CONTROLLER_FAULTS,
    CONTROLLER_PERIODS,
    BaseOsUpdateArgs,
    Expectation,
    FaultBase,
    NetworkFlapArgs,
    OutageArgs,
    RolloutArgs,
    StepBase,
    Target,
)
from eden.targets import rollout_waves, select
from eden.verdicts import RunVerdict


StepStatus = Literal["pending", "passed", "failed", "skipped", "interrupted"]
"""``interrupted``: the step had started when the run was aborted; ``skipped``: it never started."""
ExpectationStatus = Literal["pending", "passed", "failed", "skipped"]
RolloutPhase = Literal["running", "paused", "stopped", "completed"]
Outcome = Generator[Sleep | Spawn, None, bool]
"""A runner activity that ends passed (True) or failed (False): a step, an inline ``expect``."""


class StepDetail(TypedDict, total=False):
    """What a step's record says beyond its status (``summary.json``)."""

    why: str
    expectation: str
    observed: object
    state: RolloutPhase
    waves: int


class WaveRecord(TypedDict):
    """One wave of a rollout (``summary.json``'s ``rollouts[].waves``)."""

    wave: int
    devices: int
    start: float
    stop: NotRequired[float]
    succeeded: NotRequired[int]
    failed: NotRequired[int]
    timed_out: NotRequired[int]
    outcome: NotRequired[str]


@dataclass
class StepRecord:
    index: int
    action: str
    name: str
    devices: int
    start: float | None = None
    stop: float | None = None
    status: StepStatus = "pending"
    detail: StepDetail = field(default_factory=StepDetail)


@dataclass
class ExpectationResult:
    name: str
    where: str  # "expect[3]" or "steps[5]"
    line: int
    status: ExpectationStatus = "pending"
    observed: Any = None
    detail: dict[str, Any] = field(default_factory=dict)
    met_at: float | None = None
    deadline: float | None = None


@dataclass
class RolloutState:
    image: str
    version: str
    devices: int
    state: RolloutPhase = "running"
    waves: list[WaveRecord] = field(default_factory=list)
    resume: bool = False


def default_check_interval(device_count: int) -> float:
    if device_count <= 10:
        return 1.0
    if device_count <= 1000:
        return 10.0
    return 60.0


class Runner:
    def __init__(self, loaded: LoadedScenario, backend: Backend, *, seed: int, check_interval: float | None = None) -> None:
        self.loaded = loaded
        self.sc = loaded.scenario
        self.backend = backend
        self.seed = seed
        self.check = check_interval or self.sc.check_interval or default_check_interval(len(loaded.devices))
        self.versions = {name: img.version for name, img in self.sc.images.items()}
        self.steps: list[StepRecord] = []
        self.expectations: list[ExpectationResult] = []
        self.rollouts: list[RolloutState] = []
        self.steps_done_at: float | None = None
        self.finished = False
        self._always: list[tuple[Expectation, ExpectationResult, Callable[[], CheckOutcome]]] = []
        self._at_end: list[tuple[Expectation, ExpectationResult, Callable[[], CheckOutcome]]] = []

    # ------------------------------------------------------------------------------ helpers --
    def now(self) -> float:
        return self.backend.now()

    def _select(self, target: Target, label: str) -> list[str]:
        return select(target, self.loaded.devices, seed=self.seed, label=label, steps=self.sc.steps)

    def _line(self, *path: str | int) -> int:
        return self.loaded.located.value_pos(tuple(path))[0]

    def _checker(self, exp: Expectation, label: str) -> Callable[[], CheckOutcome]:
        """A callable returning the expectation's current :class:`CheckOutcome`."""
        return expectation_checker(
            exp,
            self.backend,
            self.versions,
            self._select(exp.target, label),
            runner=self,
            rollout_state=lambda: self.rollouts[-1].state if self.rollouts else None,
        )

    # --------------------------------------------------------------------------------- main --
    def main(self) -> RunGen:
        faults: list[FaultBase] = self.sc.faults
        steps: list[StepBase] = self.sc.steps
        for n, fault in enumerate(faults):
            yield Spawn(self._fault(n, fault), f"fault {n}")
        for n, exp in enumerate(self.sc.expect):
            if exp.always:
                res = ExpectationResult(exp.name or describe_expectation(exp), f"expect[{n}]", self._line("expect", n))
                self.expectations.append(res)
                self._always.append((exp, res, self._checker(exp, f"expect[{n}]")))
        if self._always:
            yield Spawn(self._watch_always(), "always")
        for n, step in enumerate(steps):
            self.steps.append(StepRecord(n, step.action, step.name or step.action, 0))
        failed = False
        for n, step in enumerate(steps):
            rec = self.steps[n]
            if failed:
                rec.status = "skipped"
                continue
            rec.start = self.now()
            self.backend.record("step_start", {"index": n, "action": step.action, "name": rec.name})
            ok = yield from self._step(n, step, rec)
            rec.stop = self.now()
            rec.status = "passed" if ok else "failed"
            self.backend.record("step_stop", {"index": n, "action": step.action, "status": rec.status})
            failed = not ok
        self.steps_done_at = self.now()
        yield from self._final_expectations(skip=failed)
        if self.sc.duration is not None and self.now() < self.sc.duration:
            yield Sleep(self.sc.duration - self.now())
        self.finish()

    def abort(self, reason: str) -> None:
        """The harness or backend broke: nothing still open is judged (no product verdict)."""
        if self.finished:
            return
        self.finished = True
        for rec in self.steps:
            if rec.status == "pending":
                rec.status = "interrupted" if rec.start is not None else "skipped"
                rec.detail["why"] = reason
        for _exp, res, _c in self._at_end + self._always:
            if res.status == "pending":
                res.status = "skipped"
                res.detail["why"] = f"not judged: {reason}"
        for res in self.expectations:
            if res.status == "pending":
                res.status = "skipped"
                res.detail["why"] = f"not judged: {reason}"

    def finish(self) -> None:
        """Close the run: pending checks are decided now (called at the end or when time runs out)."""
        if self.finished:
            return
        self.finished = True
        for rec in self.steps:
            if rec.status == "pending" and rec.start is not None:
                rec.status = "interrupted"
                rec.stop = self.now()
                rec.detail["why"] = "the run's duration ended before this step finished"
            elif rec.status == "pending":
                rec.status = "skipped"
        if self.steps_done_at is None:
            # The run's duration ended during the steps: the top-level expectations were never
            # watched. They fail, so an unfinished scenario can never pass.
            for n, exp in enumerate(self.sc.expect):
                if exp.always:
                    continue
                res = ExpectationResult(exp.name or describe_expectation(exp), f"expect[{n}]", self._line("expect", n))
                res.status = "failed"
                res.detail["why"] = "not evaluated: the run's duration ended before the steps finished"
                self.expectations.append(res)
        for exp, res, checker in self._always:
            if res.status == "pending" and not self._started(exp):
                res.status = "skipped"
                res.detail["why"] = f"not judged: steps[{self._after_index(exp)}], which it starts after, never passed"
        for exp, res, checker in self._at_end + self._always:
            if res.status == "pending":
                verdict = checker()
                res.observed = verdict.observed
                res.detail = verdict.detail
                res.status = "passed" if verdict.ok else "failed"
                if verdict.ok:
                    res.met_at = self.now()
                else:
                    res.detail.setdefault("why", "not met at the end of the run")
        for res in self.expectations:
            if res.status == "pending":
                res.status = "failed"
                res.detail.setdefault("why", "not met before the end of the run")

    # -------------------------------------------------------------------------------- steps --
    def _step(self, n: int, step: StepBase, rec: StepRecord) -> Outcome:
        action, args = step.action, step.args
        label = f"steps[{n}]"
        if action == "wait":
            yield Sleep(float(args))
            return True
        if action == "expect":
            res = ExpectationResult(args.name or describe_expectation(args), label, self._line("steps", n))
            self.expectations.append(res)
            ok = yield from self._await(args, res, self._checker(args, label), start=self.now())
            rec.detail = {"expectation": res.name, "observed": res.observed}
            return ok
        if action == "rollout":
            devices = self._select(step.target, label)
            rec.devices = len(devices)
            state = RolloutState(args.image, self.versions[args.image], len(devices))
            self.rollouts.append(state)
            yield Spawn(self._rollout(args, devices, state, label), "rollout")
            if args.wait:
                # Block until the rollout completes, stops or pauses: a paused rollout hands the
                # step list back, so a later `resume_rollout` step can continue it.
                while state.state == "running" and not self.finished:
                    yield Sleep(self.check)
                rec.detail = {"state": state.state, "waves": len(state.waves)}
            return True
        if action == "resume_rollout":
            for state in reversed(self.rollouts):
                if state.state == "paused":
                    state.resume = True
                    break
            return True
        devices = [] if action in CONTROLLER_FAULTS else self._select(step.target, label)
        rec.devices = len(devices)
        yield from self._act(action, devices, args, blocking=True)
        return True

    def _act(self, action: str, devices: list[str], args: object, *, blocking: bool) -> RunGen:
        """One device/controller action; flaps and timed outages are sequences of actions."""
        if action == "network_flap":
            assert isinstance(args, NetworkFlapArgs)
            yield from flap(self.backend, devices, args)
            return
        self.backend.apply(action, devices, args)
        if action in CONTROLLER_PERIODS and isinstance(args, OutageArgs) and args.duration is not None:
            restore = restore_after(self.backend, args.duration)
            if blocking:
                yield from restore
            else:
                yield Spawn(restore, "controller restore")

    # ------------------------------------------------------------------------------- faults --
    def _fault(self, n: int, fault: FaultBase) -> RunGen:
        label = f"faults[{n}]"
        action, args = fault.action, fault.args
        devices = [] if action in CONTROLLER_FAULTS else self._select(fault.target, label)
        if fault.at is not None:
            yield Sleep(fault.at + fault.after)
            self.backend.record("fault", {"index": n, "action": action, "devices": len(devices)})
            yield from self._act(action, devices, args, blocking=False)
            return
        when = fault.when
        assert when is not None  # a fault has exactly one trigger (the model checks it)
        if not devices:
            # A controller fault with `when`: fire once, when the first device meets the condition.
            watch = DeviceWatch(DeviceMatcher(when, self.versions), [d.id for d in self.loaded.devices])
            while not self.finished:
                watch.update(self.backend)
                if watch.good:
                    yield Spawn(self._delayed(n, action, [], args, fault.after), f"fault {n}")
                    return
                yield Sleep(self.check)
            return
        watch = DeviceWatch(DeviceMatcher(when, self.versions), devices)
        fired: set[str] = set()
        while len(fired) < len(devices) and not self.finished:
            watch.update(self.backend)
            for dev in watch.satisfied():
                if dev not in fired:
                    fired.add(dev)
                    yield Spawn(self._delayed(n, action, [dev], args, fault.after), f"fault {n} {dev}")
            yield Sleep(self.check)

    def _delayed(self, n: int, action: str, devices: list[str], args: object, after: float) -> RunGen:
        if after > 0:
            yield Sleep(after)
        self.backend.record("fault", {"index": n, "action": action, "devices": devices}, device=devices[0] if devices else None)
        yield from self._act(action, devices, args, blocking=False)

    # ------------------------------------------------------------------------- expectations --
    def _within(self, exp: Expectation) -> float:
        """``exp.within`` as this backend counts it (stretched under TCG: :attr:`Backend.deadline_scale`)."""
        assert exp.within is not None
        return exp.within * self.backend.deadline_scale

    def _not_met(self, exp: Expectation) -> str:
        assert exp.within is not None
        scale = self.backend.deadline_scale
        if scale == 1.0:
            return f"not met within {exp.within:g}s"
        return f"not met within {self._within(exp):g}s ({exp.within:g}s x {scale:g} on {self.backend.name} under TCG)"

    def _await(self, exp: Expectation, res: ExpectationResult, checker: Callable[[], CheckOutcome], *, start: float) -> Outcome:
        deadline = None if exp.within is None else start + self._within(exp)
        res.deadline = deadline
        while True:
            verdict = checker()
            res.observed, res.detail = verdict.observed, verdict.detail
            if verdict.ok:
                res.status, res.met_at = "passed", self.now()
                return True
            if deadline is None or self.now() >= deadline:
                res.status = "failed"
                res.detail["why"] = "not met" if deadline is None else self._not_met(exp)
                return False
            yield Sleep(min(self.check, max(deadline - self.now(), 1e-6)))

    def _final_expectations(self, *, skip: bool) -> RunGen:
        """Watch the top-level expectations. One with ``within`` is met as soon as it holds (or
        fails at its deadline, counted from the end of the steps); one without is checked once,
        when the run ends (after ``duration`` for fleet experiments)."""
        pending = []
        start = self.now()
        for n, exp in enumerate(self.sc.expect):
            if exp.always:
                continue
            res = ExpectationResult(exp.name or describe_expectation(exp), f"expect[{n}]", self._line("expect", n))
            self.expectations.append(res)
            if skip:
                res.status = "skipped"
                res.detail["why"] = "not evaluated: an earlier step failed"
                continue
            checker = self._checker(exp, f"expect[{n}]")
            if exp.within is None:
                self._at_end.append((exp, res, checker))
                continue
            res.deadline = deadline = start + self._within(exp)
            pending.append((exp, res, checker, deadline))
        while pending:
            still = []
            for exp, res, checker, deadline in pending:
                verdict = checker()
                res.observed, res.detail = verdict.observed, verdict.detail
                if verdict.ok:
                    res.status, res.met_at = "passed", self.now()
                elif self.now() >= deadline:
                    res.status = "failed"
                    res.detail["why"] = self._not_met(exp)
                else:
                    still.append((exp, res, checker, deadline))
            pending = still
            if pending:
                nxt = min(d for _e, _r, _c, d in pending)
                yield Sleep(min(self.check, max(nxt - self.now(), 1e-6)))

    def _after_index(self, exp: Expectation) -> int | None:
        """The step an ``after:`` invariant starts at (the loader checked the reference)."""
        if exp.after is None:
            return None
        if isinstance(exp.after, int):
            return exp.after
        return next(i for i, st in enumerate(self.sc.steps) if st.name == exp.after)

    def _started(self, exp: Expectation) -> bool:
        """Whether an ``always`` invariant is being judged yet: from t = 0, or once its ``after``
        step has passed (its end is the start of the window)."""
        n = self._after_index(exp)
        return n is None or (n < len(self.steps) and self.steps[n].status == "passed")

    def _watch_always(self) -> RunGen:
        while not self.finished:
            for exp, res, checker in self._always:
                if res.status != "pending" or not self._started(exp):
                    continue
                verdict = checker()
                if not verdict.ok:
                    res.status, res.observed, res.detail = "failed", verdict.observed, verdict.detail
                    res.detail["why"] = f"violated at t={self.now():.1f}s"
                    res.met_at = self.now()
            yield Sleep(self.check)

    # ------------------------------------------------------------------------------ rollout --
    def _rollout(self, args: RolloutArgs, devices: list[str], state: RolloutState, label: str) -> RunGen:
        """Waves with success/error thresholds, as fleet update managers run them."""
        waves = rollout_waves(devices, [(w.fraction, w.count) for w in args.waves], seed=self.seed, label=label)
        version = self.versions[args.image]
        update = BaseOsUpdateArgs(image=args.image, activate=args.activate)
        for w, wave in enumerate(waves):
            if not wave:
                continue
            record: WaveRecord = {"wave": w, "devices": len(wave), "start": self.now()}
            state.waves.append(record)
            self.backend.record("rollout_wave", {"wave": w, "devices": len(wave), "image": args.image})
            self.backend.apply("baseos_update", wave, update)
            ok_watch = DeviceWatch(_Fn(lambda v: _updated(v, version)), wave)
            bad_watch = DeviceWatch(_Fn(lambda v: _failed(v, version)), wave)
            while True:
                ok_watch.update(self.backend)
                bad_watch.update(self.backend)
                good, bad = len(ok_watch.satisfied()), len(bad_watch.satisfied())
                if good + bad >= len(wave) or self.now() - record["start"] >= args.wave_timeout:
                    break
                if bad / len(wave) > args.error_threshold:
                    break  # emergency stop: no need to wait for the rest of the wave
                yield Sleep(self.check)
            timed_out = len(wave) - good - bad
            record["stop"] = self.now()
            record["succeeded"] = good
            record["failed"] = bad
            record["timed_out"] = timed_out
            error_rate = (bad + timed_out) / len(wave)
            if error_rate > args.error_threshold or good / len(wave) < args.success_threshold:
                record["outcome"] = "error threshold exceeded" if error_rate > args.error_threshold else "success threshold not reached"
                self.backend.record("rollout_halt", {"wave": w, "action": args.on_error, "error_rate": error_rate})
                if args.on_error == "stop":
                    state.state = "stopped"
                    return
                state.state = "paused"
                while not state.resume and not self.finished:
                    yield Sleep(self.check)
                state.resume = False
                state.state = "running"
            else:
                record["outcome"] = "passed"
            if args.soak > 0 and any(waves[w + 1:]):
                yield Sleep(args.soak)
        state.state = "completed"
        self.backend.record("rollout_done", {"image": args.image, "waves": len(state.waves)})


def flap(backend: Backend, devices: list[str], args: NetworkFlapArgs) -> RunGen:
    """``network_flap``: down for ``args.down``, up for ``args.up``, ``args.cycles`` times."""
    for _ in range(args.cycles):
        backend.apply("network_down", devices, args)
        yield Sleep(args.down)
        backend.apply("network_up", devices, args)
        yield Sleep(args.up)


def restore_after(backend: Backend, seconds: float) -> RunGen:
    """End a controller outage (or 503 period) ``seconds`` from now."""
    yield Sleep(seconds)
    backend.apply("controller_restore", [], None)


def expectation_checker(
    exp: Expectation,
    backend: Backend,
    versions: dict[str, str],
    devices: list[str],
    *,
    runner: Runner | None = None,
    rollout_state: Callable[[], str | None] = lambda: None,
) -> Callable[[], CheckOutcome]:
    """A callable judging ``exp`` now: a metric, a rollout state, or a device condition over
    ``devices`` (re-evaluating only the views that changed since the last call)."""
    if exp.metric is not None:
        name = exp.metric.name
        return lambda: metric_outcome(exp, compute_metric(name, backend, runner))
    if exp.rollout is not None:
        return lambda: rollout_outcome(exp, rollout_state())
    inner = DeviceMatcher(exp, versions)
    matcher: Matcher = inner if exp.from_ is None else FromPoint(DeviceMatcher(exp.from_, versions), inner)
    watch = DeviceWatch(matcher, devices)

    def check() -> CheckOutcome:
        watch.update(backend)
        return watch.outcome(exp.at_least, backend.views())

    return check


class _Fn:
    """Adapts a plain predicate to the matcher interface DeviceWatch expects."""

    def __init__(self, fn: Callable[[DeviceView], bool]) -> None:
        self.fn = fn

    def __call__(self, view: DeviceView) -> bool:
        return bool(self.fn(view))

    def describe(self, view: DeviceView) -> dict[str, object]:
        return {}


def _updated(view: DeviceView, version: str) -> bool:
    sw = view.get("sw") or []
    bos = view.get("baseos")
    return bool(sw) and sw[0].get("version") == version and bos is not None and bos.get("status") == "UPDATED"


def _failed(view: DeviceView, version: str) -> bool:
    """The update to ``version`` failed on this device: it says FAILED, or it is back on another
    version with ``version`` left inprogress in the other partition. An image that died before its
    nodeagent ran reports no FAILED status (spec §3), and a rollout must still halt on it."""
    if view.get("bricked"):
        return True
    bos = view.get("baseos")
    if bos is not None and bos.get("version") == version and bos.get("status") == "FAILED":
        return True
    sw = view.get("sw") or []
    return (
        len(sw) > 1
        and sw[0].get("version") != version
        and sw[1].get("version") == version
        and sw[1].get("state") == "inprogress"
    )


def run_verdict(runner: Runner) -> RunVerdict:
    """passed when every expectation passed; failed when one failed (a product failure) or the
    steps could not finish (a failed inline expect, or the run's duration ended first)."""
    if any(r.status == "failed" for r in runner.expectations):
        return "failed"
    if any(s.status in ("failed", "interrupted") for s in runner.steps):
        return "failed"
    return "passed"
