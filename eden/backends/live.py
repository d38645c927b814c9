"""The shared machinery of the real-time backends (``emulated``, ``qemu``).

Both run a real ``eden controller serve`` process (:mod:`eden.runtime.procs`), pre-register the
scenario's devices through its admin API, drive the step runner with asyncio
(:mod:`eden.backends.realtime`, :mod:`eden.runtime`), build the device views from what the controller sees (the decoded
ZInfoMsg) and merge the controller's event stream into the timeline. What differs is the device:
an agent process behind loopback relays (``emulated``) or a QEMU VM booting the reference image
(``qemu``). A subclass provides :meth:`LiveBackend._prepare_devices`, the device-side actions
(:meth:`LiveBackend._apply_device`) and :meth:`LiveBackend._stop_devices`.

Everything started is stopped on success, failure, timeout and Ctrl-C and the run's working
directory is removed; the processes' logs are written into the run's output directory as they
run. A working directory a ``kill -9`` left is removed by the next run (:mod:`eden.runtime.workdir`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, ClassVar, Coroutine, Generic, Mapping, TypeVar, cast

import numpy as np

from eden.backends.actions import perform
from eden.backends.base import BackendSeries, BackendStats, RunGen, Session
from eden.backends.live_ports import AdminControllerPort, LiveDevicePort
from eden.backends.observe import JOURNALED, ChangeJournal, DeviceSeries, rollback_times
from eden.backends.ports import ControllerStats, DeviceInfo, DeviceView
from eden.runtime.procs import Managed, ProcessGroup
from eden.backends.realtime import Driver
from eden.runtime.clock import RunClock
from eden.runtime.deadline import Deadline
from eden.runtime.workdir import WorkDir
from eden.errors import InfrastructureError
from eden.interrupt import Interrupted, StopOnSignal
from eden.scenario.load import DeviceSpec, LoadedScenario
from eden.timeline import Timeline
from eve.images import approved_measurements
from eve.controller import DEFAULT_METRIC_INTERVAL, connected

if TYPE_CHECKING:
    from eden.agent.spec import AgentSpec
    from eden.controller.admin_types import EndpointSummary
    from eden.controller.client import AdminClient

_RESERVED = frozenset({"t", "source", "device", "what"})  # timeline keys a payload may not shadow
POLL = 0.5  # seconds between reads of the controller's device views
START_TIMEOUT = 60.0
MAX_REAL_TIME = 6 * 3600.0


def eden_command(*args: str) -> list[str]:
    """The argv that runs ``python -m eden ARGS`` with this interpreter (controller, agents, tamper)."""
    return [sys.executable, "-m", "eden", *args]


class LiveDevice:
    """What the shared code knows of a device; subclasses add their hardware."""

    def __init__(self, spec: DeviceSpec, serial: str, home: Path) -> None:
        self.spec = spec
        self.id = spec.id
        self.serial = serial
        self.home = home
        self.powered = False
        self.bricked = False
        self.boots = 0


D = TypeVar("D", bound="LiveDevice")


class LiveBackend(Generic[D]):
    name = "live"
    controller_port_type: ClassVar[type[AdminControllerPort]] = AdminControllerPort
    device_port_type: ClassVar[type[LiveDevicePort[Any]]] = LiveDevicePort
    work_prefix = "eden-live-"
    controller_listen = "127.0.0.1:0"
    device_event_names: Mapping[str, str] = {}
    """Agent event names recorded under another name (the qemu backend times boots from power-on)."""

    def __init__(self, loaded: LoadedScenario, *, seed: int, timeline: Timeline | None = None, out_dir: Path | None = None) -> None:
        self.loaded = loaded
        self.seed = seed
        self.timeline = timeline if timeline is not None else Timeline()
        self.out_dir = out_dir
        self.clock = RunClock()
        # Every per-operation deadline of the run is a child of this one, so none outlives the run.
        self.run_deadline = Deadline(MAX_REAL_TIME)
        self.ids = [d.id for d in loaded.devices]
        self.index = {d: i for i, d in enumerate(self.ids)}
        self.work: Path | None = None
        self.procs: ProcessGroup | None = None
        self.controller: Managed | None = None
        self.ctrl_dir: Path | None = None
        self.api_addr: tuple[str, int] = ("127.0.0.1", 0)
        self.admin: AdminClient | None = None
        self.devices: dict[str, D] = {}
        self.by_serial: dict[str, D] = {}
        self._info: dict[str, DeviceInfo] = {}
        self._ctrl_view: dict[str, dict[str, Any]] = {}
        self.journal: ChangeJournal[str] = ChangeJournal()
        self._events_seen = 0
        self._refreshing: asyncio.Lock | None = None  # made on the run's loop
        self._device_events = 0
        self._failure: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bg: set[asyncio.Task[object]] = set()
        self._last_stats: dict[str, EndpointSummary] = {}
        self._banked_stats: dict[str, EndpointSummary] = {}
        """What the controller processes an outage stopped counted (:func:`add_endpoint_stats`)."""
        self.controller_down = False
        self._outages = 0  # controller_outage steps so far: a restore ends the one it was asked for
        self._restoring = 0  # the outage whose restart is under way or done
        self.pending_admin: list[tuple[str, tuple[object, ...], dict[str, object]]] = []
        self._stop: StopOnSignal | None = None  # Ctrl-C / SIGTERM handling while _run runs
        self.series_step = 5.0
        self._series = DeviceSeries()
        self.metric_interval = loaded.scenario.controller.config_items.get("timer.metric.interval", DEFAULT_METRIC_INTERVAL)
        self.controller_port = self.controller_port_type(self)
        self.device_port = self.device_port_type(self)

    # ------------------------------------------------------------------------- subclass hooks --
    async def _setup(self) -> None:
        """Before the controller starts (host checks, images): nothing by default."""

    async def _init_controller(self, ctrl_dir: Path) -> None:
        from eden.controller.setup import init

        await asyncio.to_thread(init, ctrl_dir)

    async def _prepare_devices(self) -> None:
        raise NotImplementedError

    async def _stop_devices(self) -> None:
        """Stop every device (end of run); the controller is still up."""

    async def _close_devices(self) -> None:
        """Release what the devices hold once the controller's stats have been read."""

    def _on_controller_down(self) -> None:
        """The controller process was stopped by an outage step."""

    async def _on_controller_up(self) -> None:
        """The controller is back (new process, maybe a new port)."""

    # ------------------------------------------------------------------------------ clock --
    def now(self) -> float:
        return self.clock.now()

    @property
    def deadline_scale(self) -> float:
        return 1.0  # emulated devices keep the scenario's deadlines; QemuBackend stretches them under TCG

    # -------------------------------------------------------------------------------- run --
    def run(self, main: RunGen, *, duration: float | None, progress: Callable[[float], None] | None = None) -> None:
        workdir = self.work_dir()
        try:
            try:
                asyncio.run(self._run(main, duration, progress))
            except BaseException as exc:
                # Whatever the cancellation surfaced as, a requested stop ends as Interrupted.
                signum = self._stop.signum if self._stop is not None else None
                if signum is None or isinstance(exc, Interrupted):
                    raise
                raise Interrupted(signum) from exc
            if self._stop is not None and self._stop.signum is not None:
                raise Interrupted(self._stop.signum)  # stopped gracefully (eden.interrupt)
        finally:
            self.finish(workdir)

    async def start_fleet(self) -> None:
        """Start the controller and the devices on the running loop; time 0 is when they are ready."""
        self._loop = asyncio.get_running_loop()
        assert self.work is not None
        self.procs = ProcessGroup(self._log_dir())
        await self._setup()
        await self._start_controller(first=True)
        await self._prepare_devices()
        self.clock.restart()
        self.background(self._poll_loop())

    async def _run(self, main: RunGen, duration: float | None, progress: Callable[[float], None] | None) -> None:
        driver = Driver(self.clock)
        self.run_deadline = Deadline(MAX_REAL_TIME)
        # Ctrl-C / SIGTERM cancel this task once: the finally below releases everything (eden.interrupt).
        with StopOnSignal(asyncio.current_task()) as self._stop:  # type: ignore[arg-type]
            try:
                await self.start_fleet()
                if progress is not None:
                    self.background(self._progress(progress))
                task = driver.spawn(main, "scenario")
                limit = duration if duration is not None else MAX_REAL_TIME
                deadline = self.run_deadline.child(limit)
                while not task.done():
                    if self._failure is not None:
                        raise InfrastructureError(self._failure)
                    if driver.failure is not None:
                        raise _infrastructure(driver.failure)
                    if deadline.expired():
                        if duration is None:
                            raise InfrastructureError(f"the run did not finish within {limit / 3600:.0f} h of real time")
                        break
                    await asyncio.wait({task}, timeout=min(0.2, deadline.remaining() + 0.01))
                if task.done() and task.exception() is not None:
                    raise _infrastructure(task.exception())  # type: ignore[arg-type]
                if self._failure is not None:
                    raise InfrastructureError(self._failure)
                await self._refresh()
                self._sample()
            finally:
                await driver.cancel_all()
                await self._shutdown()

    def background(self, coro: Coroutine[object, None, object]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def session(self) -> Session:
        """The fleet on an event loop of its own thread, driven step by step (:mod:`eden.fleet`)."""
        from eden.backends.live_session import LiveSession

        return LiveSession(self)

    def failure(self) -> str | None:
        """Why the run must stop (a process died, the admin API failed), if it must."""
        return self._failure

    def work_dir(self) -> WorkDir:
        """A fresh working directory for the run (what killed runs left is removed first)."""
        workdir = WorkDir.create(self.work_prefix)
        self.work = workdir.path
        return workdir

    def finish(self, workdir: WorkDir) -> None:
        """Keep the logs, remove the working directory, put the timeline in time order."""
        self._keep_logs()
        workdir.remove()
        self.timeline.events.sort(key=lambda e: e.t)

    async def shutdown(self) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        for task in list(self._bg):
            task.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._stop_devices()
        if self.admin is not None and not self.controller_down:
            with contextlib.suppress(Exception):
                self._last_stats = await asyncio.to_thread(self.admin.stats)
        with contextlib.suppress(Exception):
            await self._close_devices()
        if self.procs is not None:
            await self.procs.close()

    def _log_dir(self) -> Path:
        """Where the processes' logs go: straight into the output directory when there is one, so
        they survive even a ``kill -9`` of the harness (the working directory does not)."""
        assert self.work is not None
        if self.out_dir is None:
            return self.work / "logs"
        logs = self.out_dir / "logs"
        if logs.is_dir():  # an output directory used again: these logs are this run's alone
            for old in logs.glob("*.log"):
                with contextlib.suppress(OSError):
                    old.unlink()
        return logs

    def _keep_logs(self) -> None:
        """Copy what the backend put in the working directory's ``logs/`` (QEMU consoles)."""
        if self.out_dir is None or self.work is None:
            return
        logs = self.work / "logs"
        if logs.is_dir():
            dest = self.out_dir / "logs"
            dest.mkdir(parents=True, exist_ok=True)
            for f in logs.iterdir():
                if f.is_file():
                    with contextlib.suppress(OSError):
                        shutil.copy2(f, dest / f.name)

    # ------------------------------------------------------------------------- controller --
    async def _start_controller(self, *, first: bool) -> None:
        from eden.controller.client import AdminClient

        assert self.work is not None and self.procs is not None
        self.ctrl_dir = self.work / "controller"
        if first:
            await self._init_controller(self.ctrl_dir)
        serve_json = self.ctrl_dir / "serve.json"
        serve_json.unlink(missing_ok=True)
        self.controller = await self.procs.start(
            "controller",
            eden_command("controller", "serve", str(self.ctrl_dir), "--listen", self.controller_listen, "--admin-listen", "127.0.0.1:0"),
        )
        deadline = self.run_deadline.child(START_TIMEOUT)
        while not serve_json.exists():
            if not self.controller.running:
                raise InfrastructureError(f"the controller exited at start (rc={self.controller.proc.returncode}): {self.procs.log_tail('controller')}")
            if deadline.expired():
                raise InfrastructureError("the controller did not start within 60 s")
            await asyncio.sleep(0.05)
        info = json.loads(serve_json.read_text())
        self.api_addr = _host_port(info["api_url"])
        self.admin = AdminClient.for_dir(self.ctrl_dir)
        self.controller_down = False
        self.background(self._watch_controller(self.controller))

    async def _watch_controller(self, proc: Managed) -> None:
        rc = await proc.proc.wait()
        if self.controller is proc and not self.controller_down:
            self._failure = f"the controller died (rc={rc}): {self.procs.log_tail('controller') if self.procs else ''}"

    def client(self) -> AdminClient:
        """The admin client of the running controller (there is one once the fleet started)."""
        assert self.admin is not None, "the controller has not been started"
        return self.admin

    async def _preregister(self, serial: str, ref: Mapping[str, Any]) -> None:
        """Tell the controller what a device's clean boots measure (as the simulator's controller
        knows them): its firmware reference and the released (approved) builds."""
        sc = self.loaded.scenario
        ref_images = {
            name: {"version": version, "measurement": measurement}
            for name, (version, measurement) in approved_measurements(sc.images).items()
        }
        await asyncio.to_thread(self.client().preregister, serial, firmware=ref["firmware"], images=ref_images, config={})

    def _agent_spec(self, dev: DeviceSpec, serial: str, variants: np.random.Generator, seed: int, boot_time: float) -> AgentSpec:
        """The device-agent spec (docs/agent.md) for one scenario device: the same image draws as the simulator."""
        from eden.agent.spec import AgentSpec
        from eden.agent.spec import ImageEntry
        from eden.device_params import images_for

        sc = self.loaded.scenario
        infos, _changed = images_for(sc.images, dev.profile_name, variants)
        return AgentSpec(
            serial=serial,
            device_id=dev.id,
            profile=dev.profile_name,
            profile_overrides=dict(sc.fleet[dev.entry].overrides),
            image=dev.image,
            images={name: ImageEntry(version=i.version, behaviour=i.behaviour, size=i.size) for name, i in infos.items()},
            seed=seed,
            boot_time=boot_time,
        )

    def _device_seeds(self) -> list[int]:
        seeds = np.random.SeedSequence(self.seed).spawn(len(self.loaded.devices))
        return [int(s.generate_state(1)[0]) for s in seeds]

    def _device_serial(self, dev: DeviceSpec) -> str:
        """The hardware serial the controller pre-registers for ``dev``: made up here, since the
        backend builds the device; a board has its own (eden.backends.board)."""
        return f"{dev.profile_name}-{dev.id}"

    async def _provision(self, boot_time: float) -> AsyncIterator[tuple[DeviceSpec, str, Path, AgentSpec]]:
        """Every scenario device, in order, made known to the controller: the scenario's global
        configItems set, then per device its serial, home directory (``<work>/devices/<id>``),
        agent spec (the simulator's image draws) and ``home/config`` holding what
        ``eden controller device-config`` writes, after pre-registration. Yields
        ``(device, serial, home, spec)``; the backend adds its own hardware."""
        from eden.controller.layout import Layout
        from eden.controller.setup import device_config
        from eden.targets import stream

        assert self.work is not None and self.ctrl_dir is not None
        sc = self.loaded.scenario
        if sc.controller.config_items:
            await asyncio.to_thread(self.client().set_items, dict(sc.controller.config_items))
        variants = stream(self.seed, "image-variants")  # the same draws as the simulator makes
        seeds = self._device_seeds()
        layout = Layout(self.ctrl_dir)
        for n, dev in enumerate(self.loaded.devices):
            serial = self._device_serial(dev)
            home = self.work / "devices" / dev.id
            home.mkdir(parents=True)
            spec = self._agent_spec(dev, serial, variants, seeds[n], boot_time)
            await self._preregister(serial, spec.attestation_reference(self.loaded.profiles))
            device_config(layout, serial, home / "config")
            yield dev, serial, home, spec

    # --------------------------------------------------------------------- device events --
    def _device_line(self, d: D, line: str, source: str = "device", at: float | None = None) -> bool:
        """One of the agent's JSON event lines (docs/agent.md) into the timeline; False if the
        line is not one (it is then the caller's to record). ``at``: the run time the line
        arrived, used instead of the line's own stamp when the device's clock is not the host's
        (a VM's guest clock drifts from the host's by a second or so under TCG)."""
        try:
            ev = json.loads(line)
            what = str(ev["what"])
            t = self.clock.from_epoch(float(ev["t"])) if at is None else at
            data = ev.get("data") or {}
            if not isinstance(data, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return False
        self._device_events += 1
        what = self.device_event_names.get(what, what)
        self.timeline.add(t, source, d.id, what, {k: v for k, v in data.items() if k not in _RESERVED})
        if what == "bricked":
            d.bricked = True
        if what in JOURNALED:
            self._touch(d.id)
        return True

    # ---------------------------------------------------------------------------- actions --
    def record(self, what: str, data: dict[str, Any], device: str | None = None) -> None:
        self.timeline.add(self.now(), "harness", device, what, data)

    def later(self, delay: float, coro_fn: Callable[[], Awaitable[object]]) -> None:
        async def go() -> None:
            if delay > 0:
                await asyncio.sleep(delay)
            await coro_fn()

        self.background(go())

    def spread_delays(self, spread: float, n: int) -> list[float]:
        """Power-on delays in ``[0, spread)``, drawn from the run's seed."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7]))
        delays = rng.uniform(0.0, spread, n) if spread > 0 else np.zeros(n)
        return [float(x) for x in delays.tolist()]

    def apply(self, action: str, devices: list[str], args: object) -> None:
        perform(self, action, devices, args)

    def fail(self, reason: str) -> None:
        """End the run with an infrastructure error (at the run loop's next check)."""
        self._failure = reason

    def controller_outage(self) -> None:
        """Stop the controller process; devices cannot reach it until it is back."""
        if not self.controller_down:
            self._bank_stats()
        self.controller_down = True
        self._outages += 1
        if self.controller is not None:
            self.controller.kill()
        self._on_controller_down()

    def controller_restore(self) -> None:
        """Start the controller again, give it the admin changes made while it was down, then
        let devices reach it. Whether there is an outage to end is decided now, at the step, not
        when the restart task runs: an outage step right after would otherwise be ended by it."""
        if self.controller is None or not self.controller_down:
            self.record("controller_restored", {})
            return
        if self._restoring == self._outages:
            return  # a restore of this outage is under way
        self._restoring = self._outages
        self.background(self._restart_controller(self._outages))

    async def _restart_controller(self, outage: int) -> None:
        assert self.controller is not None
        await self.controller.wait(10)
        if outage != self._outages:
            return  # a later outage began meanwhile: its own restore ends it
        await self._start_controller(first=False)
        if outage != self._outages:  # an outage step came while the controller started
            self.controller_down = True
            self.controller.kill()
            self._on_controller_down()
            return
        pending, self.pending_admin = self.pending_admin, []
        for name, args, kwargs in pending:  # changes made while it was down, in order
            await asyncio.to_thread(getattr(self.client(), name), *args, **kwargs)
        await self._on_controller_up()
        self.record("controller_restored", {})

    # ---------------------------------------------------------------------------- observe --
    async def _poll_loop(self) -> None:
        next_sample = 0.0
        while True:
            if not self.controller_down:
                try:
                    await self._refresh()
                except Exception as exc:  # noqa: BLE001 - a controller that stops answering is an infrastructure fault
                    if not self.controller_down and self.controller is not None and self.controller.running:
                        self._failure = f"the controller's admin API failed: {exc}"
            if self.now() >= next_sample:
                self._sample()
                next_sample = self.now() + self.series_step
            await asyncio.sleep(POLL)

    async def _refresh(self) -> None:
        """Read the controller: its event stream into the timeline, then the views of the devices
        it has news about (every device's list row carries ``last_seen``). One read at a time: the
        poll loop and the run's last read could otherwise both take the same events."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            await self._refresh_once()

    async def _refresh_once(self) -> None:
        if self.admin is None or self.controller_down:
            return
        events = await asyncio.to_thread(self.admin.events, self._events_seen)
        dirty: set[str] = set()
        for ev in events:
            self._events_seen = max(self._events_seen, int(ev.get("id", 0)))
            d = self.by_serial.get(ev.get("serial") or "")
            t = self.clock.from_epoch(float(ev["t"])) if ev.get("t") else self.now()
            data = {k: v for k, v in (ev.get("data") or {}).items() if k not in _RESERVED}
            self.timeline.add(t, "controller", d.id if d else None, str(ev.get("kind", "event")), data)
            if d is not None:
                dirty.add(d.id)
        rows = await asyncio.to_thread(self.admin.devices)
        for row in rows:
            d = self.by_serial.get(row.get("serial", ""))
            if d is None:
                continue
            old = self._ctrl_view.get(d.id, {})
            self._ctrl_view[d.id] = {**old, **row}
            if row.get("onboarded") != old.get("onboarded"):
                dirty.add(d.id)
        for dev_id in sorted(dirty):
            full = await asyncio.to_thread(self.admin.device, self.devices[dev_id].serial)
            info = cast(DeviceInfo, full.get("info") or {})  # the merged report (eden.wire.codec.merge_info)
            self._ctrl_view[dev_id] = {**self._ctrl_view.get(dev_id, {}), **{k: v for k, v in full.items() if k != "info"}}
            if info != self._info.get(dev_id):
                self._info[dev_id] = info
                self._touch(dev_id)

    def _touch(self, device: str) -> None:
        self.journal.touch(device)

    def changes(self, since: int) -> tuple[int, list[str] | None]:
        return self.controller_port.changes(since)

    def journal_changes(self, since: int) -> tuple[int, list[str] | None]:
        if since < 0:
            return self.journal.seq, None
        return self.journal.seq, self.journal.since(since)

    def views(self) -> Mapping[str, DeviceView]:
        return self.controller_port.views()

    def view(self, device: str) -> DeviceView:
        d = self.devices.get(device)
        stored = self._info.get(device)
        info: DeviceInfo = stored.copy() if stored else {}
        row = self._ctrl_view.get(device, {})
        at, boot_time = info.get("at"), info.get("boot_time")  # device clock (epoch) -> run time
        if isinstance(at, (int, float)):
            info["at"] = self.clock.from_epoch(float(at))
        if isinstance(boot_time, (int, float)):
            info["boot_time"] = self.clock.from_epoch(float(boot_time))
        last_seen_epoch = row.get("last_seen")
        last_seen = self.clock.from_epoch(float(last_seen_epoch)) if last_seen_epoch else -math.inf
        return {
            **info,
            "id": device,
            "reported": bool(info),
            "onboarded": bool(row.get("onboarded")),
            "connected": connected(self.now(), last_seen, self.metric_interval),
            "last_seen": last_seen,
            "bricked": bool(d and d.bricked),
            "powered": bool(d and d.powered),
        }

    def controller_stats(self) -> ControllerStats:
        return self.controller_port.stats()

    def _read_stats(self) -> None:
        """The running controller's ``GET /v1/stats`` into ``_last_stats`` (kept as it was when unreachable)."""
        if self.admin is not None and not self.controller_down and self.controller is not None and self.controller.running:
            with contextlib.suppress(Exception):
                self._last_stats = self.admin.stats()

    def _bank_stats(self) -> None:
        """Before an outage stops the controller: keep what it counted, as the next process counts
        from zero (its stats are in memory)."""
        self._read_stats()
        self._banked_stats = add_endpoint_stats(self._banked_stats, self._last_stats)
        self._last_stats = {}

    def admin_stats(self) -> ControllerStats:
        """The controller's per-endpoint request counts and latency percentiles, in the shape the
        simulator reports (seconds; ``rejected_503`` = requests answered 503; ``status`` = requests
        per HTTP status answered). Counted over the whole run: the processes before each
        ``controller_outage`` included (see :func:`add_endpoint_stats` for the percentiles)."""
        self._read_stats()
        out: ControllerStats = {}
        every: dict[str, int] = {}
        total = 0
        for name, st in sorted(add_endpoint_stats(self._banked_stats, self._last_stats).items()):
            status = st["status"]
            total += st["requests"]
            for code, k in status.items():
                every[code] = every.get(code, 0) + k
            out[name] = {
                "requests": st["requests"],
                "rejected_503": status.get("503", 0),
                "status": status,
                "p50": st["p50_ms"] / 1000.0,
                "p95": st["p95_ms"] / 1000.0,
                "p99": st["p99_ms"] / 1000.0,
            }
        out["all"] = {"requests": total, "rejected_503": every.get("503", 0),
                      "status": {code: every[code] for code in sorted(every)}}
        return out

    def _sample(self) -> None:
        views = self.views()
        states: dict[str, int] = {}
        versions: dict[str, int] = {}
        for v in views.values():
            st = v.get("state", "UNREPORTED") if v["reported"] else "UNREPORTED"
            states[st] = states.get(st, 0) + 1
            sw = v.get("sw") or []
            version = sw[0].get("version") if sw else None
            if version:
                versions[version] = versions.get(version, 0) + 1
        online = sum(1 for v in views.values() if v["connected"])
        powered = sum(1 for v in views.values() if v["powered"])
        self._series.append(round(self.now(), 3), online, powered, states, versions)

    def series(self) -> BackendSeries:
        return {**self._series.as_dict(self.series_step), "rollbacks": sorted(rollback_times(self.timeline))}

    async def _progress(self, report: Callable[[float], None]) -> None:
        while True:
            report(self.now())
            await asyncio.sleep(5.0)

    def stats(self) -> BackendStats:
        return {"node_events": self._device_events, "agent_boots": sum(d.boots for d in self.devices.values())}


def _endpoint(st: EndpointSummary) -> EndpointSummary:
    """One endpoint of a ``GET /v1/stats`` answer (decoded JSON), with every field and its type."""
    status = st.get("status") or {}
    return {"requests": int(st.get("requests", 0)), "status": {str(c): int(status[c]) for c in sorted(status)},
            "p50_ms": float(st.get("p50_ms") or 0.0), "p95_ms": float(st.get("p95_ms") or 0.0),
            "p99_ms": float(st.get("p99_ms") or 0.0), "window": int(st.get("window", 0))}


def add_endpoint_stats(before: Mapping[str, EndpointSummary], latest: Mapping[str, EndpointSummary]) -> dict[str, EndpointSummary]:
    """Two ``GET /v1/stats`` answers as one: ``before`` the totals of earlier controller processes,
    ``latest`` the running one's. Request and status counts add up. A percentile is the larger of
    the two: a percentile of the union of two samples lies between theirs, so the larger one is a
    bound that never understates a slow spell before or after an outage. Entries that are not an
    endpoint summary are skipped."""
    out = {name: _endpoint(st) for name, st in before.items() if isinstance(st, dict)}
    for name, st in latest.items():
        if not isinstance(st, dict):
            continue
        new, have = _endpoint(st), out.get(name)
        if have is not None:
            status = dict(have["status"])
            for code, k in new["status"].items():
                status[code] = status.get(code, 0) + k
            new = {"requests": have["requests"] + new["requests"], "status": dict(sorted(status.items())),
                   "p50_ms": max(have["p50_ms"], new["p50_ms"]), "p95_ms": max(have["p95_ms"], new["p95_ms"]),
                   "p99_ms": max(have["p99_ms"], new["p99_ms"]), "window": have["window"] + new["window"]}
        out[name] = new
    return out


def _infrastructure(exc: BaseException) -> BaseException:
    """Anything that goes wrong in the harness's own machinery (an admin call refused, a tool
    failing) is an infrastructure error, never a product failure."""
    if isinstance(exc, (InfrastructureError, KeyboardInterrupt, asyncio.CancelledError)):
        return exc
    return InfrastructureError(f"{type(exc).__name__}: {exc}")


def _host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", int(parts.port or 443)
