"""Backend ``qemu``: one QEMU VM per device booting the reference image, with swtpm.

What is real here: the controller process (as on ``emulated``), a VM per device (QEMU, TCG unless
KVM works) booting the reference image (docs/reference-image.md: measured A/B boot into swtpm,
dm-verity root, the device agent started by the image's init), its serial console, user
networking with one NIC per profile port, each on its own subnet (the guest reaches the host's
controller as ``10.0.2.2`` through eth0, ``10.0.3.2`` through eth1, ...; CONFIG ``port-urls`` tells
the agent), power (QEMU process) and each NIC's link (QMP ``set_link``).

Per device, in the run's working directory: a sparse copy of the cached image's ``disk.img`` (the
cache is never written), its CONFIG partition filled with ``eden controller device-config`` output,
the agent spec and an SSH key, and the VM's run directory (TPM state survives power cycles). The
console (``console-<id>.log`` / ``.raw``), QEMU's and swtpm's logs are copied into ``logs/``.

Timeline sources: ``console`` (the image's ``EDEN-BOOT:`` markers), ``device`` (the agent's JSON
event lines on the console), ``qmp`` (QMP events: RESET, SHUTDOWN, ...), ``controller``,
``harness``. Measured wall times (power-on to agent-start, to onboarded) are in ``stats()``.

A QEMU that dies on its own or a console that goes away is an :class:`InfrastructureError`.

Devices whose profile says ``qemu.image: eve`` boot a real EVE-OS live image (``EDEN_EVE_IMAGE``)
instead, with OVMF and swtpm, its CONFIG partition written from the same device-config files;
the rule, its checks and what differs: :mod:`eden.backends.qemu_eve`, docs/real-eve.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eden.backends.base import BackendStats, RealTimeTimings
from eden.backends.live import LiveBackend, LiveDevice
from eden.backends.live_ports import NO_LPS, AdminControllerPort, LiveDevicePort
from eden.agent.faults import FAULTS_IN_IMAGE, Fault
from eden.backends.ports import DEVICE_METHODS
from eden.errors import InfrastructureError
from eden.scenario.load import DeviceSpec

if TYPE_CHECKING:
    from eden.agent.spec import AgentSpec
from eve.images import CHANGES_PCRS

GUEST_HOST = "10.0.2.2"  # the host as QEMU user networking shows it to the guest
GUEST_BOOT_SECONDS = 0.5
"""The agent's own boot delay inside the VM: the VM really booted already."""
POWER_ON_TIMEOUT = 60.0
SSH_TIMEOUT = 30.0  # seconds to log in to a running VM and write its fault inbox (x the TCG factor)
RESET_COALESCE = 2.0
"""Seconds after a power-on or reset within which a further QMP RESET is the same boot: one guest
reboot can show as more than one RESET (the kernel's reboot, then the firmware's)."""
MEMORY_MB = 512
_MARK = re.compile(r"EDEN-BOOT: (\S+)(.*)")


class _Vm(LiveDevice):
    def __init__(self, spec: DeviceSpec, serial: str, home: Path) -> None:
        super().__init__(spec, serial, home)
        self.disk = home / "disk.img"
        self.machine: Any = None
        self.powered_at: float | None = None  # run time of the last power-on
        self.timings: dict[str, list[float]] = {"power_on_to_agent_start": [], "power_on_to_onboarded": []}
        self.onboarded_seen = False
        self.pending_tamper: list[str] = []
        self.consoles = 0
        self.nics: list[Any] = []  # eden.qemu.machine.Nic, one per profile port


NO_APPS = ("the reference image runs no app runtime (no VM, container or process tree for an app "
           "instance yet), so an app it reported would not be real; run app scenarios on sim or emulated")


