"""The one small protocol every backend implements, and the clock-neutral run primitives.

The step runner (:mod:`eden.runner`) is written once as generators that *yield* what they want
from the clock: :class:`Sleep` (let time pass) or :class:`Spawn` (start a concurrent activity,
e.g. a fault or a rollout). The simulator backend turns those into SimPy timeouts and processes;
a real-time backend turns them into ``asyncio.sleep`` and tasks. No scenario rule is written twice.

A backend is a clock plus two ports (:mod:`eden.backends.ports`); the scenario actions reach the
ports through one table (:mod:`eden.backends.actions`), and the registry
(:mod:`eden.backends.registry`) reads from the ports' capabilities what each backend performs, so
a step it cannot perform is refused when the scenario is validated, before anything starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator, Mapping, NotRequired, Protocol, TypedDict, TypeVar

from eden.backends.observe import ControllerSeries, DeviceSeriesDoc

if TYPE_CHECKING:
    from eden.backends.ports import ControllerPort, ControllerStats, DevicePort, DeviceView
    from eden.scenario.load import LoadedScenario
    from eden.timeline import Timeline


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Spawn:
    gen: "RunGen"
    name: str = ""


RunGen = Generator[Sleep | Spawn, None, None]
"""A runner activity: it yields what it wants from the clock until it ends."""


class RealTimeTimings(TypedDict):
    """Measured wall times of a real-time backend's run (``run.json``'s ``device_timings``)."""

    image_ready_s: float
    accel: str
    eve_image: NotRequired[str]
    eve_devices: NotRequired[list[str]]
    devices: dict[str, dict[str, list[float]]]
    """Per device: per timing (e.g. ``power_on_to_onboarded``), the seconds measured."""


class BackendStats(TypedDict, total=False):
    """Counters of a run's own machinery (for ``run.json``); each backend gives those it has."""

    node_events: int
    bulk_requests: int
    simpy_now: float
    agent_boots: int
    timings: RealTimeTimings
    places: dict[str, str]
    """The board backend: device id -> the lab place it ran on."""


class BackendSeries(DeviceSeriesDoc):
    """A backend's time series for reports: the device series, the controller's load (the
    simulator), the rollback instants."""

    controller: NotRequired[ControllerSeries]
    rollbacks: list[float]


T = TypeVar("T")


class Session(Protocol):
    """A backend driven step by step from Python (:class:`eden.fleet.Fleet`): time passes only in
    :meth:`run_until`; every other call into the backend goes through :meth:`call`, which runs it
    where the backend's own code runs (the simulator: right here; a real-time backend: its loop)."""

    def now(self) -> float: ...

    def run_until(self, t: float) -> None:
        """Let the backend's clock reach ``t``; raise what broke meanwhile."""
        ...

    def spawn(self, gen: RunGen) -> None:
        """Start a runner activity (a flap, a timed outage) in the background."""
        ...

    def call(self, fn: Callable[[], T]) -> T: ...

    def close(self) -> None:
        """Stop what the backend started and remove its working files."""
        ...


class Backend(Protocol):
    """What the runner, the metrics, ``eden run`` and :class:`eden.fleet.Fleet` use of a backend."""

    @property
    def name(self) -> str: ...

    @property
    def loaded(self) -> LoadedScenario: ...

    @property
    def timeline(self) -> Timeline: ...

    @property
    def controller_port(self) -> ControllerPort: ...

    @property
    def device_port(self) -> DevicePort: ...

    def now(self) -> float:
        """Seconds since the run started, on this backend's clock (simulated or real)."""
        ...

    @property
    def deadline_scale(self) -> float:
        """The factor the runner applies to ``within`` deadlines: 1, except on a backend that knows
        its devices run slower than the hardware the scenario describes (QEMU under TCG,
        :func:`eden.qemu.hostcheck.tcg_deadline_scale`). Read once the run has started."""
        ...

    def run(self, main: RunGen, *, duration: float | None, progress: Callable[[float], None] | None = None) -> None:
        """Drive ``main`` (the runner) on this backend's clock until it ends or ``duration`` passes."""
        ...

    def apply(self, action: str, devices: list[str], args: object) -> None:
        """Carry out one device or controller action now (:func:`eden.backends.actions.perform`)."""
        ...

    def views(self) -> Mapping[str, DeviceView]:
        """The device views (see :mod:`eden.conditions`), keyed by device id."""
        ...

    def changes(self, since: int) -> tuple[int, list[str] | None]:
        """Devices whose view changed after sequence ``since``: (new sequence, ids or None = all)."""
        ...

    def controller_stats(self) -> ControllerStats:
        """Request counts and latency percentiles per request kind, plus ``all``."""
        ...

    def record(self, what: str, data: dict[str, Any], device: str | None = None) -> None:
        """Add a harness event to the run's timeline."""
        ...

    def stats(self) -> BackendStats:
        """Counters of the run's own machinery for run.json (events handled, boots, timings)."""
        ...

    def series(self) -> BackendSeries:
        """Time series for reports: device states and versions, controller load, rollbacks."""
        ...

    def session(self) -> Session:
        """Start the fleet for step-by-step driving instead of :meth:`run`."""
        ...


class BackendClass(Protocol):
    """A backend's class as the registry (:mod:`eden.backends.registry`) sees it: its ports' types
    (whose capabilities say what it performs) and its constructor."""

    controller_port_type: type[ControllerPort]
    device_port_type: type[DevicePort]

    def __call__(
        self, loaded: LoadedScenario, *, seed: int, timeline: Timeline | None = None, out_dir: Path | None = None
    ) -> Backend: ...
