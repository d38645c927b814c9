"""One EVE node as a sans-I/O state machine: events in, actions out.

The rules of EVE-OS that matter to a controller and to a test harness live here once: boot and
measured boot here, and in EVE's agents (:mod:`eve.agents`) onboarding, config polling, the A/B
base-OS update with its test window and fallback, network port tests, attestation and the vault,
apps, downloads, log upload, reboots and device states. The node makes a fresh set of agents at
every power-on and reset; what survives is :class:`Persist`. Section numbers (``§3``) refer to
``shared/reference/eve-behaviour.md``.

The machine never reads a clock, sleeps, opens a socket or draws from a global random source:

* Inputs are method calls that carry ``now`` (seconds on the driver's clock): :meth:`Node.power_on`,
  :meth:`Node.power_off`, :meth:`Node.on_timer`, :meth:`Node.on_response`, :meth:`Node.tamper`,
  :meth:`Node.hang`, :meth:`Node.links` (which ports have a link).
* Each returns the actions the driver must carry out: :class:`Send` a request to the controller,
  :class:`SetTimer` / :class:`CancelAll` timers, :class:`Reset` the hardware, and :class:`Note`
  timeline records.
* Randomness comes from the ``numpy.random.Generator`` handed in at construction.

The simulator drives it in simulated time (SimPy); the device agent drives it in real time (asyncio).
A timer name is unique per node: setting it again moves it. A response whose request id is unknown
(sent before a reboot) is ignored, which is how in-flight work dies with a power cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from eve.actions import Action, CancelAll, Note, Reset, Send, SetTimer
from eve.agents.attest import Attest
from eve.agents.baseosmgr import BaseOsMgr
from eve.agents.client import Client
from eve.agents.downloader import Downloader
from eve.agents.loguploader import LogUploaderAgent
from eve.agents.nim import Nim
from eve.agents.nodeagent import NodeAgent
from eve.agents.watchdog import WATCHDOG_CHANGE, Watchdog
from eve.agents.zedagent import ZedAgent
from eve.agents.zedmanager import ZedManager
from eve.config_items import GlobalConfig
from eve.dpc import Dpc
from eve.enums import (
    BootReason,
    ConfigGetStatus,
    MaintenanceModeReason,
    PartitionState,
    ZDeviceState,
)
from eve.images import CRASH_ON_BOOT, rootfs_measurement
from eve.logs import LogPersist
from eve.measured_boot import PcrBank, measure_boot
from eve.placement import EVE_MAX_VCPUS, IoMember
from eve.power import POWER, PowerEvent
from eve.send import SendTimeouts
from eve.vocab import KeyedTimer, Phase, Timer, TimerFamily, TimerName
from eve.zboot import Zboot

__all__ = ["Action", "CancelAll", "ImageInfo", "Node", "NodeParams", "Note", "Persist", "Port", "Reset", "Send", "SetTimer"]

# -- constants from the spec ------------------------------------------------------------------------
PANIC_TIMEOUT = 120.0  # §7 kernel panic=120 (eve:pkg/grub/rootfs.cfg); kdump.sh sleeps it too
CRASH_LOOP_BRICK = 5  # consecutive boots that never start the agents: reported as bricked


# -- static description of a node -------------------------------------------------------------------
@dataclass(frozen=True)
class ImageInfo:
    name: str
    version: str
    behaviour: str  # one of eve.images.BEHAVIOURS, already resolved per node
    size: int
    verify_ok: bool = True
    """False: every download of this image fails verification (a corrupt blob in the datastore, §4)."""

    @property
    def rootfs_measurement(self) -> str:
        """What stage-2 GRUB measures into PCR 13 (§1). A changes-pcrs image measures differently
        from the released build the controller approved."""
        return rootfs_measurement(self.name, self.version, self.behaviour)


@dataclass(frozen=True)
class Port:
    name: str
    kind: str
    mgmt: bool
    cost: int
    speed: float


@dataclass
class NodeParams:
    device_id: str
    serial: str
    profile: str
    cores: int
    memory: int
    reserved_memory: int
    tpm: bool
    firmware: str
    ports: tuple[Port, ...]
    boot_time: Callable[[np.random.Generator], float]
    write_speed: float
    images: dict[str, ImageInfo]
    boot_hang: float = 0.0
    hang_per_day: float = 0.0
    write_error: float = 0.0
    smart_power_cycles: bool = False
    """The boot disk reports a SMART power-cycle count (SATA, NVMe), so an unrecorded reset can be
    told apart: POWER_FAIL or KERNEL; without it (virtio, eMMC, SD) it is UNKNOWN (spec §7)."""
    kdump: bool = True
    """A kernel panic is caught by kdump, which records KERNEL (spec §7, eve:pkg/kdump/kdump.sh).
    EVE loads the capture kernel only where GRUB reserves ``crashkernel=`` memory: x86_64 KVM with
    at least 2 GiB (eve:pkg/grub/rootfs.cfg, pkg/dom0-ztools/rootfs/etc/init.d/000-kexec). Without
    it a panic records nothing and the next boot synthesizes its reason."""
    io: tuple[IoMember, ...] = ()
    """The PhysicalIO inventory (the device model) domainmgr assigns adapters from (§8)."""
    eve_max_vcpus: int = EVE_MAX_VCPUS
    """CPUs the CPU allocator keeps for EVE (kernel argument ``eve_max_vcpus``, §8)."""
    app_uuid: Callable[[str], str] = str
    """An app's UUID as the controller names it (its error texts name other apps by it)."""