class QemuControllerPort(AdminControllerPort):
    """docs/qemu.md: everything the controller does for the emulated backend reaches the reference
    image's agent, the controller faults included (the controller is a real process: stopped for an
    outage, switched to 503 or hang); apps are refused (:data:`NO_APPS`)."""

    capabilities = AdminControllerPort.capabilities - {"set_app"}
    refusals = {**AdminControllerPort.refusals, "set_app": NO_APPS}
    backend_name = "qemu"


class QemuDevicePort(LiveDevicePort["QemuBackend"]):
    """Power is the QEMU process, links are QMP ``set_link``, tamper changes what the VM boots next,
    ``hang`` and ``crash`` a line written over SSH into the agent's fault inbox inside the VM
    (eden/agent/faults.py): the model's watchdog and kdump rules then act and the VM really reboots.
    The image has no watchdog daemon or kdump of its own (docs/qemu.md)."""

    capabilities = DEVICE_METHODS - {"graceful_poweroff", "low_disk_space", "tpm_failure"}
    refusals = {"graceful_poweroff": NO_LPS}
    backend_name = "qemu"

    def hang(self, devices: list[str], agent: str) -> None:
        self._send(devices, Fault(action="hang", agent=agent))

    def crash(self, devices: list[str], kind: str, agent: str) -> None:
        self._send(devices, Fault.model_validate({"action": "crash", "kind": kind, "agent": agent}))

    def _send(self, devices: list[str], fault: Fault) -> None:
        vms = self._vms(devices)
        if any(d.id in self.be.eve_ids for d in vms):
            self.be.fail(f"{fault.action} works on the reference image only, not on an EVE device (docs/real-eve.md)")
            return
        for d in vms:
            self.be.background(self.be.send_fault(d, fault))

    def _vms(self, devices: list[str]) -> list[_Vm]:
        return [self.be.devices[d] for d in devices]

    def power_on(self, devices: list[str], spread: float) -> None:
        for d, delay in zip(self._vms(devices), self.be.spread_delays(spread, len(devices))):
            self.be.later(delay, partial(self.be.power_on, d))

    def power_off(self, devices: list[str]) -> None:
        for d in self._vms(devices):
            self.be.background(self.be.power_off(d))

    def power_cycle(self, devices: list[str], off_for: float) -> None:
        for d in self._vms(devices):
            self.be.background(self.be.power_cycle(d, off_for))

    def tamper(self, devices: list[str], stage: str) -> None:
        """Applied at the device's next power-on, while it is off (a disk in use is not changed)."""
        vms = self._vms(devices)
        if any(d.id in self.be.eve_ids for d in vms):
            self.be.fail("tamper works on the reference image only, not on an EVE device (docs/real-eve.md)")
            return
        for d in vms:
            d.pending_tamper.append(stage)

    def set_links(self, devices: list[str], ports: list[str] | None, up: bool) -> None:
        """One NIC per profile port; no port list: every port of the device."""
        for d in self._vms(devices):
            own = [n.port for n in d.nics]
            wanted = list(ports) if ports else own
            self.be.background(self.be.set_link(d, up, [p for p in wanted if p in own]))


