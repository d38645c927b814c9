"""Backend ``emulated``: a real controller and one real device-agent process per device, in real time.

What is real here: the controller process (``eden controller serve``: HTTPS, protobuf bodies in
signed AuthContainers, SQLite), the agent processes (``eden agent --once``: the EVE node model
driven by asyncio), TCP, TLS and ECDSA. What is emulated: the hardware. A device's power is its
agent process (power off = SIGKILL, reboot = the agent exits and is started again), each network
port is a relay on loopback that the harness can cut (:mod:`eden.backends.netproxy`), and the boot
takes a few seconds instead of the profile's boot time.

The scenario's steps run through the same runner as on the simulator (:mod:`eden.runner`), driven
by asyncio (:mod:`eden.backends.realtime`). Device views come from the controller's admin API
(the decoded ZInfoMsg, as any controller sees it); the timeline merges the agents' event lines,
the controller's event stream and the harness's own records.

Everything started here is stopped on success, failure, timeout and Ctrl-C
(:mod:`eden.backends.procs`), and the run's working directory is removed; logs are copied into
the run's output directory first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from eden.backends.base import BACKENDS, RunGen
from eden.backends.netproxy import PortProxy
from eden.backends.procs import Managed, ProcessGroup
from eden.backends.realtime import Deadline, Driver, RunClock
from eden.errors import InfrastructureError
from eden.scenario.load import DeviceSpec, LoadedScenario
from eden.timeline import Timeline
from simulator.eve.node import ImageInfo

_RESERVED = frozenset({"t", "source", "device", "what"})  # timeline keys a payload may not shadow
JOURNALED = frozenset({"booted", "bricked", "crash", "power_off", "reset", "onboarded", "hang"})
EXIT_REBOOT = 75  # the agent's "reboot requested" exit code (eden/agent)
EMULATED_BOOT_SECONDS = 3.0
"""How long an emulated device takes from power-on to its agents starting. The hardware profile's
boot time models real hardware; an agent process has no firmware or kernel to wait for."""
REBOOT_GAP = 0.5  # seconds between an agent's exit for a reboot and its restart
POLL = 0.5  # seconds between reads of the controller's device views
START_TIMEOUT = 60.0
MAX_REAL_TIME = 6 * 3600.0


def _py(*args: str) -> list[str]:
    return [sys.executable, "-m", "eden", *args]


class _Device:
    def __init__(self, spec: DeviceSpec, serial: str, state_dir: Path) -> None:
        self.spec = spec
        self.id = spec.id
        self.serial = serial
        self.state_dir = state_dir
        self.proxies: dict[str, PortProxy] = {}
        self.proc: Managed | None = None
        self.powered = False
        self.bricked = False
        self.boots = 0
        self.watch: asyncio.Task[None] | None = None
        self.pending_tamper: list[str] = []


class EmulatedBackend:
    name = "emulated"
    capabilities = BACKENDS["emulated"]["capabilities"]
    max_devices: int | None = 200

    def __init__(self, loaded: LoadedScenario, *, seed: int, timeline: Timeline | None = None, out_dir: Path | None = None) -> None:
        self.loaded = loaded
        self.seed = seed
        self.timeline = timeline if timeline is not None else Timeline()
        self.out_dir = out_dir
        self.clock = RunClock()
        self.ids = [d.id for d in loaded.devices]
        self.index = {d: i for i, d in enumerate(self.ids)}
        self.work: Path | None = None
        self.procs: ProcessGroup | None = None
        self.controller: Managed | None = None
        self.ctrl_dir: Path | None = None
        self.admin: Any = None
        self.devices: dict[str, _Device] = {}
        self.by_serial: dict[str, _Device] = {}
        self._info: dict[str, dict[str, Any]] = {}
        self._ctrl_view: dict[str, dict[str, Any]] = {}
        self._seq = 0
        self._journal_seq: list[int] = []
        self._journal_dev: list[str] = []
        self._events_seen = 0
        self._agent_events = 0
        self._failure: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bg: set[asyncio.Task[Any]] = set()
        self._last_stats: dict[str, Any] = {}
        self._controller_down = False
        self._pending_admin: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.series_step = 5.0
        self._series: dict[str, Any] = {"t": [], "connected": [], "powered": [], "by_state": {}, "by_version": {}}
        self.dormant = 3.0 * float(loaded.scenario.controller.config_items.get("timer.metric.interval", 60))

    # ------------------------------------------------------------------------------ clock --
    def now(self) -> float:
        return self.clock.now()

    # -------------------------------------------------------------------------------- run --
    def run(self, main: RunGen, *, duration: float | None, progress: Callable[[float], None] | None = None) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="eden-emulated-"))
        try:
            asyncio.run(self._run(main, duration, progress))
        finally:
            self._keep_logs()
            shutil.rmtree(self.work, ignore_errors=True)
            self.timeline.events.sort(key=lambda e: e.t)

    async def _run(self, main: RunGen, duration: float | None, progress: Callable[[float], None] | None) -> None:
        self._loop = asyncio.get_running_loop()
        assert self.work is not None
        self.procs = ProcessGroup(self.work / "logs")
        driver = Driver()
        try:
            await self._start_controller(first=True)
            await self._prepare_devices()
            self.clock = RunClock()  # time 0 = the fleet is ready, as on the simulator
            self._background(self._poll_loop())
            if progress is not None:
                self._background(self._progress(progress))
            task = driver.spawn(main, "scenario")
            limit = duration if duration is not None else MAX_REAL_TIME
            deadline = Deadline(limit)
            while not task.done():
                if self._failure is not None:
                    raise InfrastructureError(self._failure)
                if driver.failure is not None:
                    raise _infrastructure(driver.failure)
                if deadline.expired:
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

    def _background(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _shutdown(self) -> None:
        for task in list(self._bg):
            task.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        for dev in self.devices.values():
            dev.powered = False
            if dev.watch is not None:
                dev.watch.cancel()
        await asyncio.gather(*(d.watch for d in self.devices.values() if d.watch is not None), return_exceptions=True)
        agents = [d.proc for d in self.devices.values() if d.proc is not None]
        await asyncio.gather(*(p.stop(grace=2.0) for p in agents), return_exceptions=True)
        if self.admin is not None and not self._controller_down:
            with contextlib.suppress(Exception):
                self._last_stats = await asyncio.to_thread(self.admin.stats)
        for dev in self.devices.values():
            for proxy in dev.proxies.values():
                await proxy.close()
        if self.procs is not None:
            await self.procs.close()

    def _keep_logs(self) -> None:
        if self.out_dir is None or self.work is None:
            return
        logs = self.work / "logs"
        if logs.is_dir():
            dest = self.out_dir / "logs"
            dest.mkdir(parents=True, exist_ok=True)
            for f in logs.iterdir():
                with contextlib.suppress(OSError):
                    shutil.copy2(f, dest / f.name)

    # ------------------------------------------------------------------------- controller --
    async def _start_controller(self, *, first: bool) -> None:
        from eden.controller.client import AdminClient

        assert self.work is not None and self.procs is not None
        self.ctrl_dir = self.work / "controller"
        if first:
            from eden.controller.setup import init

            await asyncio.to_thread(init, self.ctrl_dir)
        serve_json = self.ctrl_dir / "serve.json"
        serve_json.unlink(missing_ok=True)
        self.controller = await self.procs.start(
            "controller",
            _py("controller", "serve", str(self.ctrl_dir), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"),
        )
        deadline = Deadline(START_TIMEOUT)
        while not serve_json.exists():
            if not self.controller.running:
                raise InfrastructureError(f"the controller exited at start (rc={self.controller.proc.returncode}): {self.procs.log_tail('controller')}")
            if deadline.expired:
                raise InfrastructureError("the controller did not start within 60 s")
            await asyncio.sleep(0.05)
        info = json.loads(serve_json.read_text())
        self.api_addr = _host_port(info["api_url"])
        self.admin = AdminClient.for_dir(self.ctrl_dir)
        self._controller_down = False
        self._background(self._watch_controller(self.controller))

    async def _watch_controller(self, proc: Managed) -> None:
        rc = await proc.proc.wait()
        if self.controller is proc and not self._controller_down:
            self._failure = f"the controller died (rc={rc}): {self.procs.log_tail('controller') if self.procs else ''}"

    async def _prepare_devices(self) -> None:
        """Pre-register every device with what its clean boots measure (as the simulator's
        controller knows them), write its spec and CONFIG partition, and give each NIC a relay."""
        from eden.agent.spec import DeviceSpec as AgentSpec
        from eden.agent.spec import ImageEntry
        from eden.controller.layout import Layout
        from eden.controller.setup import device_config
        from eden.device_params import images_for
        from eden.targets import stream

        assert self.work is not None and self.ctrl_dir is not None
        sc = self.loaded.scenario
        admin = self.admin
        if sc.controller.config_items:
            await asyncio.to_thread(admin.set_items, dict(sc.controller.config_items))
        variants = stream(self.seed, "image-variants")  # the same draws as the simulator makes
        seeds = np.random.SeedSequence(self.seed).spawn(len(self.loaded.devices))
        layout = Layout(self.ctrl_dir)
        for n, dev in enumerate(self.loaded.devices):
            infos, _changed = images_for(sc.images, dev.profile_name, variants)
            serial = f"{dev.profile_name}-{dev.id}"
            home = self.work / "devices" / dev.id
            home.mkdir(parents=True)
            d = _Device(dev, serial, home / "state")
            spec = AgentSpec(
                serial=serial,
                device_id=dev.id,
                profile=dev.profile_name,
                profile_overrides=dict(sc.fleet[dev.entry].overrides),
                image=dev.image,
                images={name: ImageEntry(version=i.version, behaviour=i.behaviour, size=i.size) for name, i in infos.items()},
                seed=int(seeds[n].generate_state(1)[0]),
                boot_time=EMULATED_BOOT_SECONDS,
            )
            (home / "spec.json").write_text(spec.model_dump_json(indent=2))
            ref = spec.attestation_reference(self.loaded.profiles)
            # Released builds only: the same approved templates as the simulator's controller.
            ref_images = {
                name: {"version": img.version, "measurement": ImageInfo(name, img.version, "good", img.size).rootfs_measurement}
                for name, img in sc.images.items()
                if img.behaviour != "changes-pcrs"
            }
            await asyncio.to_thread(admin.preregister, serial, firmware=ref["firmware"], images=ref_images, config={})
            device_config(layout, serial, home / "config")
            for nic in dev.profile.nics:
                proxy = PortProxy(self.api_addr)
                await proxy.start()
                d.proxies[nic.name] = proxy
            self.devices[dev.id] = d
            self.by_serial[serial] = d

    # ----------------------------------------------------------------------------- agents --
    def _agent_argv(self, d: _Device) -> list[str]:
        home = d.state_dir.parent
        argv = _py("agent", "--once", "--state-dir", str(d.state_dir), "--spec", str(home / "spec.json"), "--config-dir", str(home / "config"))
        for name, proxy in d.proxies.items():
            argv += ["--port-url", f"{name}=https://127.0.0.1:{proxy.port}"]
        return argv

    async def _power_on(self, d: _Device) -> None:
        if d.powered:
            return
        d.powered = True
        self._touch(d.id)
        d.watch = asyncio.get_running_loop().create_task(self._agent_life(d))

    async def _agent_life(self, d: _Device) -> None:
        """Keep the agent running while the device is powered: a reboot is a process restart."""
        assert self.procs is not None
        while d.powered:
            while d.pending_tamper:
                stage = d.pending_tamper.pop(0)
                await _check_call(_py("agent", "tamper", "--state-dir", str(d.state_dir), "--stage", stage), f"tamper {d.id}")
            d.boots += 1
            d.proc = await self.procs.start(f"agent-{d.id}", self._agent_argv(d), on_line=lambda line, d=d: self._agent_line(d, line))
            rc = await d.proc.proc.wait()
            if not d.powered:
                return  # power cut (SIGKILL) or end of run
            if rc == EXIT_REBOOT:
                await asyncio.sleep(REBOOT_GAP)
                continue
            d.powered = False
            self._failure = f"agent of {d.id} exited with code {rc}: {self.procs.log_tail(f'agent-{d.id}')}"
            return

    def _power_off(self, d: _Device) -> None:
        if not d.powered:
            return
        d.powered = False
        if d.proc is not None:
            d.proc.kill()
        self.timeline.add(self.now(), "device", d.id, "power_off", {})
        self._touch(d.id)

    def _agent_line(self, d: _Device, line: str) -> None:
        try:
            ev = json.loads(line)
            what = str(ev["what"])
            t = self.clock.from_epoch(float(ev["t"]))
            data = ev.get("data") or {}
        except (ValueError, KeyError, TypeError):
            self.timeline.add(self.now(), "console", d.id, "agent_output", {"line": line[:500]})
            return
        self._agent_events += 1
        self.timeline.add(t, "device", d.id, what, {k: v for k, v in data.items() if k not in _RESERVED})
        if what == "bricked":
            d.bricked = True
        if what in JOURNALED:
            self._touch(d.id)

    # ---------------------------------------------------------------------------- actions --
    def record(self, what: str, data: dict[str, Any], device: str | None = None) -> None:
        self.timeline.add(self.now(), "harness", device, what, data)

    def _later(self, delay: float, coro_fn: Callable[[], Any]) -> None:
        async def go() -> None:
            if delay > 0:
                await asyncio.sleep(delay)
            await coro_fn()

        self._background(go())

    def apply(self, action: str, devices: list[str], args: Any) -> None:
        from eden.backends.sim import _args_dict

        devs = [self.devices[d] for d in devices]
        serials = [d.serial for d in devs]
        admin = _Deferred(self)
        self.record(action, _args_dict(args) | {"devices": len(devices)}, devices[0] if len(devices) == 1 else None)
        if action == "power_on":
            spread = float(getattr(args, "spread", 0.0) or 0.0)
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7]))
            delays = rng.uniform(0.0, spread, len(devs)) if spread > 0 else np.zeros(len(devs))
            for d, delay in zip(devs, delays.tolist()):
                self._later(delay, lambda d=d: self._power_on(d))
        elif action == "power_off":
            for d in devs:
                self._power_off(d)
        elif action == "power_cycle":
            for d in devs:
                self._power_off(d)
                self._later(float(args.off_for), lambda d=d: self._power_on(d))
        elif action == "reboot":
            for s in serials:
                admin.reboot(s)
        elif action == "baseos_update":
            version = self.loaded.scenario.images[args.image].version
            for s in serials:
                admin.set_baseos(s, args.image, version, bool(args.activate))
        elif action == "retry_update":
            for s in serials:
                admin.retry_update(s)
        elif action == "force_fallback":
            for s in serials:
                current = int(admin.device(s).get("items", {}).get("force.fallback.counter", 0))
                admin.set_items({"force.fallback.counter": current + 1}, serial=s)
        elif action in ("network_down", "network_up", "network_flap"):
            up = action == "network_up"
            for d in devs:
                for name in args.ports if getattr(args, "ports", None) else list(d.proxies):
                    if name in d.proxies:
                        d.proxies[name].set_link(up)
            if up:
                self.record("network_restored", {"devices": len(devs)})
        elif action == "controller_outage":
            self._controller_outage()
        elif action == "controller_restore":
            self._background(self._controller_restore())
        elif action == "request_attestation":
            for s in serials:
                admin.revoke_token(s)
        elif action == "tamper":
            # The attacker changes the disk; the agent measures it at its next boot, which is
            # when the change is written (a running agent owns its state directory).
            for d in devs:
                d.pending_tamper.append(args.stage)
        elif action == "set_config":
            if len(devs) == len(self.devices):
                admin.set_items(dict(args))
            else:
                for s in serials:
                    admin.set_items(dict(args), serial=s)
        elif action == "deploy_app":
            spec = {"kind": args.kind, "cpus": args.cpus, "memory": int(args.memory), "size": int(args.size), "activate": args.activate}
            for s in serials:
                admin.set_app(s, args.name, spec)
        elif action == "remove_app":
            for s in serials:
                admin.set_app(s, args.name, None)
        elif action == "maintenance_mode":
            for s in serials:
                admin.set_maintenance(s, bool(args.enable))
        else:
            raise InfrastructureError(f"the emulated backend cannot perform '{action}'")

    def _controller_outage(self) -> None:
        """Stop the controller process; the ports refuse connections until it is back."""
        self._controller_down = True
        if self.controller is not None:
            self.controller.kill()
        for d in self.devices.values():
            for proxy in d.proxies.values():
                self._background(proxy.set_upstream(None))

    async def _controller_restore(self) -> None:
        if self.controller is not None and self._controller_down:
            await self.controller.wait(10)
            await self._start_controller(first=False)
            for d in self.devices.values():
                for proxy in d.proxies.values():
                    await proxy.set_upstream(self.api_addr)
            pending, self._pending_admin = self._pending_admin, []
            for name, args, kwargs in pending:  # changes made while it was down, in order
                await asyncio.to_thread(getattr(self.admin, name), *args, **kwargs)
        self.record("controller_restored", {})

    # ---------------------------------------------------------------------------- observe --
    async def _poll_loop(self) -> None:
        next_sample = 0.0
        while True:
            if not self._controller_down:
                try:
                    await self._refresh()
                except Exception as exc:  # noqa: BLE001 - a controller that stops answering is an infrastructure fault
                    if not self._controller_down and self.controller is not None and self.controller.running:
                        self._failure = f"the controller's admin API failed: {exc}"
            if self.now() >= next_sample:
                self._sample()
                next_sample = self.now() + self.series_step
            await asyncio.sleep(POLL)

    async def _refresh(self) -> None:
        """Read the controller: its event stream into the timeline, then the views of the devices
        it has news about (every device's list row carries ``last_seen``)."""
        if self.admin is None or self._controller_down:
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
            info = full.get("info") or {}
            self._ctrl_view[dev_id] = {**self._ctrl_view.get(dev_id, {}), **{k: v for k, v in full.items() if k != "info"}}
            if info != self._info.get(dev_id):
                self._info[dev_id] = info
                self._touch(dev_id)

    def _touch(self, device: str) -> None:
        self._seq += 1
        self._journal_seq.append(self._seq)
        self._journal_dev.append(device)

    def changes(self, since: int) -> tuple[int, list[str] | None]:
        if since < 0:
            return self._seq, None
        import bisect

        lo = bisect.bisect_right(self._journal_seq, since)
        return self._seq, list(dict.fromkeys(self._journal_dev[lo:]))

    def views(self) -> Mapping[str, Mapping[str, Any]]:
        return {d: self.view(d) for d in self.ids}

    def view(self, device: str) -> dict[str, Any]:
        d = self.devices[device] if device in self.devices else None
        info = dict(self._info.get(device) or {})
        row = self._ctrl_view.get(device, {})
        for key in ("at", "boot_time"):
            if isinstance(info.get(key), (int, float)):
                info[key] = self.clock.from_epoch(float(info[key]))
        last_seen_epoch = row.get("last_seen")
        last_seen = self.clock.from_epoch(float(last_seen_epoch)) if last_seen_epoch else -math.inf
        return {
            **info,
            "id": device,
            "reported": bool(info),
            "onboarded": bool(row.get("onboarded")),
            "connected": self.now() - last_seen <= self.dormant,
            "last_seen": last_seen,
            "bricked": bool(d and d.bricked),
            "powered": bool(d and d.powered),
        }

    def controller_stats(self) -> dict[str, Any]:
        """The controller's per-endpoint request counts and latency percentiles, in the shape the
        simulator reports (seconds; ``rejected_503`` = requests answered 503)."""
        if self.admin is not None and not self._controller_down and self.controller is not None and self.controller.running:
            with contextlib.suppress(Exception):
                self._last_stats = self.admin.stats()
        out: dict[str, Any] = {}
        total = 0
        for name, st in sorted(self._last_stats.items()):
            if not isinstance(st, dict):
                continue
            status = st.get("status") or {}
            n = int(st.get("requests", 0))
            total += n
            out[name] = {
                "requests": n,
                "rejected_503": int(status.get("503", 0)),
                "p50": float(st.get("p50_ms") or 0.0) / 1000.0,
                "p95": float(st.get("p95_ms") or 0.0) / 1000.0,
                "p99": float(st.get("p99_ms") or 0.0) / 1000.0,
            }
        out["all"] = {"requests": total, "rejected_503": sum(v["rejected_503"] for v in out.values())}
        return out

    def _sample(self) -> None:
        views = self.views()
        s = self._series
        s["t"].append(round(self.now(), 3))
        s["connected"].append(sum(1 for v in views.values() if v["connected"]))
        s["powered"].append(sum(1 for v in views.values() if v["powered"]))
        n = len(s["t"])
        states: dict[str, int] = {}
        versions: dict[str, int] = {}
        for v in views.values():
            st = v.get("state", "UNREPORTED") if v["reported"] else "UNREPORTED"
            states[st] = states.get(st, 0) + 1
            sw = v.get("sw") or []
            if sw and sw[0].get("version"):
                versions[sw[0]["version"]] = versions.get(sw[0]["version"], 0) + 1
        for counts, store in ((states, s["by_state"]), (versions, s["by_version"])):
            for key in sorted(set(counts) | set(store)):
                column = store.setdefault(key, [0] * (n - 1))
                column.append(counts.get(key, 0))

    def series(self) -> dict[str, Any]:
        rollbacks = [round(e.t, 3) for e in self.timeline.events if e.what == "booted" and e.data.get("reason") in ("FALLBACK", "VAULT_FAILED")]
        s = self._series
        return {
            "step": self.series_step,
            "t": s["t"],
            "connected": s["connected"],
            "powered": s["powered"],
            "by_state": {k: v for k, v in sorted(s["by_state"].items()) if any(v)},
            "by_version": {k: v for k, v in sorted(s["by_version"].items()) if any(v)},
            "rollbacks": sorted(rollbacks),
        }

    async def _progress(self, report: Callable[[float], None]) -> None:
        while True:
            report(self.now())
            await asyncio.sleep(5.0)

    def stats(self) -> dict[str, Any]:
        return {"node_events": self._agent_events, "agent_boots": sum(d.boots for d in self.devices.values())}


class _Deferred:
    """The admin client as scenario actions use it: while the controller is down (an outage
    step), changes are queued and applied in order once it is back, so the desired state a
    scenario sets during an outage is what the restarted controller serves (as on the simulator,
    where the model keeps accepting changes)."""

    def __init__(self, backend: EmulatedBackend) -> None:
        self._be = backend

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            be = self._be
            if be._controller_down:
                if name in ("device", "devices", "stats", "events"):
                    raise InfrastructureError(f"admin read '{name}' while the controller is down")
                be._pending_admin.append((name, args, kwargs))
                return None
            return getattr(be.admin, name)(*args, **kwargs)

        return call


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


async def _check_call(argv: list[str], what: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise InfrastructureError(f"{what} failed (rc={proc.returncode}): {out.decode(errors='replace')[-2000:]}")