@dataclass
class Persist:
    """What survives a reboot: GPT attributes, /persist, /config and the TPM's NV state."""

    zboot: Zboot
    uuid: str | None = None
    reboot_record: tuple[BootReason, str] | None = None
    """/persist/boot-reason and reboot-reason: first writer wins; the next nodeagent consumes them."""
    reboot_image: str | None = None
    """/persist/reboot-image: the partition that was running when the reboot reason was written."""
    power_lost: bool = False
    last_booted: str | None = None
    restart_counter: int = 0
    boots_without_agents: int = 0
    config: dict[str, Any] | None = None
    """/persist/checkpoint/lastconfig: rewritten on every new config (§1)."""
    config_bak: dict[str, Any] | None = None
    """lastconfig.bak: made at the first save, refreshed at most every timer.test.baseimage.update."""
    config_bak_at: float | None = None
    items: GlobalConfig = field(default_factory=GlobalConfig.defaults)
    reboot_seen: int | None = None
    shutdown_seen: int | None = None  # /persist/status/shutdownConfig: the last shutdown counter (§1)
    retry_seen: int | None = None
    force_fallback_seen: int | None = None
    failed: dict[str, str] = field(default_factory=dict)  # version -> swErr text
    seal: bytes | None = None  # vault key sealed to these PCRs (§5)
    vault_key: str | None = None
    tamper: dict[str, str] = field(default_factory=dict)  # stage -> what an attacker changed
    apps_installed: set[str] = field(default_factory=set)
    bos: dict[str, Any] | None = None  # the newest base-OS entry (swList beyond the partitions)
    disk_full: bool = False  # volumemgr's RemainingSpace is 0 (a property of the disk, §7)
    tpm_broken: bool = False  # tpmmgr's sanity check fails with TPM_ENCRYPTION_FAILURE (§5, §7)
    dpcs: list[Dpc] | None = None
    """nim's persisted DevicePortConfigList once the controller pushed a network config (§4);
    None: only the profile's management ports (the bootstrap DPC)."""
    lastresort: Dpc | None = None
    net_seen: dict[str, Any] | None = None  # the controller network config last turned into a DPC
    logs: LogPersist = field(default_factory=LogPersist)  # /persist/newlog (§1 log upload)


# zedagent's timers: they stop when it hangs (Watchdog.hang).
_ZEDAGENT_TIMERS = frozenset({Timer.CONFIG, Timer.METRICS, Timer.DEVICEINFO, Timer.INFO, Timer.ATTEST, Timer.QUOTE,
                              Timer.EDGE_CERTS})

_TAMPER_PCR = {"bootloader": 8, "rootfs": 13, "config": 14}



