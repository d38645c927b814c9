"""Backend ``board``: boards in a lab, reached through their drivers (docs/board.md, docs/lab.md).

The lab file (``--lab lab.yaml``, or ``EDEN_LAB``) lists the places: a board with its hardware
profile and its drivers. Per scenario device the backend leases a place whose profile is the
device's (waiting up to ``EDEN_LAB_WAIT`` seconds for one, default 1 h), holds the lease with a
heartbeat for the run, and releases it at the end; a killed run's lease expires by its TTL.

What is real: the controller (``eden controller serve`` on the lab file's ``controller.listen``,
its certificate naming ``controller.advertise``, the address the boards dial), and per device the
board itself: the reference image written to its storage by the place's **media** driver (with the
CONFIG that ``eden controller device-config`` writes), **power** through PDUDaemon, shell commands
or a person, the **console** over a local or network serial port, network ports cut through the
**link** driver. The device is observed through the controller and its console, as on ``qemu``
(``EDEN-BOOT:`` markers and the agent's event lines), plus what only a board needs:

* power is confirmed by watching the board, never by the PDU's reply (PDUDaemon's ``localcmdline``
  ignores its command's exit status; a relay can stick): a board that prints nothing within its
  ``console.first_output`` seconds (times the place's ``timing_scale``) of power-on, or that talks
  to the controller after a power-off, is *broken*;
* every leased board is switched off before its storage is written (a killed job may have left it
  running), so a run starts from a known state;
* a boot banner (the image's first marker) seen while the board was on and not just powered on is
  an **unexpected reset** on the timeline; a kernel panic line is put there too;
* a console that vanishes is re-attached within the place's ``reattach`` seconds, else *broken*.

Every infrastructure fault ends the run with :class:`~eden.errors.InfrastructureError` (exit 2),
never as a product verdict. Tested here on **stand-in boards** (:mod:`eden.lab.standin`): QEMU VMs
wired like boards, behind a real PDUDaemon and a real ser2net.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import socket
import time
from pathlib import Path
from functools import partial
from typing import TYPE_CHECKING, Awaitable, Callable, Mapping

from eden.backends.base import BackendStats, RealTimeTimings, RunGen, Sleep
from eden.backends.live import LiveDevice
from eden.backends.live_ports import NO_LPS, LiveDevicePort
from eden.backends.qemu import QemuBackend, QemuControllerPort
from eden.errors import InfrastructureError, InvalidInput, Issue, issue_at
from eden.lab.model import Console as LabConsole
from eden.scenario.load import DeviceSpec

if TYPE_CHECKING:
    from eden.backends.actions import Action
    from eden.lab.consoles import ReattachingConsole
    from eden.lab.labgrid import LabgridLease, LabgridResources
    from eden.lab.leases import HeldLease, Lease, LeaseStore
    from eden.lab.load import LoadedLab
    from eden.lab.model import ManualMedia, Place
    from eden.lab.power import PowerDriver
    from eden.runtime.deadline import Deadline
    from eden.scenario.load import LoadedScenario
    from eden.scenario.model import StepBase, Target
    from eden.timeline import Timeline

LAB_ENV = "EDEN_LAB"
DEFAULT_FIRST_OUTPUT: float = LabConsole.model_fields["first_output"].default
"""``console.first_output`` of a place whose console comes from labgrid (no console block of its own)."""
WAIT_ENV = "EDEN_LAB_WAIT"
PLACES_ENV = "EDEN_LAB_PLACES"
"""Comma-separated places the run may lease (the health gate runs a health scenario on one place)."""
HEALTH_ENV = "EDEN_LAB_HEALTH"
"""Set by the health gate: the run also checks SSH into every board before it ends (docs/lab.md)."""
DEFAULT_WAIT = 3600.0
OFF_GRACE = 5.0
"""A board may still finish a request it started before the power went off."""
BOOT_BANNER = "EDEN-BOOT: stage=initramfs"
"""The reference image's first line of every boot: a reset when neither a power-on nor a reboot
the agent announced (its ``agent_exit`` event with outcome ``reboot``) came before it."""
PANIC = "Kernel panic"
REBOOTING = "reboot: Restarting system"
"""What Linux prints on its console when software reboots it (kernel/reboot.c): the next banner
is then a reboot, not a reset, whatever ran the reboot (EVE's agents, eden's, a panic's timeout)."""


MediaWriter = Callable[[Path, bool], Awaitable[None]]
"""Writes a board's image onto a target path; the flag: grow an image file to the profile's storage."""
MANUAL_MEDIA_PROMPT = ("Place {place}: write {image} to the board's storage (e.g. dd if={image} of=/dev/sdX bs=4M "
                       "conv=fsync), put it back in the board, then press Enter")


def _is_block_device(path: Path) -> bool:
    import stat

    with contextlib.suppress(OSError):
        return stat.S_ISBLK(path.stat().st_mode)
    return False


async def _copy_to_device(src: Path, dev: Path) -> None:
    """Every byte of ``src`` onto a block device (a sparse copy would leave the old disk's data in
    the holes), synced before the media goes back to the board."""
    from eden.backends.qemu import _run

    await _run(["dd", f"if={src}", f"of={dev}", "bs=4M", "conv=fsync,notrunc", "status=none"], f"writing {dev}")


class _Board(LiveDevice):
    def __init__(self, spec: DeviceSpec, serial: str, home: Path, place_name: str, place: Place, power: PowerDriver) -> None:
        super().__init__(spec, serial, home)
        self.place_name = place_name
        self.place = place
        self.power = power
        self.console: ReattachingConsole | None = None  # attached once the board's storage is written
        self.powered_at: float | None = None
        self.off_at: float | None = None
        self.banner_expected = False
        self.output_since_power = False
        self.timings: dict[str, list[float]] = {"power_on_to_agent_start": [], "power_on_to_onboarded": []}
        self.onboarded_seen = False
        self.pending_tamper: list[str] = []
        self.resets = 0
        self.reboot_announced = False
        self.switching_on = False

    @property
    def con(self) -> ReattachingConsole:
        assert self.console is not None, "the console is attached before the board is first powered"
        return self.console


def lab_path(env: dict[str, str] | None = None) -> Path | None:
    value = (os.environ if env is None else env).get(LAB_ENV, "").strip()
    return Path(value).expanduser() if value else None


def input_issues(loaded: LoadedScenario, env: dict[str, str] | None = None) -> list[Issue]:
    """What ``--backend board`` needs beyond the scenario's own rules: a lab file, enough places of
    every device's profile, and for every step or fault that acts on the boards, drivers that
    perform it on each place of the profiles its target names (:func:`_target_profiles`)."""
    from eden.backends.actions import ACTION_TABLE
    from eden.backends.qemu_eve import input_issues as eve_input_issues
    from eden.backends.qemu_eve import is_eve_profile
    from eden.lab.load import load_lab
    from eden.lab.model import place_methods

    path = lab_path(env)
    if path is None:
        return [issue_at(loaded.located, ("fleet",), f"--backend board needs a lab file ({LAB_ENV} is not set)",
                         "give --lab lab.yaml (docs/lab.md), or set EDEN_LAB", key=True)]
    try:
        lab = load_lab(path)
    except InvalidInput as exc:
        return list(exc.issues)
    out: list[Issue] = eve_input_issues(loaded, env)
    eve_profiles = {d.profile_name for d in loaded.devices if is_eve_profile(d.profile)}
    for name, p in lab.lab.places.items():
        if p.profile in eve_profiles and p.serial is None:
            out.append(issue_at(lab.located, ("places", name, "profile"),
                                f"place {name} runs EVE-OS (profile {p.profile}), which registers with the board's "
                                "own hardware serial: the lab file must say it",
                                "add serial: (dmidecode -s system-serial-number on the board) to the place", key=True))
    need: dict[str, int] = {}
    for d in loaded.devices:
        need[d.profile_name] = need.get(d.profile_name, 0) + 1
    for profile, n in sorted(need.items()):
        places = [name for name, p in lab.lab.places.items() if p.profile == profile]
        where = next(("fleet", i, "profile") for i, e in enumerate(loaded.scenario.fleet) if e.profile == profile)
        if len(places) < n:
            out.append(issue_at(loaded.located, where, f"the lab {lab.lab.lab!r} has {len(places)} place(s) with profile "
                                f"{profile}, the scenario needs {n}", f"add places to {path} or run fewer devices"))
        bare = sorted(name for name in places if lab.lab.places[name].media is None)
        if bare:
            out.append(issue_at(loaded.located, where, f"place(s) {', '.join(bare)} of {path} have no "
                                "media driver, so eden cannot write the board's image and CONFIG for the run",
                                "give them media: {device: ...}, or media: {manual: {}} to write it by hand (docs/lab.md)"))
    for where, profiles, stage in _tamper_stages(loaded):
        for profile in profiles:
            lacking = [name for name, p in lab.lab.places.items() if p.profile == profile
                       and (p.tamper is None or stage not in p.tamper.stages())]
            if lacking:
                out.append(issue_at(loaded.located, where, f"'tamper' stage {stage} needs a tamper command for it, and "
                                    f"place(s) {', '.join(sorted(lacking))} of {path} have none",
                                    "add tamper." + stage + " to those places (docs/lab.md), or run the step on qemu"))
    for where, profiles, method in _device_methods(loaded, ACTION_TABLE):
        if method == "tamper":
            continue  # by stage, above
        for profile in profiles:
            lacking = [name for name, p in lab.lab.places.items() if p.profile == profile and method not in place_methods(p)]
            if lacking:
                out.append(issue_at(loaded.located, where, f"'{where[2]}' needs '{method}' on the board, and "
                                    f"place(s) {', '.join(sorted(lacking))} of {path} have no driver for it",
                                    "give those places the driver (docs/lab.md), or run the step on another backend"))
    return out


Where = tuple[str, int, str]
"""A step's or fault's place in the scenario: ``("steps" | "faults", index, action)``."""


def _device_methods(loaded: LoadedScenario, table: Mapping[str, Action]) -> list[tuple[Where, list[str], str]]:
    """(where, profiles it acts on, device-port method) of every step and fault that acts on the board itself."""
    return [(where, _target_profiles(loaded, step.target), row.method) for where, step in _steps_and_faults(loaded)
            if (row := table.get(step.action)) is not None and row.port == "device"]


def _tamper_stages(loaded: LoadedScenario) -> list[tuple[Where, list[str], str]]:
    """(where, profiles it acts on, stage) of every ``tamper`` step and fault."""
    return [(where, _target_profiles(loaded, step.target), str(step.args.stage)) for where, step in _steps_and_faults(loaded)
            if step.action == "tamper"]


def _steps_and_faults(loaded: LoadedScenario) -> list[tuple[Where, StepBase]]:
    return [((kind, i, step.action), step)
            for kind, items in (("steps", loaded.scenario.steps), ("faults", loaded.scenario.faults))
            for i, step in enumerate(items)]


def _target_profiles(loaded: LoadedScenario, target: Target) -> list[str]:
    """Profiles of the devices ``target`` names, before sampling (a ``fraction``/``count`` sample
    may pick any of them, and any place of a device's profile may be the one leased for it); every
    profile of the fleet when the target names no device (nothing to resolve it by: be strict)."""
    devices = loaded.matching(target) or loaded.devices
    return sorted({d.profile_name for d in devices})


def _assignable(pools: list[list[str]], free: set[str]) -> bool:
    """Whether each pool can get a distinct free place (pools of one profile are the same list)."""
    left = set(free)
    for pool in pools:
        pick = next((p for p in pool if p in left), None)
        if pick is None:
            return False
        left.discard(pick)
    return True


NOT_ON_BOARDS = ("not yet qualified on a lab's boards: the controller's reboot and shutdown commands and its faults "
                 "run on qemu and emulated; run this step there")
_BOARD_NOT_YET = frozenset({"reboot", "shutdown", "outage", "restore", "answer_503", "hang", "refuse_certs"})


class BoardControllerPort(QemuControllerPort):
    """As on ``qemu`` (no apps), less what has not been run against a lab's boards yet: the
    controller's reboot and shutdown commands and its faults (:data:`NOT_ON_BOARDS`)."""

    capabilities = QemuControllerPort.capabilities - _BOARD_NOT_YET
    refusals = {**QemuControllerPort.refusals, **{m: NOT_ON_BOARDS for m in _BOARD_NOT_YET}}
    backend_name = "board"


NO_BOARD_HOOK = "a board's firmware and agents are not the harness's to change: run this step on qemu or sim"


class BoardDevicePort(LiveDevicePort["BoardBackend"]):
    """Power is the place's power driver, links its link driver (what each place has is checked
    against the lab file at validation: :func:`input_issues`)."""

    capabilities = frozenset({"power_on", "power_off", "power_cycle", "set_links", "tamper"})
    refusals = {"hang": NO_BOARD_HOOK, "crash": NO_BOARD_HOOK, "low_disk_space": NO_BOARD_HOOK,
                "tpm_failure": NO_BOARD_HOOK, "graceful_poweroff": NO_LPS}
    backend_name = "board"

    def _boards(self, devices: list[str]) -> list[_Board]:
        return [self.be.boards[d] for d in devices]

    def power_on(self, devices: list[str], spread: float) -> None:
        for d, delay in zip(self._boards(devices), self.be.spread_delays(spread, len(devices))):
            self.be.later(delay, partial(self.be.board_on, d))

    def power_off(self, devices: list[str]) -> None:
        for d in self._boards(devices):
            self.be.background(self.be.board_off(d))

    def power_cycle(self, devices: list[str], off_for: float) -> None:
        for d in self._boards(devices):
            self.be.background(self.be.board_cycle(d, off_for))

    def tamper(self, devices: list[str], stage: str) -> None:
        """Applied by the place's tamper command before the board's next power-on (it must be off)."""
        for d in self._boards(devices):
            d.pending_tamper.append(stage)

    def set_links(self, devices: list[str], ports: list[str] | None, up: bool) -> None:
        for d in self._boards(devices):
            own = [n.name for n in d.spec.profile.nics]
            wanted = [p for p in (ports or own) if p in own]
            self.be.background(self.be.board_links(d, wanted, up))


class BoardBackend(QemuBackend):
    """Reuses the ``qemu`` backend's reference image, slots, controller set-up and console parsing;
    the hardware is the lab's."""

    name = "board"
    controller_port_type = BoardControllerPort
    device_port_type = BoardDevicePort  # type: ignore[assignment]
    work_prefix = "eden-board-"

    def __init__(self, loaded: LoadedScenario, *, seed: int, timeline: Timeline | None = None,
                 out_dir: Path | None = None) -> None:
        super().__init__(loaded, seed=seed, timeline=timeline, out_dir=out_dir)
        self.lab: LoadedLab | None = None
        self.boards: dict[str, _Board] = {}
        self.leases: list[HeldLease] = []
        self._store: LeaseStore | None = None
        self._assigned: dict[str, str] = {}
        self.labgrid_leases: list[LabgridLease] = []

    # -------------------------------------------------------------------------------- setup --
    async def _setup(self) -> None:
        from eden.image.build import build, default_cache
        from eden.image.layout import Image
        from eden.lab.load import load_lab

        path = lab_path()
        if path is None:
            raise InvalidInput.at(str(self.loaded.path), 0, 0, f"--backend board needs a lab file ({LAB_ENV} is not set)",
                                  "give --lab lab.yaml (docs/lab.md)")
        self.lab = await asyncio.to_thread(load_lab, path)
        await self._plan_eve()  # invalid EVE input is refused before any place is leased
        await self._lease_places()
        scale = max((self.lab.lab.places[b].timing_scale for b in self._assigned.values()), default=1.0)
        self.accel = "board"
        self._scale = float(scale)
        if len(self.eve_ids) == len(self.loaded.devices):
            return  # every board runs EVE-OS: no reference image to build
        t0 = time.monotonic()
        image_dir = await asyncio.to_thread(build, default_cache())
        self.image = Image.load(image_dir)
        self.image_seconds = time.monotonic() - t0
        await self._build_slots()
        self.timeline.add(0.0, "harness", None, "image_ready",
                          {"dir": str(image_dir), "seconds": round(self.image_seconds, 2), "accel": self.accel,
                           "deadline_scale": self._scale})

    async def _lease_places(self) -> None:
        """One place per device, of the device's profile, leased for the run (heartbeat thread)."""
        from eden.lab.leases import HeldLease, LeaseStore

        assert self.lab is not None
        lab = self.lab
        wait = float(os.environ.get(WAIT_ENV, DEFAULT_WAIT))
        owner = f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()} {self.loaded.scenario.name}"
        self._store = store = LeaseStore(lab.db_path)
        allowed = [p.strip() for p in os.environ.get(PLACES_ENV, "").split(",") if p.strip()]
        unknown = sorted(set(allowed) - set(lab.lab.places))
        if unknown:
            raise InfrastructureError(f"{PLACES_ENV}: no place {', '.join(unknown)} in {lab.path}")
        health_run = bool(os.environ.get(HEALTH_ENV))
        pools: list[list[str]] = []
        for dev in self.loaded.devices:
            candidates = [n for n, p in lab.lab.places.items() if p.profile == dev.profile_name and (not allowed or n in allowed)]
            states = {st.place: st for st in await asyncio.to_thread(store.states, candidates)}
            usable = candidates if health_run else [n for n in candidates if states[n].health != "bad"]
            if len(usable) < sum(1 for d in self.loaded.devices if d.profile_name == dev.profile_name):
                bad = "; ".join(f"{n}: {states[n].reason or 'bad'}" for n in candidates if states[n].health == "bad")
                raise InfrastructureError(f"{dev.id}: not enough healthy places with profile {dev.profile_name} in lab "
                                          f"{lab.lab.lab!r}: {len(usable)} of {len(candidates)} healthy"
                                          + (f" (bad: {bad})" if bad else ""))
            pools.append(usable)
        deadline = self.run_deadline.child(wait)
        leases = await self._reserve_all(store, pools, owner, deadline, not health_run)
        for dev, lease in zip(self.loaded.devices, leases):
            held = HeldLease(store, lease, heartbeat=lab.lab.leases.heartbeat_every, ttl=lab.lab.leases.ttl, owner=owner)
            held.__enter__()
            self.leases.append(held)
            self._assigned[dev.id] = lease.place
            self.timeline.add(0.0, "harness", dev.id, "place_leased",
                              {"place": lease.place, "lab": lab.lab.lab, "expires_at": lease.expires_at})

    async def _reserve_all(self, store: LeaseStore, pools: list[list[str]], owner: str, deadline: Deadline,
                           healthy_only: bool) -> list[Lease]:
        """A place from each pool, all at once or none: a run never sits on some places while it
        waits for others (two runs would then wait for each other until their deadlines). Waits
        on this loop, so a stop request (Ctrl-C, SIGTERM) ends the wait at once."""
        from eden.lab.leases import PlaceBusy

        assert self.lab is not None
        ttl = self.lab.lab.leases.ttl
        everything = sorted({p for pool in pools for p in pool})

        def attempt() -> list[Lease] | None:
            now = time.time()
            free = {st.place for st in store.states(everything)
                    if (st.lease is None or st.lease.expires_at <= now) and not (healthy_only and st.health == "bad")}
            if not _assignable(pools, free):  # wait without touching the leases (no churn in the lease log)
                return None
            got: list[Lease] = []
            try:
                for pool in pools:
                    taken = {lease.place for lease in got}
                    got.append(store.reserve_any([p for p in pool if p not in taken], owner, ttl, healthy_only=healthy_only))
                return got
            except PlaceBusy:  # another run was faster: give back what this attempt took
                for lease in got:
                    store.release(lease)
                return None

        waited = False
        while True:
            leases = await asyncio.to_thread(attempt)
            if leases is not None:
                return leases
            if deadline.expired():
                held = [f"{st.place} by {st.lease.owner}" for st in store.states(everything) if st.lease is not None]
                raise InfrastructureError(f"no free places for this run in time (held: {'; '.join(held) or 'none'}; "
                                          f"bad places are not used): wait longer with {WAIT_ENV}")
            if not waited:
                waited = True
                self.timeline.add(0.0, "harness", None, "waiting_for_places", {"places": everything})
            await asyncio.sleep(min(0.5 + (os.getpid() % 5) / 10, max(0.05, deadline.remaining())))

    def _device_serial(self, dev: DeviceSpec) -> str:
        """The board's own serial where the lab file gives it (an EVE board registers with it)."""
        assert self.lab is not None
        return self.lab.lab.places[self._assigned[dev.id]].serial or super()._device_serial(dev)

    async def _init_controller(self, ctrl_dir: Path) -> None:
        """The controller binds where the lab file says; its certificate names the address the
        boards dial (``advertise``) and any per-port address a place gives."""
        from eden.controller.setup import init

        assert self.lab is not None
        ctl = self.lab.lab.controller
        self.controller_listen = ctl.listen
        advertise = ctl.advertised_host
        extra = sorted({h for p in self.lab.lab.places.values() for h in (p.controller_hosts or {}).values()} - {advertise})
        await asyncio.to_thread(init, ctrl_dir, server=f"{advertise}:{ctl.port or 8443}", sans=extra, tofu=True)

    async def _prepare_devices(self) -> None:
        from eden.lab.drivers import console_for, power_for

        assert self.lab is not None
        # A restarted controller must come back where the boards' CONFIG points.
        self.controller_listen = f"{self.lab.lab.controller.host}:{self.api_addr[1]}"
        advertise = self.lab.lab.controller.advertised_host
        await self._register_content()
        await self._register_eve_content()
        async for dev, serial, home, spec in self._provision(0.5):
            name = self._assigned[dev.id]
            place = self.lab.lab.places[name]
            resources = await self._labgrid_acquire(name, place)
            d = _Board(dev, serial, home, name, place, power_for(name, place, resources))
            hosts = place.controller_hosts or {}
            ports = [(nic.name, hosts.get(nic.name, advertise)) for nic in dev.profile.nics]
            server = ports[0][1] if ports else advertise
            write: MediaWriter
            if dev.id in self.eve_ids:
                write = await self._eve_media(d, server)
            else:
                files = await self._reference_config(dev, home, spec, server, ports)
                write = partial(self._reference_media, d, files)
            if place.ssh is not None:
                # as an EVE admin opens EVE's debug SSH: the configItem with the key (the run's own)
                pub = (home / "id_ed25519.pub").read_text().strip()
                await asyncio.to_thread(self.client().set_items, {"debug.enable.ssh": pub}, serial)
            await d.power.off(self.run_deadline.child(60.0))  # a known state: a killed job may have left it on
            await self._write_media(d, write)
            d.console = console_for(name, place, self.lab, home / "console", on_line=partial(self._board_line, d),
                                    on_event=partial(self._console_event, d), resources=resources)
            d.console.expected_alive = False  # until its power-on
            await d.console.connect(self.run_deadline.child(30.0))
            self.boards[dev.id] = d
            self.devices[dev.id] = d  # type: ignore[assignment]
            self.by_serial[serial] = d  # type: ignore[assignment]
            self.timeline.add(self.now(), "harness", dev.id, "board_ready", {"place": name, "power": d.power.describe()})

    async def _labgrid_acquire(self, name: str, place: Place) -> LabgridResources | None:
        """A labgrid place (docs/lab.md "labgrid places"): after eden's own lease, labgrid's lock
        on it, and the power and serial ports its exporter offers."""
        if place.labgrid is None:
            return None
        from eden.lab.labgrid import LabgridClient, LabgridLease

        lease = LabgridLease(LabgridClient.for_place(name, place.labgrid), self.run_deadline.child(place.labgrid.timeout * 2))
        resources = await asyncio.to_thread(lease.acquire)
        self.labgrid_leases.append(lease)
        self.timeline.add(self.now(), "harness", None, "labgrid_acquired",
                          {"place": name, "labgrid": place.labgrid.place, "coordinator": place.labgrid.coordinator,
                           "console": resources.console_url})
        return resources

    async def _eve_media(self, d: _Board, server: str) -> MediaWriter:
        """An EVE board's storage: the live image (``EDEN_EVE_IMAGE``) with EVE's CONFIG from the
        device-config files, as on ``qemu`` (eden.backends.qemu_eve) but dialling the lab address
        (spec §1: EVE reads ``server`` from CONFIG). Returns the writer for the media."""
        from eden.backends.qemu_eve import write_device_config
        from eden.qemu.eve_image import prepare_eve_disk

        assert self.eve is not None
        live = self.eve.live_image
        d.timings["power_on_to_boot_marker"] = []
        (d.home / "config" / "server").write_text(f"{server}:{self.api_addr[1]}\n")
        await self._ssh_key(d.home)
        # eden cannot know the board's PCRs: its first quote's template is approved (docs/controller.md)
        await asyncio.to_thread(self.client().set_device_learn, d.serial, True)
        size = int(d.spec.profile.storage.size)

        async def write(target: Path, grow: bool) -> None:
            # grown sparsely for IMGB and P3 on a stand-in's image file; else EVE's storage-init grows it
            await asyncio.to_thread(prepare_eve_disk, live, target, size=size if grow else None)
            await asyncio.to_thread(write_device_config, target, d.home / "config", d.serial)
            self.timeline.add(self.now(), "harness", d.id, "eve_config_written",
                              {"place": d.place_name, "server": f"{server}:{self.api_addr[1]}", "soft_serial": d.serial})
        return write

    async def _reference_media(self, d: _Board, files: dict[str, bytes], target: Path, grow: bool) -> None:
        """The reference image with its CONFIG files and the device's first slot onto ``target``
        (always the image's own size: its partitions fill it)."""
        await self._factory_install(d.spec, target, files)

    async def _staged(self, d: _Board, write: MediaWriter, deliver: Callable[[Path], Awaitable[None]]) -> None:
        """The image made in the device's folder of the run (0700; not grown), handed to
        ``deliver``, then removed whatever happened: it holds the onboarding key."""
        image = d.home / "media.raw"
        try:
            await write(image, False)
            await deliver(image)
        finally:
            image.unlink(missing_ok=True)

    async def _ask_to_write(self, d: _Board, manual: ManualMedia, image: Path) -> None:
        """A person writes the image to the board's storage and confirms at the terminal."""
        from eden.lab.person import ask_person

        text = (manual.prompt or MANUAL_MEDIA_PROMPT).replace("{place}", d.place_name).replace("{image}", str(image))
        await ask_person(text, place=d.place_name, what="media written", deadline=self.run_deadline.child(manual.timeout))

    async def _write_media(self, d: _Board, write: MediaWriter) -> None:
        """The image and CONFIG onto the board's storage, through its media driver, with the board
        off (the media is switched to the host for the write and back after)."""
        from eden.lab.shell import run_shell

        media = d.place.media
        if media is None:
            raise InfrastructureError(f"place {d.place_name}: no media driver, so eden cannot write the image and CONFIG "
                                      "(give it media: {manual: {}} to write the image by hand: docs/lab.md)")
        assert self.lab is not None
        if media.manual is not None:
            await self._staged(d, write, partial(self._ask_to_write, d, media.manual))
            self.timeline.add(self.now(), "harness", d.id, "media_written", {"place": d.place_name, "device": "manual"})
            return
        assert media.device is not None  # exactly one of device, manual (eden.lab.model.Media)
        if media.to_host:
            await run_shell(media.to_host, place=d.place_name, what="media to_host", deadline=self.run_deadline.child(60.0))
        target = self.lab.resolve(media.device)
        if _is_block_device(target):  # a real disk: built aside, then every byte copied (no holes left stale)
            await self._staged(d, write, partial(_copy_to_device, dev=target))
        else:  # an image file (a stand-in board's storage): written in place, sparsely
            await write(target, True)
        if media.to_board:
            await run_shell(media.to_board, place=d.place_name, what="media to_board", deadline=self.run_deadline.child(60.0))
        self.timeline.add(self.now(), "harness", d.id, "media_written", {"place": d.place_name, "device": str(target)})

    # ------------------------------------------------------------------------------ power --
    async def board_on(self, d: _Board) -> None:
        if d.powered:
            return
        try:
            await self._board_tamper(d)
            d.banner_expected = True
            d.output_since_power = False
            d.off_at = None
            d.switching_on = True  # its first lines may come before the switch's answer does
            await d.power.on(self.run_deadline.child(60.0))
        except InfrastructureError as exc:
            self._failure = f"{d.id} (place {d.place_name}): power-on failed: {exc}"
            return
        finally:
            d.switching_on = False
        d.powered = True
        d.con.expected_alive = True
        d.powered_at = now = self.now()
        d.boots += 1
        self._touch(d.id)
        self.timeline.add(now, "device", d.id, "power_on", {"place": d.place_name, "power": d.power.name})
        self.timeline.add(now, "device", d.id, "boot_start", {"cause": "power_on"})
        self.background(self._confirm_on(d, d.boots))

    async def _board_tamper(self, d: _Board) -> None:
        """The pending tamper stages, through the place's commands, while the board is off."""
        from eden.lab.shell import run_shell

        while d.pending_tamper:
            stage = d.pending_tamper.pop(0)
            tamper = d.place.tamper
            cmd = getattr(tamper, stage, None) if tamper is not None else None
            assert tamper is not None and cmd, "validation refuses a stage the place has no command for"
            out = await run_shell(cmd, place=d.place_name, what=f"the tamper {stage} command",
                                  deadline=self.run_deadline.child(tamper.timeout))
            self.timeline.add(self.now(), "device", d.id, "tamper_applied",
                              {"stage": stage, "place": d.place_name, "output": out.decode(errors="replace").strip()[-300:]})

    async def _confirm_on(self, d: _Board, boot: int) -> None:
        """The board must show life on its console: the PDU saying 'done' proves nothing."""
        limit = (d.place.console.first_output if d.place.console is not None else DEFAULT_FIRST_OUTPUT) * self._scale
        await asyncio.sleep(limit)
        if d.powered and d.boots == boot and not d.output_since_power:
            self._failure = (f"{d.id} (place {d.place_name}): power-on not confirmed: no console output {limit:.0f} s after "
                             f"{d.power.describe()} accepted 'on' (is the board powered? is the serial line wired?)")

    async def board_off(self, d: _Board) -> None:
        if not d.powered:
            return
        d.powered = False
        d.con.expected_alive = False  # a board's USB serial chip may lose power with it
        try:
            await d.power.off(self.run_deadline.child(60.0))
        except InfrastructureError as exc:
            self._failure = f"{d.id} (place {d.place_name}): power-off failed: {exc}"
            return
        d.off_at = self.now()
        self.timeline.add(self.now(), "device", d.id, "power_off", {"place": d.place_name})
        self._touch(d.id)

    async def board_cycle(self, d: _Board, off_for: float) -> None:
        await self.board_off(d)
        await asyncio.sleep(off_for)
        await self.board_on(d)

    async def board_links(self, d: _Board, ports: list[str], up: bool) -> None:
        from eden.lab.shell import run_shell

        link = d.place.link
        assert link is not None  # validation refuses set_links for places without one
        for port in ports:
            cmd = (link.command.up if up else link.command.down).replace("{port}", port)
            try:
                await run_shell(cmd, place=d.place_name, what=f"link {port} {'up' if up else 'down'}",
                                  deadline=self.run_deadline.child(link.command.timeout))
            except InfrastructureError as exc:
                self._failure = f"{d.id} (place {d.place_name}): {exc}"
                return
            self.timeline.add(self.now(), "device", d.id, "link_up" if up else "link_down", {"port": port})

    # ---------------------------------------------------------------------------- observe --
    def _board_line(self, d: _Board, line: str) -> None:
        if d.powered or d.switching_on:
            d.output_since_power = True
        elif d.off_at is not None and self.now() - d.off_at > OFF_GRACE and line.strip():
            self._failure = (f"{d.id} (place {d.place_name}): the board still prints on its console "
                             f"{self.now() - d.off_at:.0f} s after {d.power.describe()} switched it off: power-off not confirmed")
        if self._banner(d) in line:
            if d.banner_expected:
                d.banner_expected = False
            elif d.powered or d.switching_on:
                cause = "reboot" if d.reboot_announced else "reset"
                d.boots += 1
                d.powered_at = self.now()
                if cause == "reset":
                    d.resets += 1
                    self.timeline.add(self.now(), "console", d.id, "unexpected_reset", {"banner": line.strip()[:120]})
                self.timeline.add(self.now(), "device", d.id, "boot_start", {"cause": cause})
            d.reboot_announced = False
        elif ('"agent_exit"' in line and '"reboot"' in line) or REBOOTING in line:
            d.reboot_announced = True
        elif PANIC in line:
            self.timeline.add(self.now(), "console", d.id, "kernel_panic", {"line": line.strip()[:200]})
        self._console_line(d, line)  # type: ignore[arg-type]

    def _banner(self, d: _Board) -> str:
        """The first line of every boot: the reference image's first marker, or on an EVE board
        its profile's ``console.boot_marker`` (the kernel's banner)."""
        if d.id in self.eve_ids:
            return d.spec.profile.console.boot_marker or BOOT_BANNER
        return BOOT_BANNER

    def _console_event(self, d: _Board, kind: str, data: dict[str, object]) -> None:
        self.timeline.add(self.now(), "console", d.id, kind, {"place": d.place_name, **data})

    async def _poll_consoles(self) -> None:
        """A console that could not be re-attached ends the run (*broken*); a board that talks to
        the controller while it should be off means the PDU did not switch it."""
        while True:
            for held in self.leases:
                if held.lost:
                    self._failure = (f"the lease on place {held.lease.place} was lost ({held.lost_error}): another holder "
                                     "may be using the board now")
            for d in self.boards.values():
                con = d.console
                if con is not None and con.closed and isinstance(con.error, InfrastructureError):
                    self._failure = f"{d.id} (place {d.place_name}): {con.error}"
                if not d.powered and d.off_at is not None:
                    seen = self._ctrl_view.get(d.id, {}).get("last_seen")
                    if seen and self.clock.from_epoch(float(seen)) > d.off_at + OFF_GRACE * self._scale:
                        self._failure = (f"{d.id} (place {d.place_name}): the board reached the controller after "
                                         f"{d.power.describe()} switched it off: power-off not confirmed")
            await asyncio.sleep(0.5)

    # ---------------------------------------------------------------------------- cleanup --
    async def ssh_check(self, d: _Board) -> dict[str, object]:
        """Log in to the board over SSH with the run's key (the one its CONFIG authorised) and read
        what it runs: the health gate's last check (docs/lab.md "Health")."""
        from eden.runtime.ssh import Ssh, SshKey

        ssh_cfg = d.place.ssh
        if ssh_cfg is None:
            return {"checked": False, "reason": "no ssh in the lab file"}
        key = SshKey(d.home / "id_ed25519", (d.home / "id_ed25519.pub").read_text().strip())
        ssh = Ssh(ssh_cfg.port, key, host=ssh_cfg.host, user=ssh_cfg.user)
        try:
            await ssh.connect(self.run_deadline.child(60.0 * self._scale))
            res = await ssh.run("cat /etc/eden/release.json 2>/dev/null || uname -a", self.run_deadline.child(30.0))
        finally:
            await ssh.close()
        if res.rc != 0:
            raise InfrastructureError(f"{d.id} (place {d.place_name}): SSH works but the release query failed (rc={res.rc})")
        return {"checked": True, "release": res.stdout.strip()[:500]}

    def run(self, main: RunGen, *, duration: float | None, progress: Callable[[float], None] | None = None) -> None:
        """As every real-time backend; a health run (``EDEN_LAB_HEALTH``) ends with the SSH check."""
        if os.environ.get(HEALTH_ENV):
            main = self._then_ssh_check(main)
        super().run(main, duration=duration, progress=progress)

    def _then_ssh_check(self, main: RunGen) -> RunGen:
        yield from main
        done: list[bool] = []
        self.background(self._ssh_checks(done))
        while not done:
            yield Sleep(0.2)

    async def _ssh_checks(self, done: list[bool]) -> None:
        try:
            for d in self.boards.values():
                if not d.powered:
                    continue
                try:
                    info = await self.ssh_check(d)
                except InfrastructureError as exc:
                    self.timeline.add(self.now(), "harness", d.id, "ssh_check", {"ok": False, "error": str(exc)[:300]})
                    self._failure = f"health check: {exc}"
                    continue
                self.timeline.add(self.now(), "harness", d.id, "ssh_check", {"ok": True, **info})
        finally:
            done.append(True)

    async def _stop_devices(self) -> None:
        """Boards are left switched off; a failing switch here does not hide the run's result."""
        for d in self.boards.values():
            with contextlib.suppress(Exception):
                await d.power.off(self.run_deadline.child(30.0))
            d.powered = False

    async def _close_devices(self) -> None:
        assert self.work is not None
        logs = self.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for d in self.boards.values():
            if d.console is not None:
                with contextlib.suppress(Exception):
                    await d.console.close()
                for src, name in ((d.home / "console" / "console.log", f"console-{d.id}.log"),
                                  (d.home / "console" / "console.raw", f"console-{d.id}.raw")):
                    if src.is_file():
                        with contextlib.suppress(OSError):
                            shutil.copy2(src, logs / name)
        for lg in self.labgrid_leases:  # labgrid's locks first, then eden's leases that cover them
            with contextlib.suppress(Exception):
                await asyncio.to_thread(lg.release)
        self.labgrid_leases.clear()
        for held in self.leases:
            with contextlib.suppress(Exception):
                held.__exit__(None, None, None)
        self.leases.clear()
        if self._store is not None:
            self._store.close()

    def stats(self) -> BackendStats:
        out = super().stats()
        timings: RealTimeTimings = {"image_ready_s": round(self.image_seconds, 2), "accel": "board",
                                    "devices": {d.id: d.timings for d in self.boards.values()}}
        out["timings"] = timings
        out["places"] = dict(self._assigned)
        return out