class QemuBackend(LiveBackend[_Vm]):
    name = "qemu"
    controller_port_type = QemuControllerPort
    device_port_type = QemuDevicePort
    work_prefix = "eden-qemu-"
    # boot.time / onboarding.time count from the real power-on (or reset), not from the agent's
    # start inside the booted VM; the agent's own boot_start is kept as agent_boot_start.
    device_event_names = {"boot_start": "agent_boot_start"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.image: Any = None
        self.accel = "tcg"
        self._scale = 1.0  # set with the accelerator (_setup, _setup_eve)
        self.image_seconds = 0.0
        self.slots: dict[str, Any] = {}  # scenario image name -> eden.image.slots.Slot
        self.approved_pcr13: dict[str, str] = {}  # image name -> the release's PCR 13 (spec §5)
        self.eve: Any = None  # eden.backends.qemu_eve.EvePlan when the fleet has EVE devices
        self.eve_ids: set[str] = set()  # devices booting a real EVE-OS image (docs/real-eve.md)
        self._eve_marked: dict[str, int] = {}  # EVE device -> the boot whose boot_marker was noted

    @property
    def deadline_scale(self) -> float:
        """2 under TCG (``EDEN_QEMU_TCG_SCALE``), 1 under KVM: see :func:`eden.qemu.hostcheck.tcg_deadline_scale`."""
        return self._scale

    def _use_accel(self, accel: str) -> None:
        """The probed accelerator, and with it the deadline factor (an invalid EDEN_QEMU_TCG_SCALE
        is refused here, at setup, not when the first deadline is read)."""
        from eden.qemu.hostcheck import tcg_deadline_scale

        self.accel = accel
        self._scale = tcg_deadline_scale() if accel == "tcg" else 1.0

    # -------------------------------------------------------------------------------- setup --
    async def _setup(self) -> None:
        """Host tools, then the image (built once, cached by its inputs), then the accelerator."""
        from eden.image.build import build, default_cache
        from eden.image.layout import Image
        from eden.qemu.hostcheck import check_host, probe_accel

        tools = check_host(tpm=True)
        if await self._setup_eve(tools.qemu):
            return  # every device boots a real EVE-OS image: no reference image to build
        missing = [t for t in ("mke2fs", "ssh-keygen", "cp") if shutil.which(t) is None]
        if missing:
            raise InfrastructureError(f"the host is missing what the QEMU backend needs: {', '.join(missing)}"
                                      " (run scripts/install-system-deps as root)")
        t0 = time.monotonic()
        image_dir = await asyncio.to_thread(build, default_cache())
        self.image = Image.load(image_dir)
        self.image_seconds = time.monotonic() - t0
        self._use_accel(await probe_accel(self.image.kernel, tools.qemu))  # 3 s; EDEN_QEMU_ACCEL=tcg|kvm skips it
        await self._build_slots()
        self.timeline.add(0.0, "harness", None, "image_ready",
                          {"dir": str(image_dir), "seconds": round(self.image_seconds, 2), "accel": self.accel,
                           "deadline_scale": self._scale})

    async def _build_slots(self) -> None:
        """One root-filesystem slot per scenario image (docs/reference-image.md "Slots"): what the
        controller hands out for base-OS updates and what the factory puts into IMGA.

        On this backend an image's ``behaviour`` is a property of its slot, acted out by the real
        guest (a kernel crash, a network that never comes up, a different measurement); the agent's
        model is told every image is good. A ``changes-pcrs`` image is approved with the PCR 13 of
        the same release built good, which is what its release notes would have promised."""
        from eden.image.slots import build_slot

        t0 = time.monotonic()
        for name, img in self.loaded.scenario.images.items():
            behaviour = img.behaviour
            if img.path is not None:
                raise InfrastructureError(f"image {name}: 'path' images are for a real EVE-OS profile (docs/real-eve.md)")
            slot = await asyncio.to_thread(build_slot, self.image, name=name, version=str(img.version), behaviour=behaviour)
            self.slots[name] = slot
            approved = slot
            if behaviour == CHANGES_PCRS:
                approved = await asyncio.to_thread(build_slot, self.image, name=name, version=str(img.version), behaviour="good")
            self.approved_pcr13[name] = approved.pcr13
        self.timeline.add(self.now(), "harness", None, "slots_ready",
                          {"seconds": round(time.monotonic() - t0, 2),
                           "slots": {n: {"sha256": s.sha256, "size": s.size, "pcr13": s.pcr13} for n, s in self.slots.items()}})

    async def _register_content(self) -> None:
        """The controller's datastore holds every slot; the device downloads what its config names."""
        for name, slot in self.slots.items():
            version = str(self.loaded.scenario.images[name].version)
            await asyncio.to_thread(self.client().add_content, name, slot.path, version=version, pcr13=self.approved_pcr13[name], upload=True)

    async def _init_controller(self, ctrl_dir: Path) -> None:
        from eden.controller.setup import init

        from eden.qemu.machine import port_host

        # The certificate names every address the guests use (the host on each port's own user
        # network, eth0's first); the port is set after serve starts.
        most = max((len(d.profile.nics) for d in self.loaded.devices), default=1)
        hosts = [port_host(i) for i in range(max(most, 1))]
        # Real TPMs: firmware PCRs are learned at the first quote, PCR 13 must be a registered
        # release (docs/controller.md "TOFU templates"; spec §5).
        await asyncio.to_thread(init, ctrl_dir, server=f"{hosts[0]}:8443", sans=hosts[1:], tofu=True)

    async def _prepare_devices(self) -> None:
        from eden.qemu.machine import port_nics

        # A restarted controller must come back where the guests' CONFIG points.
        self.controller_listen = f"127.0.0.1:{self.api_addr[1]}"
        await self._register_content()
        await self._register_eve_content()
        async for dev, serial, home, spec in self._provision(GUEST_BOOT_SECONDS):
            if dev.id in self.eve_ids:
                await self._prepare_eve_device(dev, serial, home)
                continue
            d = _Vm(dev, serial, home)
            # One NIC per profile port, each on its own user network: the agent reaches the
            # controller through a port by dialling the host's address on that port's subnet.
            d.nics = port_nics([nic.name for nic in dev.profile.nics], serial)
            files = await self._reference_config(dev, home, spec, GUEST_HOST, [(n.port, n.host) for n in d.nics])
            await self._factory_install(dev, d.disk, files)
            d.machine = self._machine(d)
            self.devices[dev.id] = d
            self.by_serial[serial] = d

    async def _reference_config(self, dev: DeviceSpec, home: Path, spec: AgentSpec, server: str,
                                port_hosts: list[tuple[str, str]]) -> dict[str, bytes]:
        """The CONFIG files of a reference-image device (``home/config``, which already holds
        ``eden controller device-config`` output): the controller as the device dials it
        (``server``, and per port the host it dials through that port), the agent spec, the
        hostname and an SSH key of the run's own."""
        # The slot acts out each image's behaviour, so the model sees only good images; and the
        # real download and write gate the model's timers (eden/agent/platform.py), so its own
        # size-based estimate of their duration is set to nothing (size 1 byte).
        spec = spec.model_copy(update={"images": {
            n: e.model_copy(update={"behaviour": "good", "size": 1}) for n, e in spec.images.items()}})
        cfg = home / "config"
        (cfg / "server").write_text(f"{server}:{self.api_addr[1]}\n")
        (cfg / "port-urls").write_text("".join(f"{port}=https://{host}:{self.api_addr[1]}\n" for port, host in port_hosts))
        (cfg / "spec.json").write_text(spec.model_dump_json(indent=2))
        (cfg / "hostname").write_text(f"{dev.id}\n")
        (cfg / "authorized_keys").write_bytes(await self._ssh_key(home))
        return {p.name: p.read_bytes() for p in cfg.iterdir()}

    async def _ssh_key(self, home: Path) -> bytes:
        """The run's SSH key for one device (``home/id_ed25519``); returns the public half."""
        key = home / "id_ed25519"
        await _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], "ssh-keygen")
        return key.with_suffix(".pub").read_bytes()

    async def _factory_install(self, dev: DeviceSpec, disk: Path, files: dict[str, bytes]) -> None:
        """The reference image's disk at ``disk`` (sparse), the device's first image in IMGA (B
        stays unused) and its CONFIG partition: from here on only the device's agent writes it."""
        from eden.image.layout import write_config
        from eden.image.slots import install_slot_offline

        assert self.image is not None
        await _run(["cp", "--sparse=always", str(self.image.disk), str(disk)], "copying the image's disk")
        await asyncio.to_thread(install_slot_offline, self.image, disk, "A", self.slots[dev.image])
        await asyncio.to_thread(write_config, self.image, disk, files)

    def _machine(self, d: _Vm) -> Any:
        from eden.image.layout import DISK_INTERFACE, TCG_CPU
        from eden.qemu.machine import Disk, Machine, MachineConfig

        extra = ["-smbios", f"type=1,serial={d.serial}"]
        if self.accel == "tcg":
            extra = ["-cpu", TCG_CPU, *extra]
        cfg = MachineConfig(
            name=d.id, kernel=self.image.kernel, initrd=self.image.initrd, append=self.image.info["cmdline"],
            # cache=unsafe: a guest fsync (the agent saves its state on every change) is then no
            # host fdatasync, which on an ext4 host busy with other VMs' writes waits for their
            # dirty data too, with the agent's event loop blocked meanwhile (docs/qemu.md).
            disks=[Disk(d.disk, "raw", DISK_INTERFACE, cache="unsafe")], memory_mb=MEMORY_MB, accel=self.accel, tpm=True,
            tpm_state=d.home / "tpm", nics=list(d.nics), extra_args=extra,
        )
        return Machine(cfg, d.home / "vm", on_event=lambda ev, d=d: self._qmp_event(d, ev),
                       on_console_line=lambda line, d=d: self._console_line(d, line))

    # ------------------------------------------------------------------------------ power --
    async def power_on(self, d: _Vm) -> None:
        if d.powered:
            return
        try:
            await self._apply_tamper(d)
            await d.machine.power_on(self.run_deadline.child(POWER_ON_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - QEMU or swtpm failing to start is the harness's problem
            self._failure = f"{d.id}: power-on failed: {exc}"
            return
        d.powered = True
        d.powered_at = now = self.now()  # one instant: timings are measured from the power_on event's time
        d.boots += 1
        self._touch(d.id)
        self.timeline.add(now, "device", d.id, "power_on", {"accel": self.accel, "pid": d.machine.pid})
        self.timeline.add(now, "device", d.id, "boot_start", {"cause": "power_on"})

    async def _apply_tamper(self, d: _Vm) -> None:
        """The attacker's pending changes, made while the VM is off (docs/qemu.md "Measured boot
        and tamper"): the firmware, kernel command line, root filesystem or CONFIG it boots next."""
        from eden.qemu.tamper import TamperTarget, apply_tamper

        while d.pending_tamper:
            stage = d.pending_tamper.pop(0)
            cfg = d.machine.config
            res = await asyncio.to_thread(apply_tamper, stage, TamperTarget(
                image=self.image, disk=d.disk, directory=d.home, append=cfg.append, extra_args=tuple(cfg.extra_args)))
            cfg.append, cfg.extra_args = res.append, list(res.extra_args)  # every later boot too
            self.timeline.add(self.now(), "device", d.id, "tamper_applied",
                              {"stage": stage, "pcrs": list(res.pcrs), "detail": res.detail})

    async def power_off(self, d: _Vm) -> None:
        """A power cut (SIGKILL QEMU); the disk and the TPM state stay."""
        if not d.powered:
            return
        d.powered = False
        await d.machine.pull_plug()
        self.timeline.add(self.now(), "device", d.id, "power_off", {})
        self._touch(d.id)

    async def power_cycle(self, d: _Vm, off_for: float) -> None:
        await self.power_off(d)
        await asyncio.sleep(off_for)
        await self.power_on(d)

    async def send_fault(self, d: _Vm, fault: Fault) -> None:
        """Append the fault to the agent's inbox inside the VM over SSH (the run's key, which the
        CONFIG partition authorised). A VM that is off has no agent to take it: nothing is sent, as
        a node that is off ignores a fault on the simulator."""
        from eden.runtime.ssh import Ssh, SshKey

        if not d.powered or d.machine is None:
            self.timeline.add(self.now(), "harness", d.id, "fault_sent", {**fault.model_dump(exclude_none=True), "powered": False})
            return
        key = SshKey(d.home / "id_ed25519", (d.home / "id_ed25519.pub").read_text().strip())
        ssh = Ssh(d.machine.ssh_port, key)
        try:
            await ssh.connect(self.run_deadline.child(SSH_TIMEOUT * self._scale))
            res = await ssh.run(f"cat >> {FAULTS_IN_IMAGE}", self.run_deadline.child(SSH_TIMEOUT), stdin=fault.line().encode())
        except InfrastructureError as exc:
            self._failure = f"{d.id}: the {fault.action} fault could not be sent over SSH: {exc}"
            return
        finally:
            await ssh.close()
        if res.rc != 0:
            self._failure = f"{d.id}: writing {FAULTS_IN_IMAGE} failed (rc={res.rc}): {res.stderr[-300:]}"
            return
        self.timeline.add(self.now(), "harness", d.id, "fault_sent", {**fault.model_dump(exclude_none=True), "powered": True})

    async def set_link(self, d: _Vm, up: bool, ports: list[str]) -> None:
        """QMP ``set_link`` on each named port's NIC (a powered-off VM keeps it for its next power-on)."""
        try:
            for port in ports:
                await d.machine.set_link(up, self.run_deadline.child(10.0), nic=port)
        except InfrastructureError as exc:
            self._failure = str(exc)

    # ---------------------------------------------------------------------------- observe --
    def _qmp_event(self, d: _Vm, ev: Any) -> None:
        t = ev.at - self.clock.mono0
        data = {k: v for k, v in ev.data.items() if k not in ("t", "source", "device", "what")}
        self.timeline.add(t, "qmp", d.id, str(ev.name), data)
        if ev.name == "RESET":
            if d.powered_at is not None and t - d.powered_at < RESET_COALESCE:
                return
            d.boots += 1
            d.powered_at = t
            self.timeline.add(t, "device", d.id, "boot_start", {"cause": "reset"})
        elif ev.name == "QEMU_EXITED" and not ev.data.get("expected") and d.powered:
            d.powered = False
            tail = d.machine.group.log_tail("qemu") if d.machine is not None else ""
            self._failure = f"{d.id}: QEMU exited unexpectedly (rc={ev.data.get('rc')}): {tail}"
        elif ev.name == "SHUTDOWN" and ev.data.get("guest"):
            d.powered = False  # the guest powered itself off
            self._touch(d.id)

    def _console_line(self, d: _Vm, line: str) -> None:
        if d.id in self.eve_ids:
            self._eve_console_line(d, line)
            return
        m = _MARK.search(line)
        if m is not None:
            name, rest = m[1], m[2].strip()
            fields = dict(kv.split("=", 1) for kv in (name + " " + rest).split() if "=" in kv)
            now = self.now()
            data: dict[str, Any] = {"marker": name.split("=")[0], **fields}
            if d.powered_at is not None:
                data["since_power_on"] = round(now - d.powered_at, 3)
            self.timeline.add(now, "console", d.id, "boot_marker", data)
            if name == "agent-start" and d.powered_at is not None:
                d.timings["power_on_to_agent_start"].append(round(now - d.powered_at, 3))
            return
        start = line.find("{")
        if start >= 0 and self._device_line(d, line[start:], at=self.now()):  # host time: the guest clock drifts
            if '"what":"onboarded"' in line.replace(" ", "") and not d.onboarded_seen and d.powered_at is not None:
                d.onboarded_seen = True
                d.timings["power_on_to_onboarded"].append(round(self.now() - d.powered_at, 3))

    async def _poll_consoles(self) -> None:
        """A console that goes away while its VM runs is an infrastructure error."""
        while True:
            for d in self.devices.values():
                con = d.machine.console if d.machine is not None else None
                if d.powered and con is not None and con.closed and con.expected_alive and d.machine.running:
                    self._failure = f"{d.id}: the serial console was lost ({con.error or 'EOF'})"
            await asyncio.sleep(0.5)

    async def _poll_loop(self) -> None:
        self.background(self._poll_consoles())
        await super()._poll_loop()

    async def _refresh(self) -> None:
        await super()._refresh()
        self._note_eve_onboarding()

    # ----------------------------------------------------------------- real EVE-OS devices --
    # docs/real-eve.md "Running scenarios on EVE"; the rule and the checks: eden/backends/qemu_eve.py.

    async def _setup_eve(self, qemu: str) -> bool:
        """The run's EVE devices: the live image (``EDEN_EVE_IMAGE``) and base-OS content checked
        (invalid input, before anything starts), OVMF and mtools present. True when every device
        is an EVE device: the accelerator is then probed here and no reference image is built."""
        from eden.backends.qemu_eve import host_kernel
        from eden.qemu.hostcheck import check_host, probe_accel

        if not await self._plan_eve():
            return False
        await asyncio.to_thread(check_host, qemu=qemu, tpm=True, ovmf=True)
        if len(self.eve_ids) < len(self.loaded.devices):
            return False
        self._use_accel(await probe_accel(host_kernel(), qemu))  # no reference kernel to probe KVM with
        self.timeline.add(0.0, "harness", None, "accelerator", {"accel": self.accel, "deadline_scale": self._scale})
        return True

    async def _plan_eve(self) -> bool:
        """The EVE devices of the run and their live image (``self.eve``, ``self.eve_ids``),
        checked as invalid input before anything starts; False when there are none."""
        from eden.backends.qemu_eve import EVE_IMAGE_ENV, eve_device_ids, eve_plan
        from eden.errors import InvalidInput

        self.eve = await asyncio.to_thread(eve_plan, self.loaded)
        if self.eve is None:
            return False
        self.eve_ids = eve_device_ids(self.loaded)
        if self.eve.content and len(self.eve_ids) < len(self.loaded.devices):
            raise InvalidInput.at(str(self.loaded.path), 0, 0, "images with path: are EVE rootfs images; a fleet that "
                                  "mixes EVE and reference-image devices cannot use them",
                                  "run the EVE devices in a scenario of their own")
        if shutil.which("mcopy") is None:
            raise InfrastructureError("mtools (mcopy) is missing: EVE's CONFIG partition is written with it "
                                      "(run scripts/install-system-deps as root)")
        self.timeline.add(0.0, "harness", None, "eve_image", {
            "env": EVE_IMAGE_ENV, "path": str(self.eve.live_image), "devices": sorted(self.eve_ids),
            "content": {n: str(p) for n, p in self.eve.content.items()}})
        return True

    async def _register_eve_content(self) -> None:
        """EVE rootfs images (scenario images with ``path:``) into the controller's datastore."""
        if self.eve is None:
            return
        for name, path in self.eve.content.items():
            version = str(self.loaded.scenario.images[name].version)
            await asyncio.to_thread(self.client().add_content, name, path, version=version, upload=True)

    async def _prepare_eve_device(self, dev: DeviceSpec, serial: str, home: Path) -> None:
        """A per-VM copy of the live image, grown to the profile's storage size, with the
        device-config files in its CONFIG partition, booted by OVMF with swtpm and the SMBIOS
        serial the controller pre-registered; one NIC per profile port, as for the reference image."""
        from eden.backends.qemu_eve import write_device_config
        from eden.qemu.eve_image import eve_machine_config, prepare_eve_disk
        from eden.qemu.machine import Machine, port_nics

        assert self.eve is not None
        d = _Vm(dev, serial, home)
        d.disk = home / "disk.raw"
        d.timings = {"power_on_to_boot_marker": [], "power_on_to_onboarded": []}
        cfg = home / "config"
        (cfg / "server").write_text(f"{GUEST_HOST}:{self.api_addr[1]}\n")  # eth0's view of the host
        d.nics = port_nics([nic.name for nic in dev.profile.nics], serial)
        await asyncio.to_thread(prepare_eve_disk, self.eve.live_image, d.disk, size=int(dev.profile.storage.size))
        part = await asyncio.to_thread(write_device_config, d.disk, cfg, serial)
        # eden cannot know EVE's PCR values: the first template the device quotes is approved
        # (docs/controller.md "learned templates"), as `eden controller init --learn` does by hand.
        await asyncio.to_thread(self.client().set_device_learn, serial, True)
        mc = eve_machine_config(dev.profile, d.disk, name=dev.id, serial=serial, tpm_state=home / "tpm", accel=self.accel)
        mc.nics = list(d.nics)
        d.machine = Machine(mc, home / "vm", on_event=lambda ev, d=d: self._qmp_event(d, ev),
                            on_console_line=lambda line, d=d: self._console_line(d, line))
        self.devices[dev.id] = d
        self.by_serial[serial] = d
        self.timeline.add(self.now(), "harness", dev.id, "eve_config_written",
                          {"partition": part.number, "server": (cfg / "server").read_text().strip(), "soft_serial": serial})

    def _eve_console_line(self, d: _Vm, line: str) -> None:
        """EVE prints no ``EDEN-BOOT:`` markers or agent lines: the profile's ``console.boot_marker``
        (the kernel's banner) is noted once per boot; the rest stays in the console capture."""
        marker = d.spec.profile.console.boot_marker
        if not marker or marker not in line or d.powered_at is None or self._eve_marked.get(d.id) == d.boots:
            return
        self._eve_marked[d.id] = d.boots
        since = round(self.now() - d.powered_at, 3)
        self.timeline.add(self.now(), "console", d.id, "boot_marker", {"marker": "boot_marker", "text": marker,
                                                                        "since_power_on": since})
        d.timings["power_on_to_boot_marker"].append(since)

    def _note_eve_onboarding(self) -> None:
        """An EVE device is onboarded when the controller says so: its event stream (already in the
        timeline as ``controller``/``onboarded``) gives the time, measured from the power-on, since
        no agent reports it from inside the VM."""
        for dev_id in sorted(self.eve_ids):
            d = self.devices.get(dev_id)
            if d is None or d.onboarded_seen or not self._ctrl_view.get(dev_id, {}).get("onboarded"):
                continue
            d.onboarded_seen = True
            at = next((e.t for e in self.timeline.events
                       if e.device == dev_id and e.source == "controller" and e.what == "onboarded"), self.now())
            if d.powered_at is not None:
                d.timings["power_on_to_onboarded"].append(round(at - d.powered_at, 3))

    # ---------------------------------------------------------------------------- cleanup --
    async def _stop_devices(self) -> None:
        for d in self.devices.values():
            d.powered = False
        await asyncio.gather(*(d.machine.close() for d in self.devices.values() if d.machine is not None),
                             return_exceptions=True)

    async def _close_devices(self) -> None:
        assert self.work is not None
        logs = self.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for d in self.devices.values():
            vm = d.home / "vm"
            pairs = [(vm / "console.log", f"console-{d.id}.log"), (vm / "console.raw", f"console-{d.id}.raw"),
                     (vm / "qemu.cmdline", f"qemu-{d.id}.cmdline")]
            pairs += [(f, f"{d.id}-{f.name}") for f in sorted((vm / "logs").glob("*")) if f.is_file()]
            for src, name in pairs:
                if src.is_file():
                    with contextlib.suppress(OSError):
                        shutil.copy2(src, logs / name)

    def stats(self) -> BackendStats:
        out = super().stats()
        devices = {d.id: d.timings for d in self.devices.values()}
        timings: RealTimeTimings
        if self.eve is not None:
            timings = {"image_ready_s": round(self.image_seconds, 2), "accel": self.accel,
                       "eve_image": str(self.eve.live_image), "eve_devices": sorted(self.eve_ids), "devices": devices}
        else:
            timings = {"image_ready_s": round(self.image_seconds, 2), "accel": self.accel, "devices": devices}
        out["timings"] = timings
        return out


async def _run(argv: list[str], what: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise InfrastructureError(f"{what} failed (rc={proc.returncode}): {out.decode(errors='replace')[-2000:]}")