class Node:
    """The EVE rule set for one device."""

    def __init__(
        self,
        params: NodeParams,
        initial_image: str,
        rng: np.random.Generator,
        luck: np.random.Generator | None = None,
    ) -> None:
        """``rng`` draws timer jitter; ``luck`` (default: ``rng``) draws the hardware's fate - boot
        times, boot hangs, agent hangs, write errors - so that fate does not depend on how much
        traffic a node generated, and two rollout policies meet the same hardware luck."""
        self.p = params
        self.rng = rng
        self.luck = luck if luck is not None else rng
        img = params.images[initial_image]
        self.persist = Persist(zboot=Zboot.fresh(img.version, img.name))
        self._out: list[Action] = []
        self.items_version = 0  # bumped whenever configItems are applied (drivers cache timer values)
        self._rid = 0
        self.phase = Phase.OFF
        self.prev_booted: str | None = None
        """The partition booted before this boot (a test boot that came back is a rollback, §3)."""
        self.links_down: set[str] = set()
        """Ports whose link is down (hardware, survives reboots); set by the driver through :meth:`links`."""
        self._reset_volatile()


    # ---------------------------------------------------------------------------------- plumbing --
    def _reset_volatile(self) -> None:
        """A power-on or reset: every agent process starts afresh (what survives is in ``persist``)."""
        self._inflight: dict[int, tuple[str, Any]] = {}
        self.boot_at: float | None = None
        self.agents_at: float | None = None
        self.image: ImageInfo | None = None
        self.pcrs: dict[int, bytes] = {}
        self.boot_reason = BootReason.UNSPECIFIED
        self.rolled_back: str | None = None  # the version whose test boot this boot rolled back
        self.boot_reason_text = ""
        self.net_broken = False
        self._timeouts: tuple[int, SendTimeouts, SendTimeouts] | None = None
        self.client = Client(self)
        self.zedagent = ZedAgent(self)
        self.baseosmgr = BaseOsMgr(self)
        self.nodeagent = NodeAgent(self)
        self.attest = Attest(self)
        self.nim = Nim(self)
        self.zedmanager = ZedManager(self)
        self.downloader = Downloader(self)
        self.loguploader = LogUploaderAgent(self)
        self.watchdog = Watchdog(self)

    def _drain(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _timer(self, name: TimerName, at: float) -> None:
        self._out.append(SetTimer(name, at))

    def _note(self, what: str, **data: Any) -> None:
        self._out.append(Note(what, data))

    @property
    def items(self) -> GlobalConfig:
        return self.persist.items

    def item(self, key: str) -> float:
        return float(self.persist.items.get(key))  # type: ignore[arg-type]

    @property
    def zboot(self) -> Zboot:
        return self.persist.zboot

    def send_timeouts(self, kind: str) -> SendTimeouts:
        """The limits of one request of ``kind`` without an answer (§1, :mod:`eve.send`): the
        controller client's dial/send timeouts, or for the port test (``ping``) conntester's own
        client, which has no dial timeout and ``timer.port.timeout`` as its send timeout
        (P:conntester/controller.go)."""
        cached = self._timeouts
        if cached is None or cached[0] != self.items_version:
            items = self.persist.items
            ping = SendTimeouts(dial=0.0, send=float(items.get("timer.port.timeout")))  # type: ignore[arg-type]
            cached = self._timeouts = (self.items_version, SendTimeouts.from_items(items), ping)
        return cached[2] if kind == "ping" else cached[1]

    def _send(self, kind: str, body: dict[str, Any], now: float, ctx: Any = None, *, ports: tuple[str, ...] | None = None) -> int:
        self._rid += 1
        rid = self._rid
        self._inflight[rid] = (kind, ctx)
        if self.net_broken:
            # The booted image never brings its network up: no port has an address, so every
            # request fails at once without sending (§1; P:controllerconn/send.go verifyIntfState).
            self._timer(KeyedTimer(TimerFamily.NET_FAIL, rid), now)
        else:
            self._out.append(Send(kind, rid, body, self.nim.ports() if ports is None else ports))
        return rid

    # ------------------------------------------------------------------------------- properties --
    @property
    def onboarded(self) -> bool:
        return self.persist.uuid is not None

    @property
    def bricked(self) -> bool:
        return self.phase == Phase.BRICKED or self.persist.boots_without_agents >= CRASH_LOOP_BRICK

    @property
    def running_version(self) -> str | None:
        if self.phase not in (Phase.RUNNING, Phase.REBOOTING) or self.zboot.current is None:
            return None
        return self.zboot.current_partition.version

    def device_state(self) -> ZDeviceState:
        """§7 precedence: maintenance > updating > rebooting > ... > ONLINE > BOOTING."""
        if self.zedagent.maintenance:
            return ZDeviceState.MAINTENANCE_MODE
        zb = self.zboot
        if zb.current is not None and (
            zb.current_partition.state == PartitionState.INPROGRESS or zb.other_partition.state == PartitionState.UPDATING
        ):
            return ZDeviceState.BASEOS_UPDATING
        if self.nodeagent.rebooting is not None:
            return ZDeviceState.REBOOTING
        if self.zedagent.shutdown_cmd:
            return ZDeviceState.PREPARED_POWEROFF if self.nodeagent.all_halted else ZDeviceState.PREPARING_POWEROFF
        if self.nodeagent.node_op == "poweroff":
            return ZDeviceState.POWERING_OFF
        if self.zedagent.config_received:
            return ZDeviceState.ONLINE
        return ZDeviceState.BOOTING

    def quiescent(self) -> bool:
        """True when this node's reaction to a ``304`` config reply is only "contact succeeded".

        The simulator may then answer such polls in bulk without calling the node (and must write
        ``last_contact`` back before the next call). Anything else - a test window waiting for its
        first success, an info message waiting for a reconnect, a failing link - needs the node.
        """
        return (
            self.phase == Phase.RUNNING
            and self.zedagent.running
            and not self.zedagent.poll_inflight
            and self.zedagent.config_status == ConfigGetStatus.SUCCESS
            and not (self.nodeagent.testing and self.nodeagent.test_start is None)
            and not self.zedagent.info_dirty
            and not self.zedagent.info_inflight
            and self.nodeagent.rebooting is None
            and self.nim.reverify is None
            and self.nim.port_fails == 0
        )

    def report(self, now: float) -> dict[str, Any]:
        """What ZInfoDevice (+ ZInfoApp) tells the controller (§2 field subsets)."""
        zb = self.zboot
        sw = []
        if zb.current is not None:
            for part in (zb.current_partition, zb.other_partition):
                sw.append(
                    {
                        "partition": part.label,
                        "version": part.version,
                        "image": part.image_id,
                        "state": part.state.value,
                        "err": self.persist.failed.get(part.version or "", "")
                        if part.state == PartitionState.INPROGRESS and part.label != zb.current
                        else "",
                    }
                )
        status, sub, err = self.baseosmgr.user_status()
        bos = self.persist.bos
        return {
            "at": now,
            "state": self.device_state().name,
            "boot_reason": self.boot_reason.name,
            "reboot_reason_text": self.boot_reason_text,
            "boot_time": self.boot_at,
            "restart_counter": self.persist.restart_counter,
            "sw": sw,
            "baseos": {
                "version": bos["version"] if bos else None,
                "image": bos["image"] if bos else None,
                "status": status.name,
                "sub_status": sub.name,
                "err": err,
                "progress": self.baseosmgr.progress(now),
            },
            "attestation": self.attest.state.name,
            "maintenance": sorted(r.name for r in self.zedagent.maintenance),
            "vault": "unlocked" if self.attest.vault_unlocked else "locked",
            "dpc_index": self.nim.dpc_index,
            "dpc_state": self.nim.dpc_state.name,
            "dpc_ports": self.nim.configured_ports(),
            "reboot_counter": self.persist.reboot_seen,
            "shutdown_counter": self.persist.shutdown_seen,
            "baseos_update_counter": self.persist.retry_seen,
            "apps": {n: self.zedmanager.app_info(n) for n in sorted(self.zedmanager.apps)},
            "config_items_errors": sorted(e.key for e in self.items.errors),
            # configItemStatus.configItems: every item of the last config, errors or not (spec §6)
            "config_items_status": {k: {"value": v, "error": err} for k, (v, err) in self.items.status().items()},
        }

    # ------------------------------------------------------------------------------ power / boot --
    def power(self, event: PowerEvent) -> Phase:
        """Move through the power cycle (:data:`POWER`); returns the phase before."""
        was = self.phase
        self.phase = POWER.fire(was, event)
        return was

    def power_on(self, now: float) -> list[Action]:
        if self.power(PowerEvent.POWER_ON) != Phase.OFF:
            return self._drain()  # already on
        self._reset_volatile()
        self.boot_at = now
        prev = self.persist.last_booted
        updating = {lbl for lbl, part in self.zboot.partitions.items() if part.state == PartitionState.UPDATING}
        label = self.zboot.select_boot()  # GRUB gptprio.next (§1, §3): decrements tries
        if label is None:
            self.power(PowerEvent.NO_BOOTABLE)
            self._note("bricked", why="no bootable partition")
            return self._drain()
        self.prev_booted = prev
        self.persist.last_booted = label
        part = self.zboot[label]
        self.image = self.p.images.get(part.image_id or "") or ImageInfo(part.image_id or "?", part.version or "?", "good", 0)
        tamper = self.persist.tamper
        self.pcrs = measure_boot(
            PcrBank(),
            firmware=self.p.firmware,
            firmware_tamper=tamper.get("firmware"),
            rootfs=self.image.rootfs_measurement,
            grub_cfg=f"grub.cfg:{label}",
            config=f"config:{self.p.serial}",
            tamper={_TAMPER_PCR[s]: v for s, v in tamper.items() if s in _TAMPER_PCR},
        )
        self.persist.boots_without_agents += 1
        duration = max(1.0, float(self.p.boot_time(self.luck)))
        # The one boot a new image gets (tries 1 -> 0) is its test boot.
        self._note("boot_start", partition=label, version=part.version, test_boot=label in updating)
        if self.image.behaviour == CRASH_ON_BOOT:
            self._timer(Timer.CRASH, now + 0.6 * duration)  # kernel panic before the agents start
        elif self.p.boot_hang and self.luck.random() < self.p.boot_hang:
            self._timer(Timer.WATCHDOG, now + 0.5 * duration + WATCHDOG_CHANGE)
        else:
            self._timer(Timer.BOOTED, now + duration)
        return self._drain()

    def power_off(self, now: float) -> list[Action]:
        """Power removed: everything volatile is lost; the next boot reports POWER_FAIL (§7)."""
        was = self.power(PowerEvent.POWER_CUT)
        if was == Phase.OFF:
            return self._drain()
        self._agents_stop(now)
        if was != Phase.BRICKED:
            self.persist.power_lost = True
        self._note("power_off")
        return self._drain()

    def hard_reset(self, now: float, reason: BootReason | None, text: str = "") -> None:
        ps = self.persist
        if reason is not None and ps.reboot_record is None:
            # The watchdog script does not replace a recorded reason (spec §7): a stale UPDATE
            # record of an image that died before its nodeagent ran survives.
            ps.reboot_record = (reason, text)
            ps.reboot_image = self.zboot.current
        self._agents_stop(now)
        self.power(PowerEvent.RESET)
        self._note("reset", reason=reason.name if reason is not None else None)
        self._out.append(Reset(reason))

    def _agents_stop(self, now: float) -> None:
        """Every agent process ends (a power cut, a reset, a panic, a power-off): their timers go,
        the log files closed so far stay on /persist, and a fresh set of agents waits for the next boot."""
        self._out.append(CancelAll())
        self.loguploader.stop(now)
        self._reset_volatile()

    def powered_off(self, now: float) -> None:
        """nodeagent's power-off command ends: the device is off until a power-on."""
        self._agents_stop(now)
        self.power(PowerEvent.POWERED_OFF)

    # -- what a real platform reads from its disk and TPM (the simulator has no such inputs) --
    def on_disk_state(self, label: str, state: PartitionState, *, before_boot: bool = False) -> bool:
        """The disk says partition ``label`` is in ``state``, and the disk wins. Read before
        power-on, an UPDATING partition found INPROGRESS had its one try spent by a boot the node
        never saw (a crash before the agents started), which came last. True when so."""
        part = self.zboot[label]
        unseen = before_boot and part.state == PartitionState.UPDATING and state == PartitionState.INPROGRESS
        if unseen:
            self.persist.last_booted = label
        part.state = state
        return unseen

    def on_booted_from(self, label: str) -> None:
        """The bootloader really started partition ``label``."""
        self.zboot.current = label

    def on_disk_release(self, label: str, version: str | None, name: str | None) -> None:
        """Partition ``label`` holds release ``name`` ``version``: what runs is that image."""
        part = self.zboot[label]
        if part.version != version:
            part.version = version
            part.image_id = name or part.image_id
        if self.image is not None and self.image.version != part.version:
            self.image = self.p.images.get(part.image_id or "", self.image)

    def on_measured(self, pcrs: dict[int, bytes]) -> None:
        """What firmware and the boot stages really measured into the TPM (spec §5)."""
        self.pcrs = pcrs

    def tamper(self, stage: str, now: float) -> list[Action]:
        """An attacker changes firmware/bootloader/rootfs/config; measured at the next boot."""
        self.persist.tamper[stage] = f"tampered-{stage}-{len(self.persist.tamper) + 1}"
        self._note("tamper", stage=stage)
        return self._drain()

    # -- an agent stops: the watchdog's business (§7) --
    def hang(self, agent: str, now: float) -> list[Action]:
        """One agent stops touching its watchdog file (:meth:`Watchdog.hang`)."""
        if self.phase == Phase.RUNNING:
            self.watchdog.hang(agent, now)
        return self._drain()

    def agent_exit(self, agent: str, now: float) -> list[Action]:
        """An agent's process dies (:meth:`Watchdog.pid_gone`)."""
        if self.phase == Phase.RUNNING:
            self.watchdog.pid_gone(agent, now)
        return self._drain()

    def oom(self, agent: str, now: float) -> list[Action]:
        """The OOM killer reaps an agent's process (:meth:`Watchdog.oom`)."""
        if self.phase == Phase.RUNNING:
            self.watchdog.oom(agent, now)
        return self._drain()

    def agent_fatal(self, agent: str, now: float) -> list[Action]:
        """An agent calls log.Fatal (:meth:`Watchdog.fatal`)."""
        if self.phase == Phase.RUNNING:
            self.watchdog.fatal(agent, now)
        return self._drain()

    def kernel_panic(self, now: float) -> list[Action]:
        """The kernel panics while the agents run (spec §7). Every agent stops at once. With kdump
        (``NodeParams.kdump``) the capture kernel's kdump.sh (eve:pkg/kdump/kdump.sh) overwrites
        /persist/boot-reason with KERNEL and reboot-reason with "kernel panic, dmesg collected …",
        leaves /persist/reboot-image alone, sleeps the kernel's panic timeout (120 s) and resets;
        without kdump nothing is recorded and the kernel resets after the same 120 s, so the next
        nodeagent synthesizes KERNEL or UNKNOWN (``NodeAgent._synthesized_reason``). (The capture kernel's own
        boot and dump time is not modelled.)"""
        if self.phase != Phase.RUNNING:
            return self._drain()
        ps = self.persist
        if self.p.kdump:
            ps.reboot_record = (BootReason.KERNEL, f"kernel panic, dmesg collected: /persist/kcrashes/dmesg-{now:.0f}.log")
        self._note("kernel_panic", kdump=self.p.kdump, version=self.running_version)
        self._agents_stop(now)
        self.power(PowerEvent.PANIC)
        self._timer(Timer.CRASH, now + PANIC_TIMEOUT)
        return self._drain()

    def poweroff_cmd(self, now: float) -> list[Action]:
        """The local profile server's COMMAND_GRACEFUL_POWEROFF (§7; P:cmd/zedagent/localcommand.go
        ``processReceivedDevCommands``, DevCommandShutdownPoweroff). The controller cannot ask for
        it: EdgeDevConfig has only ``shutdown`` (P:types/zedagenttypes.go DeviceOperationPoweroff
        "Not settable from controller"). POWERING_OFF, the reason POWEROFF_CMD with "NORMAL: local
        profile server power off", apps halted, then the device powers off. During the update
        test it waits for TestComplete (``poweroffCmdDeferred``); one in progress is not repeated."""
        if self.phase != Phase.RUNNING or not self.zedagent.running:
            return self._drain()
        if self.nodeagent.testing:
            self.zedagent.deferred_poweroff = True
            self._note("poweroff_deferred")
        else:
            self.nodeagent.node_operation("poweroff", now, "NORMAL: local profile server power off")
        return self._drain()

    def disk_space(self, remaining: int, now: float) -> list[Action]:
        """volumemgr's RemainingSpace: 0 -> maintenance LOW_DISK_SPACE, more -> cleared (§7,
        P:cmd/nodeagent/nodeagent.go ``handleVolumeMgrStatusImpl``). Kept across reboots (it
        is the disk's state; volumemgr publishes it again at start)."""
        self.persist.disk_full = remaining <= 0
        if self.phase == Phase.RUNNING:
            self.nodeagent.set_local_maintenance(MaintenanceModeReason.LOW_DISK_SPACE, self.persist.disk_full, now)
        return self._drain()

    def tpm_sanity(self, ok: bool, now: float) -> list[Action]:
        """tpmmgr's sanity check (§5, hourly and at start): TPM_ENCRYPTION_FAILURE puts the device
        in maintenance mode, a passing check clears it (``handleTpmStatusImpl``). Kept across
        reboots (it is the TPM's state). A device without a TPM has no such check."""
        if not self.p.tpm:
            return self._drain()
        self.persist.tpm_broken = not ok
        if self.phase == Phase.RUNNING:
            self.nodeagent.set_local_maintenance(MaintenanceModeReason.TPM_ENCRYPTION_FAILURE, not ok, now)
        return self._drain()

    # ------------------------------------------------------------------------------- downloads --
    def links(self, down: frozenset[str] | set[str], now: float) -> list[Action]:
        """Input: the set of ports whose link is down changed. A download depends on the links
        (§4): without a usable port it makes no progress and stalls after ``timer.download.stalled``."""
        self.links_down = set(down)
        if self.phase == Phase.RUNNING:
            self.downloader.links_changed(now)
        return self._drain()

    # ------------------------------------------------------------------------------- dispatch --
    def on_timer(self, name: TimerName, now: float) -> list[Action]:
        phase = self.phase
        if name in (Timer.WATCHDOG, Timer.WATCHDOG_PID):
            self.watchdog.on_timer(name, now)
            return self._drain()
        if name == Timer.CRASH:
            if phase == Phase.BOOTING:
                self._note("crash", version=self.image.version if self.image else None)
                self.hard_reset(now, None)
            elif phase == Phase.REBOOTING:  # the panic timeout of kernel_panic
                self.hard_reset(now, BootReason.KERNEL if self.p.kdump else None)
            return self._drain()
        if name == Timer.BOOTED:
            if phase == Phase.BOOTING:
                self.nodeagent.start(now)
            return self._drain()
        if phase not in (Phase.RUNNING,):
            return self._drain()
        if self.watchdog.hung and (
            ("zedagent" in self.watchdog.hung and name in _ZEDAGENT_TIMERS) or ("nodeagent" in self.watchdog.hung and name in (Timer.NODEAGENT, Timer.REBOOT, Timer.NODEOP))
        ):
            return self._drain()  # that agent is hung (hang)
        if isinstance(name, KeyedTimer):
            if name.family is TimerFamily.NET_FAIL:
                return self.on_response(name.key, 0, {"error": "network"}, now)  # type: ignore[arg-type]
            _ON_KEYED_TIMER[name.family](self, name.key, now)
        else:
            handler = _ON_TIMER.get(name)
            if handler is not None:
                handler(self, now)
        return self._drain()

    def on_response(self, rid: int, status: int, body: dict[str, Any], now: float) -> list[Action]:
        entry = self._inflight.pop(rid, None)
        if entry is None or self.phase != Phase.RUNNING:
            return self._drain()
        kind, ctx = entry
        if kind == "uuid" and ctx == "lookup":
            self.zedagent.on_uuid_lookup_answer(status, body, now)
        elif kind in ("certs", "register", "uuid"):
            if kind == "certs" and status == 200:
                self.nim.mark_working()
            self.client.on_answer(kind, status, body, now, ctx)
        elif kind == "config":
            self.zedagent.on_config_answer(status, body, now, ctx)
            if self.zedagent.poll_pending and not self.zedagent.poll_inflight and self.phase == Phase.RUNNING and self.nodeagent.rebooting is None:
                self.zedagent.poll(now)
        elif kind == "info":
            self.zedagent.on_info_answer(status, now)
        elif kind == "attest" and ctx == "edge_certs":
            self.zedagent.on_edge_certs_answer(status, now)
        elif kind == "attest":
            self.attest.on_answer(status, body, now)
        elif kind == "ping":
            self.nim.on_ping_answer(status, body, ctx, now)
        elif kind == "logs":
            self.loguploader.on_answer(status, now)
        # metrics: best effort, nothing to do
        return self._drain()

    # -- what the drivers tell the node between calls (the simulator's bulk path) --
    def note_contact(self, when: float) -> None:
        """A bulk-answered 304 poll succeeded at ``when`` (see :meth:`quiescent`)."""
        self.zedagent.note_contact(when)

    def note_log_uploads(self, count: int, left: int, interval: int | None = None, sched_at: float | None = None) -> None:
        """Log files the bulk path uploaded for this quiescent node (:meth:`LogUploaderAgent.note_uploads`)."""
        self.loguploader.note_uploads(count, left, interval, sched_at)

    def ports(self, index: int | None = None) -> tuple[str, ...]:
        """The ports of DPC ``index`` (default: the one in use), as nim has them."""
        return self.nim.ports(index)


_ON_TIMER: dict[Timer, Callable[[Node, float], None]] = {
    Timer.CONFIG: lambda n, now: n.zedagent.on_config_timer(now),
    Timer.NODEAGENT: lambda n, now: n.nodeagent.on_tick(now),
    Timer.REBOOT: lambda n, now: n.nodeagent.on_reboot_timer(now),
    Timer.NODEOP: lambda n, now: n.nodeagent.on_node_op_timer(now),
    Timer.METRICS: lambda n, now: n.zedagent.on_metrics_timer(now),
    Timer.DEVICEINFO: lambda n, now: n.zedagent.on_deviceinfo_timer(now),
    Timer.PORTTEST: lambda n, now: n.nim.on_port_test_timer(now),
    Timer.PORTBETTER: lambda n, now: n.nim.on_port_better_timer(now),
    Timer.LOGS: lambda n, now: n.loguploader.on_timer(now),
    Timer.ONBOARD: lambda n, now: n.client.on_timer(now),
    Timer.ONBOARD_FAST: lambda n, now: n.client.on_fast_timer(now),
    Timer.ATTEST: lambda n, now: n.attest.on_retry_timer(now),
    Timer.QUOTE: lambda n, now: n.attest.on_quote_timer(now),
    Timer.INFO: lambda n, now: n.zedagent.on_info_timer(now),
    Timer.BOS_DOWNLOAD: lambda n, now: n.downloader.on_finished("bos", now),
    Timer.BOS_WRITE: lambda n, now: n.baseosmgr.on_written(now),
    Timer.HANG: lambda n, now: n.watchdog.hang("zedagent", now),  # the profile's random hang (hang_per_day)
    Timer.APP_RETRY: lambda n, now: n.zedmanager.on_retry_timer(now),
    Timer.EDGE_CERTS: lambda n, now: n.zedagent.on_edge_certs_timer(now),
}
"""Which agent a running node's fixed-name timer belongs to, and what it does."""

_ON_KEYED_TIMER: dict[TimerFamily, Callable[[Node, Any, float], None]] = {
    TimerFamily.DOWNLOAD: lambda n, key, now: n.downloader.on_finished(key, now),
    TimerFamily.DOWNLOAD_STALL: lambda n, key, now: n.downloader.on_stall_timer(key, now),
    TimerFamily.DOWNLOAD_RETRY: lambda n, key, now: n.downloader.on_retry_timer(key, now),
    TimerFamily.APP: lambda n, key, now: n.zedmanager.on_app_timer(key, now),
    TimerFamily.DPC_VERIFY: lambda n, key, now: n.nim.on_verify_timer(key, now),
}
"""Which agent a keyed timer belongs to, given the timer's key (NET_FAIL is an answer, not a timer)."""
