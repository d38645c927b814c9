"""The simulator backend: the scenario's fleet as EVE node machines on a SimPy clock.

Random streams are spawned from the seed, one per purpose (boot luck per node, bulk poll jitter,
image variants, power-on stagger, target sampling), so two rollout policies can be compared on
the same fleet luck: changing the rollout does not change which devices have a bad image.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Generator, Mapping, TypeVar, cast

import numpy as np
import simpy

from eden.backends.actions import perform
from eden.backends.base import BackendSeries, BackendStats, RunGen, Session, Sleep, Spawn
from eden.backends.observe import JOURNALED, ChangeJournal, ControllerSeries, DeviceSeries, rollback_times
from eden.backends.ports import ControllerStats, DeviceInfo, DeviceView
from eden.backends.sim_ports import SimControllerPort, SimDevicePort
from eden.runtime import collector
from eden.runtime.clock import SimClock
from eden.device_params import images_for, node_params
from eden.errors import InfrastructureError, InvalidInput
from eden.scenario.load import DeviceSpec, LoadedScenario
from eden.targets import stream
from eden.timeline import Timeline
from simulator.controller import ControllerModel
from simulator.engine import Engine
from eve.node import ImageInfo, Node, NodeParams
from eve.images import approved_measurements
from eve.controller import DEFAULT_METRIC_INTERVAL, connected

T = TypeVar("T")
MAX_SIM_TIME = 30 * 86400.0
INJECT_ENV = "EDEN_INJECT_HARNESS_ERROR"
"""Set to a scenario name (or ``*``) to make the simulator backend fail as a broken harness would."""  # a test without `duration` that runs this long is a harness error


def _bulk_bucket(n: int) -> float:
    if n <= 1000:
        return 1.0
    return 5.0 if n <= 5000 else 10.0


class SimBackend:
    name = "sim"
    controller_port_type = SimControllerPort
    device_port_type = SimDevicePort

    def __init__(
        self, loaded: LoadedScenario, *, seed: int, timeline: Timeline | None = None, out_dir: Path | None = None
    ) -> None:
        """``out_dir`` is unused: everything the simulator produces is in the timeline and series."""
        self.loaded = loaded
        sc = loaded.scenario
        self.seed = seed
        self.timeline = timeline if timeline is not None else Timeline()
        self.env = simpy.Environment()
        self.clock = SimClock(self.env)
        self.ids = [d.id for d in loaded.devices]
        self.index = {d: i for i, d in enumerate(self.ids)}
        cap = sc.controller.capacity
        self.ctrl = ControllerModel(
            workers=cap.workers,
            service_time=cap.service_time,
            queue_limit=cap.queue_limit,
            global_items={k: v for k, v in sc.controller.config_items.items()},
            enforce_attestation=sc.controller.attestation.enforce,
        )
        seeds = np.random.SeedSequence(seed)
        node_seq, bulk_seq, luck_seq = seeds.spawn(3)
        node_seeds = node_seq.spawn(len(loaded.devices))
        luck_seeds = luck_seq.spawn(len(loaded.devices))
        variants = stream(seed, "image-variants")
        self.nodes: list[Node] = []
        self.variant_of: dict[str, dict[str, str]] = {}
        nominal = {name: measurement for name, (_, measurement) in approved_measurements(sc.images).items()}
        for i, dev in enumerate(loaded.devices):
            images = self._images_for(dev, variants)
            params = self._params(dev, images)
            self.nodes.append(
                Node(params, dev.image, np.random.default_rng(node_seeds[i]), np.random.default_rng(luck_seeds[i]))
            )
            self.ctrl.add_device(params.serial, params.firmware, nominal)
        self.ctrl.seal()
        self.engine = Engine(
            self.env,
            self.nodes,
            self.ctrl,
            rng=np.random.default_rng(bulk_seq),
            bucket=_bulk_bucket(len(self.nodes)),
            on_note=self._note,
        )
        self.harness_rng = stream(seed, "harness")
        self.journal: ChangeJournal[int] = ChangeJournal()
        self._touch = self.journal.touch
        self._info_seen = 0
        self.powered = [False] * len(self.nodes)
        n = len(self.nodes)
        self.series_step = 30.0 if n <= 10 else (60.0 if n <= 1000 else 300.0)
        self._sampled_upto = 0
        self._dev_state = ["UNREPORTED"] * n
        self._dev_version: list[str | None] = [None] * n
        self._state_counts: dict[str, int] = {"UNREPORTED": n}
        self._version_counts: dict[str, int] = {}
        self._series = DeviceSeries()
        self.wall_start = time.perf_counter()
        self.controller_port = SimControllerPort(self)
        self.device_port = SimDevicePort(self)

    # ----------------------------------------------------------------------------- building --
    def _images_for(self, dev: DeviceSpec, rng: np.random.Generator) -> dict[str, ImageInfo]:
        out, changed = images_for(self.loaded.scenario.images, dev.profile_name, rng)
        if changed:
            self.variant_of.setdefault(dev.id, {}).update(changed)
        return out

    @staticmethod
    def _params(dev: DeviceSpec, images: dict[str, ImageInfo]) -> NodeParams:
        return node_params(
            device_id=dev.id,
            serial=f"{dev.profile_name}-{dev.id}",
            profile_name=dev.profile_name,
            profile=dev.profile,
            images=images,
        )

    # ------------------------------------------------------------------------------ clock --
    def now(self) -> float:
        return self.clock.now()

    @property
    def deadline_scale(self) -> float:
        return 1.0  # simulated time: the scenario's deadlines as written

    def drive(self, gen: RunGen) -> Generator[simpy.Event, None, None]:
        """Turn the runner's Sleep/Spawn requests into SimPy timeouts and processes."""
        try:
            cmd = next(gen)
            while True:
                if isinstance(cmd, Sleep):
                    yield self.clock.sleep(cmd.seconds)
                elif isinstance(cmd, Spawn):
                    self.env.process(self.drive(cmd.gen))
                cmd = gen.send(None)
        except StopIteration:
            return

    def run(self, main: RunGen, *, duration: float | None, progress: Callable[[float], None] | None = None) -> None:
        proc = self.env.process(self.drive(main))
        self.env.process(self._sample())
        if progress is not None:
            self.env.process(self._progress(progress))
        limit = duration if duration is not None else MAX_SIM_TIME
        inject = os.environ.get(INJECT_ENV, "")
        if inject and inject in ("*", self.loaded.scenario.name):
            # Deliberate harness fault, for testing how reports classify infrastructure errors.
            self.env.run(until=simpy.events.AnyOf(self.env, [proc, self.env.timeout(min(limit, 60.0))]))
            raise InfrastructureError(f"injected harness fault at t={self.now():.0f}s ({INJECT_ENV}={inject})")
        with collector.long_lived():  # the fleet is built: keep it out of the collector's scans
            self.env.run(until=simpy.events.AnyOf(self.env, [proc, self.env.timeout(limit)]))
        if not proc.triggered and duration is None:
            raise InfrastructureError(f"the run did not finish within {MAX_SIM_TIME / 86400:.0f} simulated days")

    def session(self) -> Session:
        return SimSession(self)

    def _sample(self) -> Generator[simpy.Event, None, None]:
        """Record devices per reported state and per running version every ``series_step``."""
        while True:
            self._sample_now()
            yield self.env.timeout(self.series_step)

    def _sample_now(self) -> None:
        journal = self.ctrl.info_journal
        for i in journal[self._sampled_upto :]:
            info = self.ctrl.devices[i].info or {}
            state = info.get("state", "UNREPORTED")
            sw = info.get("sw") or []
            version = (sw[0].get("version") if sw else None) or "?"
            old_state, old_version = self._dev_state[i], self._dev_version[i]
            if state != old_state:
                self._state_counts[old_state] -= 1
                self._state_counts[state] = self._state_counts.get(state, 0) + 1
                self._dev_state[i] = state
            if version != old_version:
                if old_version is not None:
                    self._version_counts[old_version] -= 1
                self._version_counts[version] = self._version_counts.get(version, 0) + 1
                self._dev_version[i] = version
        self._sampled_upto = len(journal)
        t = self.now()
        interval = self.ctrl.global_items.get("timer.metric.interval", DEFAULT_METRIC_INTERVAL)
        online = int(np.count_nonzero(connected(t, self.ctrl.last_seen, interval)))
        self._series.append(t, online, sum(self.powered), self._state_counts, self._version_counts)

    def _controller_series(self) -> ControllerSeries:
        """The controller's per-minute totals, plus per-kind request counts (``logs_requests``)
        padded to the same length."""
        totals = self.ctrl.series.as_lists()
        out: ControllerSeries = {"step": self.ctrl.series.step, **totals}
        n = len(totals["requests"])
        for kind, s in self.ctrl.kind_series.items():
            counts = s.as_lists()["requests"][:n]
            out[f"{kind}_requests"] = counts + [0.0] * (n - len(counts))
        return out

    def series(self) -> BackendSeries:
        """Time series for reports: device states and versions, controller load, rollbacks."""
        if not self._series.t or self._series.t[-1] < self.now():
            self._sample_now()  # close the series at the end of the run
        return {
            **self._series.as_dict(self.series_step),
            "controller": self._controller_series(),
            "rollbacks": rollback_times(self.timeline),
        }

    def _progress(self, report: Callable[[float], None]) -> Generator[simpy.Event, None, None]:
        step = 60.0 if len(self.nodes) > 100 else 5.0
        while True:
            report(self.now())
            yield self.env.timeout(step)

    # ---------------------------------------------------------------------------- actions --
    def record(self, what: str, data: dict[str, Any], device: str | None = None) -> None:
        self.timeline.add(self.now(), "harness", device, what, data)

    def _note(self, t: float, i: int, what: str, data: dict[str, Any]) -> None:
        self.timeline.add(t, "device", self.ids[i], what, data)
        if what == "powered_off":  # the node switched itself off (a graceful power-off, §7)
            self.powered[i] = False
        if what in JOURNALED:
            self._touch(i)

    def apply(self, action: str, devices: list[str], args: object) -> None:
        perform(self, action, devices, args)

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        if delay <= 0:
            fn()
            return
        ev = self.env.timeout(delay)
        ev.callbacks.append(lambda _e: fn())

    def power(self, i: int, on: bool) -> None:
        self.powered[i] = on
        self.engine.call(i, "power_on" if on else "power_off")
        self._touch(i)

    # ---------------------------------------------------------------------------- observe --
    def journal_changes(self, since: int) -> tuple[int, list[str] | None]:
        journal = self.ctrl.info_journal
        for i in journal[self._info_seen :]:
            self._touch(i)
        self._info_seen = len(journal)
        if since < 0:
            return self.journal.seq, None
        return self.journal.seq, [self.ids[i] for i in self.journal.since(since)]

    def changes(self, since: int) -> tuple[int, list[str] | None]:
        return self.controller_port.changes(since)

    def views(self) -> Mapping[str, DeviceView]:
        return self.controller_port.views()

    def view(self, i: int) -> DeviceView:
        dev = self.ctrl.devices[i]
        node = self.nodes[i]
        info = cast(DeviceInfo, dev.info or {})  # the last Node.report() (eve.controller keeps it untyped)
        return {
            **info,
            "id": self.ids[i],
            "reported": dev.info is not None,
            "onboarded": dev.uuid is not None,
            "connected": connected(self.now(), float(self.ctrl.last_seen[i]), self.ctrl.metric_interval(i)),
            "last_seen": float(self.ctrl.last_seen[i]),
            "bricked": node.bricked,
            "powered": self.powered[i],
        }

    def controller_stats(self) -> ControllerStats:
        return self.controller_port.stats()

    # ------------------------------------------------------------------------------ stats --
    def stats(self) -> BackendStats:
        return {
            "node_events": self.engine.events,
            "bulk_requests": self.engine.bulk_requests,
            "simpy_now": self.now(),
        }


class SimSession:
    """Runs the simulator's SimPy environment up to a time; drives background generators."""

    def __init__(self, backend: SimBackend) -> None:
        self.backend = backend
        self.env = backend.env

    def now(self) -> float:
        return float(self.env.now)

    def run_until(self, t: float) -> None:
        if t > self.env.now:
            try:
                self.env.run(until=t)
            except (InfrastructureError, InvalidInput):
                raise
            except Exception as exc:  # a simulator crash is a harness fault, not a product failure
                raise InfrastructureError(f"the simulator failed at t={self.now():.1f}s: {exc!r}") from exc

    def spawn(self, gen: RunGen) -> None:
        self.env.process(self.backend.drive(gen))

    def call(self, fn: Callable[[], T]) -> T:
        return fn()

    def close(self) -> None:
        """Nothing to release: the simulator holds no processes or files."""
