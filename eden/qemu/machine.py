"""One QEMU virtual machine: command line, power, network faults, QMP events.

A :class:`Machine` owns a run directory; everything it creates lives there (logs, console capture,
TPM state, firmware variables) or, for unix sockets whose path would be too long, in a short
private directory under ``/tmp`` removed on close. Host ports are chosen by the kernel (SSH and other
forwards are bound to port 0 and read back from QEMU), so machines in parallel never collide.

QEMU is started paused (``-S``); the harness connects QMP and the serial console and only then lets
the guest run, so the console capture starts at the first byte.

Power follows real hardware: a guest reboot is a real reset (no ``-no-reboot``), ``reset`` is the reset
button (QMP ``system_reset``), ``power_off`` is QMP ``quit`` (then SIGKILL), ``pull_plug`` is a power
cut (SIGKILL). A QEMU that dies on its own or stops answering QMP raises
:class:`~eden.errors.InfrastructureError` from the next operation: that is the harness's problem,
never a verdict on the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from qemu.qmp import ExecuteError, QMPClient

from eden.runtime.procs import Managed, ProcessGroup
from eden.runtime.deadline import Deadline
from eden.errors import InfrastructureError
from eden.runtime.console import Console
from eden.qemu.hostcheck import Accel, HostTools, check_host, probe_accel
from eden.qemu.swtpm import Swtpm

#: Children carry this variable (value: the run directory), so leaks can be found in /proc.
RUN_ENV = "EDEN_QEMU_RUN"
#: The first NIC's QMP name (for :meth:`Machine.set_link`).
NIC = "net0"
#: The n-th NIC's user-mode network is 10.0.(2+n).0/24, the host being .2 in it (QEMU's default for n=0).
FIRST_SUBNET = 2
_SOCK_LIMIT = 100  # sun_path is 108 bytes on Linux


@dataclass(frozen=True)
class Disk:
    path: Path
    format: Literal["raw", "qcow2"] = "raw"
    interface: Literal["nvme", "virtio", "ide"] = "virtio"  # virtio-blk; a module in Debian's cloud kernel
    snapshot: bool = False  # writes go to a temporary overlay, the image stays untouched
    readonly: bool = False
    cache: Literal["writeback", "unsafe"] = "writeback"
    """QEMU's cache mode. ``unsafe`` ignores the guest's flushes, so a guest fsync costs no host
    fsync. A power cut (QEMU killed) loses exactly what it loses under ``writeback``: the guest's
    own page cache; every write the guest issued is already in the host's page cache. Only a host
    crash would lose more, which no scenario models."""


@dataclass(frozen=True)
class Nic:
    """One network port: a user-mode (slirp) network of its own behind a virtio NIC.

    Each port has its own subnet, so the guest picks the port it talks through by the host address
    it dials (:attr:`host`): the subnet route chooses the interface, no policy routing needed.
    ``port`` is the profile's name for it (``eth0``, ``wwan0``), ``index`` its place on the PCI bus
    (the guest's ``eth<index>``); the QMP name is ``net<index>``.
    """

    port: str
    index: int
    mac: str
    hostfwd: bool = False  # this NIC carries the config's host forwards (SSH)

    @property
    def id(self) -> str:
        return f"net{self.index}"

    @property
    def subnet(self) -> str:
        return f"10.0.{FIRST_SUBNET + self.index}.0/24"

    @property
    def host(self) -> str:
        """The host (and so the controller) as the guest reaches it through this port."""
        return port_host(self.index)


def port_host(index: int) -> str:
    """The host's address on the user network of the NIC at ``index``."""
    return f"10.0.{FIRST_SUBNET + index}.2"


def stable_mac(*parts: str) -> str:
    """A locally administered MAC in QEMU's 52:54:00 range, the same for the same parts every run."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def port_nics(ports: list[str], *parts: str) -> list[Nic]:
    """One NIC per port, in order; the first carries the host forwards; MACs from ``parts`` + port."""
    if len(ports) != len(set(ports)) or not ports:
        raise ValueError(f"port names must be unique and not empty: {ports}")
    if len(ports) > 250 - FIRST_SUBNET:
        raise ValueError(f"too many ports ({len(ports)})")
    return [Nic(p, i, stable_mac(*parts, p), hostfwd=i == 0) for i, p in enumerate(ports)]


@dataclass
class MachineConfig:
    """What to boot and how; defaults suit a small Linux guest under TCG."""

    name: str = "vm"
    kernel: Path | None = None  # direct kernel boot; else firmware boots the first disk
    initrd: Path | None = None
    append: str = "console=ttyS0"
    disks: list[Disk] = field(default_factory=list)
    memory_mb: int = 256
    cpus: int = 1
    machine: str = "q35"
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    tpm: bool = True
    tpm_state: Path | None = None  # default: <run_dir>/tpm (persisting it is the caller's choice)
    ovmf: bool | Path = False  # True: the host's OVMF; a path: that firmware code image
    ovmf_vars: Path | None = None  # template copied into the run dir (default: next to the code)
    nic: bool = True  # False: no network at all
    nic_model: str = "virtio-net-pci"
    mac: str = "52:54:00:12:34:56"  # of the single default NIC when ``nics`` is empty
    #: one NIC per port (:func:`port_nics`); empty: one NIC ``eth0`` with ``mac`` and the host forwards
    nics: list[Nic] = field(default_factory=list)
    hostfwd: dict[str, int] = field(default_factory=lambda: {"ssh": 22})  # name -> guest TCP port
    #: name -> fixed host port for that forward (a stand-in board's SSH, named in a lab file); else any free port
    hostfwd_host: dict[str, int] = field(default_factory=dict)
    pvpanic: bool = True  # guest kernel panics become GUEST_PANICKED events
    #: what QEMU does on a guest panic; "none" leaves it to the guest (its panic= reboot), like hardware
    on_panic: Literal["none", "pause", "shutdown", "exit-failure"] = "none"
    watchdog: str | None = None  # e.g. "i6300esb"; expiry gives a WATCHDOG event
    on_watchdog: Literal["reset", "shutdown", "poweroff", "pause", "inject-nmi", "none"] = "reset"
    probe_kernel: Path | None = None  # kernel for the KVM probe when not booting one directly
    qemu: str = "qemu-system-x86_64"
    extra_args: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MachineEvent:
    """A QMP event, or one the harness adds (``QEMU_EXITED``); ``at`` is time.monotonic()."""

    name: str
    data: dict[str, Any]
    at: float
    qemu_timestamp: float | None = None


class Machine:
    """One VM. Use as ``async with Machine(cfg, run_dir) as vm: await vm.power_on(deadline)``."""

    def __init__(
        self,
        config: MachineConfig,
        run_dir: Path,
        *,
        on_event: Callable[[MachineEvent], None] | None = None,
        on_console_line: Callable[[str], None] | None = None,
        on_console_bytes: Callable[[bytes], None] | None = None,
    ) -> None:
        self.config = config
        self.on_console_bytes = on_console_bytes
        self.run_dir = run_dir
        self.on_event = on_event
        self.on_console_line = on_console_line
        self.group = ProcessGroup(run_dir / "logs")
        self.accel: Accel | None = None
        self.ports: dict[str, int] = {}
        self.events: list[MachineEvent] = []
        self.console: Console | None = None
        self.tools: HostTools | None = None
        self._sock_dir: Path | None = None
        self._own_sock_dir = False
        self._qemu: Managed | None = None
        self._qmp: QMPClient | None = None
        self._tpm: Swtpm | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._guest_off = False
        self._failure: InfrastructureError | None = None
        self._exited = asyncio.Event()
        self.boots = 0
        self.links_down: set[str] = set()  # QMP names of the NICs whose cable is pulled

    # --- state ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._qemu is not None and self._qemu.running

    @property
    def pid(self) -> int | None:
        return self._qemu.pid if self._qemu is not None else None

    @property
    def ssh_port(self) -> int:
        return self.ports["ssh"]

    @property
    def sock_dir(self) -> Path:
        if self._sock_dir is None:
            if len(str(self.run_dir / "s" / "console.sock")) < _SOCK_LIMIT:
                self._sock_dir = self.run_dir / "s"
                self._sock_dir.mkdir(parents=True, exist_ok=True)
            else:
                # A short path for the sockets (sun_path is 108 bytes); EDEN_SOCK_DIR moves it (tests).
                self._sock_dir = Path(tempfile.mkdtemp(prefix="eden-vm-", dir=os.environ.get("EDEN_SOCK_DIR", "/tmp")))
                self._own_sock_dir = True
        return self._sock_dir

    @property
    def nics(self) -> list[Nic]:
        """The NICs this machine has (none when ``config.nic`` is False)."""
        c = self.config
        if not c.nic:
            return []
        return list(c.nics) or [Nic("eth0", 0, c.mac, hostfwd=True)]

    def nic_id(self, name: str) -> str:
        """The QMP name of a NIC given by its port name (``eth1``) or its QMP name (``net1``)."""
        for n in self.nics:
            if name in (n.port, n.id):
                return n.id
        return name  # unknown: QEMU answers with an error (InfrastructureError "refused")

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure
        if not self.running:
            raise InfrastructureError(f"{self.config.name}: the machine is not running")

    # --- command line --------------------------------------------------------------------------

    def command(self, accel: Accel) -> list[str]:
        """The full QEMU command line for this config (started paused, ``-S``)."""
        c = self.config
        sd = self.sock_dir
        argv = [
            self.tools.qemu if self.tools else c.qemu,
            "-name", c.name,
            "-machine", c.machine,
            "-accel", accel,
            "-m", str(c.memory_mb),
            "-smp", str(c.cpus),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-S",
            "-chardev", f"socket,id=qmp,path={sd / 'qmp.sock'},server=on,wait=off",
            "-mon", "chardev=qmp,mode=control",
            "-chardev", f"socket,id=con0,path={sd / 'console.sock'},server=on,wait=off",
            "-serial", "chardev:con0",
        ]
        if accel == "kvm":
            argv += ["-cpu", "host"]
        if c.kernel is not None:
            argv += ["-kernel", str(c.kernel), "-append", c.append]
            if c.initrd is not None:
                argv += ["-initrd", str(c.initrd)]
        if c.ovmf:
            code = self.tools.ovmf if self.tools and self.tools.ovmf else Path(str(c.ovmf))
            argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                     "-drive", f"if=pflash,format=raw,unit=1,file={self.run_dir / 'OVMF_VARS.fd'}"]
        for i, d in enumerate(c.disks):
            opts = f"file={d.path},format={d.format},if=none,id=disk{i}"
            opts += ",snapshot=on" if d.snapshot else ""
            opts += ",readonly=on" if d.readonly else ""
            opts += f",cache={d.cache}" if d.cache != "writeback" else ""
            argv += ["-drive", opts]
            dev = {"nvme": f"nvme,drive=disk{i},serial=eden{i}", "virtio": f"virtio-blk-pci,drive=disk{i}",
                   "ide": f"ide-hd,drive=disk{i}"}[d.interface]
            argv += ["-device", dev + (",bootindex=" + str(i) if c.kernel is None else "")]
        for n in self.nics:
            fwd = "".join(f",hostfwd=tcp:127.0.0.1:{c.hostfwd_host.get(name, 0)}-:{port}"
                          for name, port in c.hostfwd.items()) if n.hostfwd else ""
            argv += ["-netdev", f"user,id={n.id},net={n.subnet},host={n.host}{fwd}",
                     "-device", f"{c.nic_model},netdev={n.id},id={n.id}-nic,mac={n.mac}"]
        if self._tpm is not None:
            argv += self._tpm.qemu_args()
        if c.pvpanic:
            argv += ["-device", "pvpanic"]
        argv += ["-action", f"panic={c.on_panic}"]
        if c.watchdog:
            argv += ["-device", c.watchdog, "-action", f"watchdog={c.on_watchdog}"]
        return argv + list(c.extra_args)

    # --- power ---------------------------------------------------------------------------------

    async def power_on(self, deadline: Deadline) -> None:
        """Start swtpm and QEMU, connect QMP and the console, read the forwarded ports, run the guest."""
        if self.running:
            raise InfrastructureError(f"{self.config.name}: already powered on")
        await self._teardown()  # leftovers of a QEMU that died on its own
        c = self.config
        self.tools = check_host(qemu=c.qemu, tpm=c.tpm, ovmf=c.ovmf, kernel=c.kernel, initrd=c.initrd)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if c.accel == "auto":
            self.accel = await probe_accel(c.kernel or c.probe_kernel, self.tools.qemu, deadline.child(3.0))
        else:
            self.accel = c.accel
        if c.ovmf:
            self._prepare_ovmf_vars()
        self._stopping = False
        self._guest_off = False
        self._failure = None
        self._exited = asyncio.Event()
        env = {RUN_ENV: str(self.run_dir)}
        try:
            if c.tpm:
                assert self.tools.swtpm and self.tools.swtpm_setup
                self._tpm = Swtpm(c.tpm_state or self.run_dir / "tpm", self.sock_dir / "swtpm.sock",
                                  swtpm=self.tools.swtpm, swtpm_setup=self.tools.swtpm_setup)
                await self._tpm.start(self.group, deadline, env)
            argv = self.command(self.accel)
            (self.run_dir / "qemu.cmdline").write_text(" ".join(argv) + "\n")
            self._qemu = await self.group.start("qemu", argv, env=env)
            self._tasks.append(asyncio.get_running_loop().create_task(self._watch(self._qemu)))
            await self._connect_qmp(deadline)
            self.console = Console(self.sock_dir / "console.sock", self.run_dir, self.on_console_line,
                                   on_bytes=self.on_console_bytes)
            await self.console.connect(deadline, lambda: self.running)
            if any(n.hostfwd for n in self.nics) and c.hostfwd:
                await self._read_ports(deadline)
            for name in sorted(self.links_down):
                await self.qmp("set_link", {"name": name, "up": False}, deadline=deadline)
            await self.qmp("cont", deadline=deadline)
            self.boots += 1
        except BaseException:
            await self._teardown()
            raise

    async def reset(self, deadline: Deadline) -> None:
        """The reset button: the guest restarts at once (a RESET event follows)."""
        await self.qmp("system_reset", deadline=deadline)

    async def pause(self, deadline: Deadline) -> None:
        await self.qmp("stop", deadline=deadline)

    async def cont(self, deadline: Deadline) -> None:
        await self.qmp("cont", deadline=deadline)

    async def set_link(self, up: bool, deadline: Deadline, nic: str = NIC) -> None:
        """Plug or unplug one NIC's cable (the guest sees carrier loss on that port only).

        ``nic`` is a port name (``eth1``) or a QMP name (``net1``); default the first NIC. A cable
        pulled stays pulled across power cycles: on a powered-off machine this only records it, and
        :meth:`power_on` unplugs it again before the guest runs."""
        name = self.nic_id(nic)
        if self._failure is None and not self.running:
            (self.links_down.discard if up else self.links_down.add)(name)
            return
        await self.qmp("set_link", {"name": name, "up": up}, deadline=deadline)
        (self.links_down.discard if up else self.links_down.add)(name)

    async def set_port_link(self, port: str, up: bool, deadline: Deadline) -> None:
        """:meth:`set_link` by port name first: ``set_port_link("eth0", False, d)``."""
        await self.set_link(up, deadline, nic=port)

    async def power_off(self, deadline: Deadline) -> None:
        """QMP ``quit``, wait for QEMU to exit, SIGKILL if it does not; always cleans up."""
        self._stopping = True
        if self.console is not None:
            self.console.expected_alive = False
        try:
            if self.running and self._qmp is not None and self._failure is None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._qmp.execute("quit"), deadline.child(3.0).remaining())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._exited.wait(), deadline.child(5.0).remaining())
        finally:
            await self._teardown()

    async def pull_plug(self) -> None:
        """A power cut: SIGKILL QEMU, no goodbye to the guest. The TPM state survives."""
        self._stopping = True
        if self.console is not None:
            self.console.expected_alive = False
        await self._teardown()

    async def wait_exit(self, deadline: Deadline) -> int | None:
        """Wait for QEMU to exit on its own (guest power-off); None if it is still running."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._exited.wait(), deadline.remaining())
        return None if self._qemu is None or self._qemu.running else self._qemu.proc.returncode

    async def close(self) -> None:
        """Power off if still on, and release everything (idempotent)."""
        if self.running:
            await self.power_off(Deadline(8.0))
        await self._teardown()
        await self.group.close()
        if self._own_sock_dir and self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = None
            self._own_sock_dir = False

    async def __aenter__(self) -> "Machine":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- QMP -----------------------------------------------------------------------------------

    async def qmp(self, cmd: str, args: dict[str, Any] | None = None, *, deadline: Deadline) -> Any:
        """Run one QMP command; a dead or silent QEMU is an InfrastructureError."""
        self._check()
        assert self._qmp is not None
        try:
            return await asyncio.wait_for(self._qmp.execute(cmd, args), max(0.01, deadline.remaining()))
        except asyncio.TimeoutError:
            self._fail(f"QEMU did not answer QMP {cmd!r} in time (hung?)")
        except ExecuteError as exc:  # QEMU answered with an error: the command was wrong, QEMU is fine
            raise InfrastructureError(f"{self.config.name}: QMP {cmd!r} refused: {exc}") from exc
        except Exception as exc:
            if self._failure is not None:
                raise self._failure from exc
            self._fail(f"QMP {cmd!r} failed: {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")

    async def _connect_qmp(self, deadline: Deadline) -> None:
        path = str(self.sock_dir / "qmp.sock")
        client = QMPClient(self.config.name)
        client.logger.setLevel(logging.CRITICAL)  # its disconnect noise is ours to report
        while True:
            try:
                await asyncio.wait_for(client.connect(path), max(0.01, deadline.remaining()))
                break
            except asyncio.TimeoutError:
                raise InfrastructureError("QMP handshake with QEMU timed out") from None
            except Exception:
                if not self.running:
                    raise InfrastructureError(
                        f"QEMU exited at start:\n{self.group.log_tail('qemu')}"
                    ) from None
                if deadline.expired():
                    raise InfrastructureError(f"QMP socket {path} not ready in time") from None
                await asyncio.sleep(0.01)
        self._qmp = client
        self._tasks.append(asyncio.get_running_loop().create_task(self._events(client.events)))

    async def _events(self, listener: Any) -> None:
        async for msg in listener:
            listener.clear()  # the default listener also keeps a history; we keep our own
            ts = msg.get("timestamp") or {}
            event = MachineEvent(
                str(msg.get("event")), dict(msg.get("data") or {}), time.monotonic(),
                ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6 if ts else None,
            )
            if event.name == "SHUTDOWN" and event.data.get("guest"):
                self._guest_off = True  # QEMU exits next; that is the guest's doing
                if self.console is not None:
                    self.console.expected_alive = False
            self._emit(event)

    def _emit(self, event: MachineEvent) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    async def _read_ports(self, deadline: Deadline) -> None:
        text = await self.qmp("human-monitor-command", {"command-line": "info usernet"}, deadline=deadline)
        found = parse_hostfwd(str(text))
        for name, guest_port in self.config.hostfwd.items():
            if guest_port not in found:
                raise InfrastructureError(f"QEMU did not report the host port forwarded to guest port {guest_port}")
            self.ports[name] = found[guest_port]

    # --- failure and cleanup -------------------------------------------------------------------

    def _fail(self, message: str) -> None:
        tail = self.group.log_tail("qemu")
        self._failure = InfrastructureError(f"{self.config.name}: {message}" + (f"\nqemu log:\n{tail}" if tail else ""))
        raise self._failure

    async def _watch(self, proc: Managed) -> None:
        rc = await proc.proc.wait()
        self._exited.set()
        expected = self._stopping or self._guest_off
        if not expected and self._failure is None:
            tail = self.group.log_tail("qemu")
            self._failure = InfrastructureError(
                f"{self.config.name}: QEMU exited unexpectedly (exit {rc})" + (f"\nqemu log:\n{tail}" if tail else "")
            )
        self._emit(MachineEvent("QEMU_EXITED", {"rc": rc, "expected": expected}, time.monotonic()))

    async def _teardown(self) -> None:
        self._stopping = True  # whatever we kill from here on is not a surprise
        if self._qemu is not None:
            self._qemu.kill()  # quit was asked already, or this is a power cut
            await self._qemu.stop(grace=2.0)
        if self._qmp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._qmp.disconnect(), 2.0)
            self._qmp = None
        if self.console is not None:
            await self.console.close()
        if self._tpm is not None:
            await self._tpm.stop()
            self._tpm = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        for name in ("qmp.sock", "console.sock"):
            if self._sock_dir is not None:
                (self._sock_dir / name).unlink(missing_ok=True)

    def _prepare_ovmf_vars(self) -> None:
        target = self.run_dir / "OVMF_VARS.fd"
        if target.exists():
            return  # firmware settings persist across power cycles, like NVRAM
        template = self.config.ovmf_vars
        if template is None:
            code = self.tools.ovmf if self.tools and self.tools.ovmf else Path(str(self.config.ovmf))
            template = code.with_name(code.name.replace("CODE", "VARS"))
        if not template.is_file():
            raise InfrastructureError(f"OVMF variables template {template} does not exist")
        shutil.copyfile(template, target)


def parse_hostfwd(info_usernet: str) -> dict[int, int]:
    """Guest port -> host port from HMP ``info usernet`` (rows marked HOST_FORWARD)."""
    ports: dict[int, int] = {}
    for line in info_usernet.splitlines():
        fields = line.split()
        if len(fields) >= 6 and "HOST_FORWARD" in fields[0] and fields[0].startswith("TCP"):
            with contextlib.suppress(ValueError):
                ports[int(fields[5])] = int(fields[3])
    return ports
