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

The controller, views, timeline and run loop are shared with the ``qemu`` backend
(:mod:`eden.backends.live`); this module adds the agent processes, relays and tamper.
"""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

from eden.backends.live import LiveBackend, LiveDevice, eden_command
from eden.backends.live_ports import NO_LPS, LiveDevicePort
from eden.backends.ports import DEVICE_METHODS
from eden.agent.faults import Fault
from eden.agent.state import atomic_write
from eden.backends.netproxy import PortProxy
from eden.runtime.procs import Managed
from eden.errors import InfrastructureError
from eden.scenario.load import DeviceSpec

EXIT_REBOOT = 75  # the agent's "reboot requested" exit code (eden/agent)
EMULATED_BOOT_SECONDS = 3.0
"""How long an emulated device takes from power-on to its agents starting. The hardware profile's
boot time models real hardware; an agent process has no firmware or kernel to wait for."""
REBOOT_GAP = 0.5  # seconds between an agent's exit for a reboot and its restart


class _Device(LiveDevice):
    def __init__(self, spec: DeviceSpec, serial: str, home: Path) -> None:
        super().__init__(spec, serial, home)
        self.state_dir = home / "state"
        self.proxies: dict[str, PortProxy] = {}
        self.proc: Managed | None = None
        self.watch: asyncio.Task[None] | None = None
        self.pending_tamper: list[str] = []
        self.links_down: set[str] = set()
        self.links_file = home / "links-down"  # what the agent's nim reads (eden agent --links-file)
        self.faults_file = home / "faults"  # the agent's fault inbox (eden agent --faults-file)


class EmulatedDevicePort(LiveDevicePort["EmulatedBackend"]):
    """Power is the agent process, each network port a relay, ``hang`` and ``crash`` a line in the
    agent's fault inbox (eden/agent/faults.py: the model's watchdog and kdump rules then act, as on
    the simulator). The agent has no local profile server to take a graceful power-off command."""

    capabilities = DEVICE_METHODS - {"graceful_poweroff", "low_disk_space", "tpm_failure"}
    refusals = {"graceful_poweroff": NO_LPS}
    backend_name = "emulated"

    def _devs(self, devices: list[str]) -> list[_Device]:
        return [self.be.devices[d] for d in devices]

    def power_on(self, devices: list[str], spread: float) -> None:
        for d, delay in zip(self._devs(devices), self.be.spread_delays(spread, len(devices))):
            self.be.later(delay, partial(self.be.power_on, d))

    def power_off(self, devices: list[str]) -> None:
        for d in self._devs(devices):
            self.be.power_off(d)

    def power_cycle(self, devices: list[str], off_for: float) -> None:
        for d in self._devs(devices):
            self.be.power_off(d)
            self.be.later(off_for, partial(self.be.power_on, d))

    def set_links(self, devices: list[str], ports: list[str] | None, up: bool) -> None:
        """Each port's relay stops or resumes relaying, and the agent learns the link state from
        its links file (spec §4: nim sees a link go down; a download with no usable link stalls)."""
        for d in self._devs(devices):
            for name in ports if ports else list(d.proxies):
                if name in d.proxies:
                    d.proxies[name].set_link(up)
                    (d.links_down.discard if up else d.links_down.add)(name)
            atomic_write(d.links_file, "".join(f"{n}\n" for n in sorted(d.links_down)).encode())

    def hang(self, devices: list[str], agent: str) -> None:
        self._send(devices, Fault(action="hang", agent=agent))

    def crash(self, devices: list[str], kind: str, agent: str) -> None:
        self._send(devices, Fault.model_validate({"action": "crash", "kind": kind, "agent": agent}))

    def _send(self, devices: list[str], fault: Fault) -> None:
        """Appended to each device's inbox; an agent that is not running (off, or between two
        boots) never reads it, as a node that is not running ignores a fault on the simulator."""
        for d in self._devs(devices):
            with d.faults_file.open("a", encoding="utf-8") as f:
                f.write(fault.line())
            self.be.timeline.add(self.be.now(), "harness", d.id, "fault_sent", {**fault.model_dump(exclude_none=True), "powered": d.powered})

    def tamper(self, devices: list[str], stage: str) -> None:
        """The attacker changes the disk; the agent measures it at its next boot, which is when
        the change is written (a running agent owns its state directory)."""
        for d in self._devs(devices):
            d.pending_tamper.append(stage)


class EmulatedBackend(LiveBackend[_Device]):
    name = "emulated"
    device_port_type = EmulatedDevicePort
    work_prefix = "eden-emulated-"

    async def _prepare_devices(self) -> None:
        """Pre-register every device, write its spec beside its CONFIG files, and give each NIC a relay."""
        async for dev, serial, home, spec in self._provision(EMULATED_BOOT_SECONDS):
            d = _Device(dev, serial, home)
            (home / "spec.json").write_text(spec.model_dump_json(indent=2))
            for nic in dev.profile.nics:
                proxy = PortProxy(self.api_addr)
                await proxy.start()
                d.proxies[nic.name] = proxy
            self.devices[dev.id] = d
            self.by_serial[serial] = d

    async def _stop_devices(self) -> None:
        for dev in self.devices.values():
            dev.powered = False
            if dev.watch is not None:
                dev.watch.cancel()
        await asyncio.gather(*(d.watch for d in self.devices.values() if d.watch is not None), return_exceptions=True)
        agents = [d.proc for d in self.devices.values() if d.proc is not None]
        await asyncio.gather(*(p.stop(grace=2.0) for p in agents), return_exceptions=True)

    async def _close_devices(self) -> None:
        for dev in self.devices.values():
            for proxy in dev.proxies.values():
                await proxy.close()

    def _on_controller_down(self) -> None:
        for d in self.devices.values():  # the ports refuse connections until it is back
            for proxy in d.proxies.values():
                self.background(proxy.set_upstream(None))

    async def _on_controller_up(self) -> None:
        for d in self.devices.values():
            for proxy in d.proxies.values():
                await proxy.set_upstream(self.api_addr)

    # ----------------------------------------------------------------------------- agents --
    def _agent_argv(self, d: _Device) -> list[str]:
        home = d.home
        argv = eden_command("agent", "--once", "--state-dir", str(d.state_dir), "--spec", str(home / "spec.json"),
                            "--config-dir", str(home / "config"), "--links-file", str(d.links_file),
                            "--faults-file", str(d.faults_file))
        for name, proxy in d.proxies.items():
            argv += ["--port-url", f"{name}=https://127.0.0.1:{proxy.port}"]
        return argv

    async def power_on(self, d: _Device) -> None:
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
                await _check_call(eden_command("agent", "tamper", "--state-dir", str(d.state_dir), "--stage", stage), f"tamper {d.id}")
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

    def power_off(self, d: _Device) -> None:
        if not d.powered:
            return
        d.powered = False
        if d.proc is not None:
            d.proc.kill()
        self.timeline.add(self.now(), "device", d.id, "power_off", {})
        self._touch(d.id)

    def _agent_line(self, d: _Device, line: str) -> None:
        if not self._device_line(d, line):
            self.timeline.add(self.now(), "console", d.id, "agent_output", {"line": line[:500]})


async def _check_call(argv: list[str], what: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise InfrastructureError(f"{what} failed (rc={proc.returncode}): {out.decode(errors='replace')[-2000:]}")
