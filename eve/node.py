"""One EVE node as a sans-I/O state machine: events in, actions out.

The rules of EVE-OS that matter to a controller and to a test harness live here once: boot and
measured boot, onboarding, config polling, the A/B base-OS update with its test window and
fallback, network port tests, attestation and the vault, apps, reboots and device states. Section
numbers (``§3``) refer to ``shared/reference/eve-behaviour.md``.

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

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from eve import admission
from eve import dpc as dpcl
from eve.dpc import Dpc
from eve.config_items import GlobalConfig
from eve.download import Download
from eve.logs import DEFAULT_INTERVAL as LOG_INTERVAL, LogPersist, LogUploader
from eve.enums import (
    AttestState,
    BaseOsStatus,
    BaseOsSubStatus,
    BootReason,
    ConfigGetStatus,
    DPCState,
    MaintenanceModeReason,
    PartitionState,
    QuoteResponseCode,
    ZDeviceState,
    ZSwState,
)
from eve.vocab import PERIODIC, KeyedTimer, Phase, Timer, TimerFamily, TimerName
from eve.images import CORRUPT, CRASH_ON_BOOT, NO_CONTROLLER, rootfs_measurement
from eve.measured_boot import PcrBank, measure_boot, seal_digest
from eve.send import SendTimeouts
from eve.zboot import REFUSE_TOO_EARLY, Zboot

# -- constants from the spec ------------------------------------------------------------------------
ONBOARD_BACKOFF_START = 1.0  # §1 onboarding: 1 s doubling ...
ONBOARD_BACKOFF_CAP = 600.0  # ... to a 600 s cap, no jitter
ONBOARD_FAST_PATH = 5.0  # §1: cached UUID, DPC not Success at t=5 s -> done without the controller
NODEAGENT_TICK = 10.0  # §3 step 8: nodeagent checks its timers every 10 s
REBOOT_PRE_WAIT = 30.0  # §3 reboot procedure: wait 30 s before writing the reason
REBOOT_POST_WAIT = 30.0  # §3: sync, then 30 s, then zboot reset
HALT_POLL = 5.0  # §3: domains halted, polled every 5 s (<= 300 s)
ATTEST_RETRY = 15.0  # §5: fixed 15 s retry
EDGE_CERTS_RETRY = 10.0  # §5: a failed ATTEST_REQ_CERT post is sent again 10 s later (triggerEdgeNodeCertDelayedEvent)
INFO_RETRY_MIN, INFO_RETRY_MAX = 60.0, 900.0  # §1 reliable queue 1 min -> 15 min, +-30 s noise
WATCHDOG_CHANGE = 300.0  # §7 touch file unchanged 300 s -> reboot
UUID_LOOKUP_EVERY = 600.0  # §1 potentialUUIDUpdate: at most every 10 min, from zedagent start
WATCHDOG_INTERVAL = 1.0  # §7 the watchdog daemon checks the pid files every second
PANIC_TIMEOUT = 120.0  # §7 kernel panic=120 (eve:pkg/grub/rootfs.cfg); kdump.sh sleeps it too
CRASH_LOOP_BRICK = 5  # consecutive boots that never start the agents: reported as bricked
WAN_RATE = 12.5e6  # bytes/s cap for downloads (a 100 Mbit/s uplink)


# -- actions ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    """Send a request to the controller. ``status`` 0 in the response means a transport error."""

    kind: str  # certs | register | uuid | config | info | metrics | attest | ping | logs
    rid: int
    body: dict[str, Any]
    ports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SetTimer:
    name: TimerName
    at: float


@dataclass(frozen=True, slots=True)
class CancelAll:
    """Drop every timer of this node (power lost or hardware reset)."""


@dataclass(frozen=True, slots=True)
class Reset:
    """The node resets its hardware; the driver powers it on again (a real reboot on real backends)."""

    reason: BootReason | None


@dataclass(frozen=True, slots=True)
class Note:
    """A timeline record: something a report or an expectation may want to know."""

    what: str
    data: dict[str, Any]


Action = Send | SetTimer | CancelAll | Reset | Note


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


# P:types/zedagenttypes.go BootReason.StartWithSavedConfig: after these, lastconfig; after any
# other reason (first boot, fallback, fatal, OOM, watchdog, vault failure …) lastconfig.bak (§1).
_START_WITH_LASTCONFIG = frozenset({
    BootReason.REBOOT_CMD, BootReason.UPDATE, BootReason.DISCONNECT, BootReason.KERNEL,
    BootReason.POWER_FAIL, BootReason.UNKNOWN, BootReason.POWEROFF_CMD,
})


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


# What belongs to zedagent (its requests and its timers) and stops when it hangs (Node.hang).
_ZEDAGENT_REQUESTS = frozenset({"config", "info", "metrics", "attest"})
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
        self._dpc_cache: dict[bool, list[tuple[str, tuple[str, ...]]]] = {}
        self.items_version = 0  # bumped whenever configItems are applied (drivers cache timer values)
        self._rid = 0
        self.phase = Phase.OFF
        self.links_down: set[str] = set()
        """Ports whose link is down (hardware, survives reboots); set by the driver through :meth:`links`."""
        self._reset_volatile()

    # ---------------------------------------------------------------------------------- plumbing --
    def _reset_volatile(self) -> None:
        self._inflight: dict[int, tuple[str, Any]] = {}
        self.boot_at: float | None = None
        self.agents_at: float | None = None
        self.image: ImageInfo | None = None
        self.pcrs: dict[int, bytes] = {}
        self.vault_unlocked = False
        self.vault_at: float | None = None
        self.onboarding = False
        self._got_certs = False
        self._ob_backoff = ONBOARD_BACKOFF_START
        self.zedagent = False
        self.poll_inflight = False
        self.poll_pending = False
        self.last_hash = ""
        self.config_status: ConfigGetStatus | None = None
        self.config_received = False
        self.saved_read = False  # lastconfig read in this boot (§1)
        self.last_contact: float = -math.inf
        self.reachable_until: float | None = None
        """nodeagent's lastControllerReachableTime once a poll failed (a tick time), else None."""
        self.first_success: float | None = None
        self.testing = False
        self.test_start: float | None = None
        self.rebooting: tuple[BootReason, str] | None = None
        self._reboot_stage = 0
        self.deferred_reboot = False
        self.attest = AttestState.UNSPECIFIED
        self.token: str | None = None
        self.quote_sent = False
        self._nonce: str | None = None
        self._attest_pending = False  # a restart asked for while a cycle ran (§5 restartRequestPending)
        self._attest_queued_cycle = False  # the running cycle is that queued one: it queues no other
        self._info_dirty = False
        self._info_inflight = False
        self._info_backoff = 0.0
        self._info_waiting = False  # a retry timer is pending
        self.dpc_index = 0
        self.dpc_state = DPCState.NONE
        self._port_fails = 0
        self._reverify: int | None = None
        self._verify_gen = 0
        self.maintenance: set[MaintenanceModeReason] = set()
        """The merged reasons the device reports (``_merge_maintenance``); set nowhere else."""
        self.api_maintenance = False  # EdgeDevConfig.maintenance_mode of the config in use
        self.local_maintenance: set[MaintenanceModeReason] = set()  # nodeagent's own reasons
        self.apps: dict[str, dict[str, Any]] = {}
        self._app_retry_pending = False  # zedmanager's checkFreedResources (§8)
        self.boot_reason = BootReason.UNSPECIFIED
        self.rolled_back: str | None = None  # the version whose test boot this boot rolled back
        self.boot_reason_text = ""
        self.net_broken = False
        self._timeouts: tuple[int, SendTimeouts, SendTimeouts] | None = None
        self.hung: set[str] = set()  # agents that stopped touching their watchdog file (§7)
        self._dead_agent = ""  # an agent whose process died (agent_exit)
        self._oom = ""  # the process the OOM killer reaped this boot: dmesg has oom_reaper (§7)
        self._uuid_lookup_at: float | None = None  # zedagent's lastDevUUIDChange (potentialUUIDUpdate)
        self._uuid_lookup_inflight = False
        self.downloads: dict[str, Download] = {}  # key "bos" or "app/<name>" (volatile, §3 step 1)
        self.logs: LogUploader | None = None  # loguploader, from zedagent's start (§1)
        self.node_op: str | None = None  # "shutdown" | "poweroff" in progress (nodeagent, §7)
        self.shutdown_cmd = False  # zedagent's shutdownCmd: set by a shutdown, kept by a power-off after it
        self.all_halted = False  # nodeagent's allDomainsHalted during a node operation
        self._node_op_stage = 0
        self.deferred_shutdown = False
        self.deferred_poweroff = False  # zedagent's poweroffCmdDeferred (a power-off in the test window)
        self._node_op_text = ""  # the reboot-reason text a power-off writes (requestedRebootReason)
        self._edge_certs_published = False  # zedagent's publishedEdgeNodeCerts (ATTEST_REQ_CERT)

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

    def ports(self, index: int | None = None) -> tuple[str, ...]:
        """The ports of DPC ``index`` (default: the one in use); () when there is none."""
        dpcs = self.dpc_list()
        idx = self.dpc_index if index is None else index
        if not dpcs or idx < 0 or idx >= len(dpcs):
            return ()
        return dpcs[idx][1]

    def dpc_list(self) -> list[tuple[str, tuple[str, ...]]]:
        """DPCs by priority, index 0 first (§4): the controller-given management ports, then the
        last-resort DPC (all Ethernet ports) when ``network.fallback.any.eth`` is enabled."""
        lastresort = self.items.get("network.fallback.any.eth") == "enabled"
        if self.persist.dpcs is not None:
            names = {p.name for p in self.p.ports}
            return [(d.key, () if d.broken else tuple(p for p in d.ports if p in names)) for d in self._dpcs()]
        cached = self._dpc_cache.get(lastresort)
        if cached is not None:
            return cached
        mgmt = sorted((p for p in self.p.ports if p.mgmt), key=lambda p: (p.cost, p.name))
        dpcs = [("zedagent", tuple(p.name for p in mgmt))]
        if lastresort:
            eth = sorted((p for p in self.p.ports if p.kind == "ethernet"), key=lambda p: (p.cost, p.name))
            dpcs.append(("lastresort", tuple(p.name for p in eth)))
        self._dpc_cache[lastresort] = dpcs
        return dpcs

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
            self._out.append(Send(kind, rid, body, self.ports() if ports is None else ports))
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
        if self.maintenance:
            return ZDeviceState.MAINTENANCE_MODE
        zb = self.zboot
        if zb.current is not None and (
            zb.current_partition.state == PartitionState.INPROGRESS or zb.other_partition.state == PartitionState.UPDATING
        ):
            return ZDeviceState.BASEOS_UPDATING
        if self.rebooting is not None:
            return ZDeviceState.REBOOTING
        if self.shutdown_cmd:
            return ZDeviceState.PREPARED_POWEROFF if self.all_halted else ZDeviceState.PREPARING_POWEROFF
        if self.node_op == "poweroff":
            return ZDeviceState.POWERING_OFF
        if self.config_received:
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
            and self.zedagent
            and not self.poll_inflight
            and self.config_status == ConfigGetStatus.SUCCESS
            and not (self.testing and self.test_start is None)
            and not self._info_dirty
            and not self._info_inflight
            and self.rebooting is None
            and self._reverify is None
            and self._port_fails == 0
        )

    # ---------------------------------------------------------------------------------- reports --
    def baseos_user_status(self) -> tuple[BaseOsStatus, BaseOsSubStatus, str]:
        """userStatus of the newest base-OS entry, from ZSwState and partition state (§3 table)."""
        e = self.persist.bos
        if not e:
            return BaseOsStatus.NONE, BaseOsSubStatus.NONE, ""
        err = e.get("err") or ""
        if err:
            return BaseOsStatus.FAILED, BaseOsSubStatus.NONE, err
        zsw = e["zsw"]
        if zsw in (ZSwState.INITIAL, ZSwState.DOWNLOAD_STARTED, ZSwState.VERIFYING):
            return BaseOsStatus.DOWNLOADING, BaseOsSubStatus.DOWNLOAD_INPROGRESS, ""
        if zsw == ZSwState.DELIVERED:
            if e.get("too_early"):
                return BaseOsStatus.UPDATING, BaseOsSubStatus.UPDATE_DEFERRED, ""
            # §3 table: DELIVERED is NONE, activate=false included; DOWNLOAD_DONE would need an
            # activated DELIVERED entry, and only the running version is activated (INSTALLED).
            return BaseOsStatus.NONE, BaseOsSubStatus.NONE, ""
        part = self._partition_with(e["version"])
        if part is None:
            return BaseOsStatus.DOWNLOAD_DONE, BaseOsSubStatus.NONE, ""
        activated = bool(e.get("activate"))
        is_current = self.zboot.current == part.label
        if part.state == PartitionState.UPDATING:
            return BaseOsStatus.UPDATING, BaseOsSubStatus.UPDATE_REBOOTING, ""
        if part.state == PartitionState.INPROGRESS:
            if activated and is_current:
                return BaseOsStatus.UPDATING, BaseOsSubStatus.UPDATE_TESTING, ""
            err = self.persist.failed.get(e["version"], "")
            # §3: swErr makes it FAILED; a version that died before its nodeagent ran has none
            # and reads NONE (INFERRED in the spec: the entry is DOWNLOADED, not activated).
            return (BaseOsStatus.FAILED if err else BaseOsStatus.NONE), BaseOsSubStatus.NONE, err
        if part.state == PartitionState.ACTIVE:
            return (BaseOsStatus.UPDATED if activated else BaseOsStatus.FALLBACK), BaseOsSubStatus.NONE, ""
        return BaseOsStatus.DOWNLOAD_DONE, BaseOsSubStatus.NONE, ""

    def _bos_progress(self, now: float) -> int:
        """downloadProgress of the base-OS entry: live while DOWNLOAD_STARTED, 100 once delivered (§3)."""
        e = self.persist.bos
        if not e:
            return 0
        if e["zsw"] != ZSwState.DOWNLOAD_STARTED:
            return 0 if e["zsw"] == ZSwState.INITIAL else 100
        d = self.downloads.get("bos")
        return d.progress_at(now) if d is not None else 0

    def _partition_with(self, version: str) -> Any:
        for label in ("IMGA", "IMGB"):
            part = self.zboot[label]
            if part.version == version and part.state != PartitionState.UNUSED:
                return part
        return None

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
        status, sub, err = self.baseos_user_status()
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
                "progress": self._bos_progress(now),
            },
            "attestation": self.attest.name,
            "maintenance": sorted(r.name for r in self.maintenance),
            "vault": "unlocked" if self.vault_unlocked else "locked",
            "dpc_index": self.dpc_index,
            "dpc_state": self.dpc_state.name,
            "dpc_ports": self._dpc_configured_ports(),
            "reboot_counter": self.persist.reboot_seen,
            "shutdown_counter": self.persist.shutdown_seen,
            "baseos_update_counter": self.persist.retry_seen,
            "apps": {n: {"state": a["state"].name, "err": a.get("err", "")} for n, a in sorted(self.apps.items())},
            "config_items_errors": [e.key for e in self.items.errors],
        }

    # ------------------------------------------------------------------------------ power / boot --
    def power_on(self, now: float) -> list[Action]:
        if self.phase not in (Phase.OFF,):
            return self._drain()
        self._reset_volatile()
        self.phase = Phase.BOOTING
        self.boot_at = now
        prev = self.persist.last_booted
        updating = {lbl for lbl, part in self.zboot.partitions.items() if part.state == PartitionState.UPDATING}
        label = self.zboot.select_boot()  # GRUB gptprio.next (§1, §3): decrements tries
        if label is None:
            self.phase = Phase.BRICKED
            self._note("bricked", why="no bootable partition")
            return self._drain()
        self._prev_booted = prev
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
        if self.phase == Phase.OFF:
            return self._drain()
        was = self.phase
        self._out.append(CancelAll())
        self._logs_stop(now)
        self._reset_volatile()
        if was != Phase.BRICKED:
            self.persist.power_lost = True
        self.phase = Phase.OFF
        self._note("power_off")
        return self._drain()

    def _hard_reset(self, now: float, reason: BootReason | None, text: str = "") -> None:
        ps = self.persist
        if reason is not None and ps.reboot_record is None:
            # The watchdog script does not replace a recorded reason (spec §7): a stale UPDATE
            # record of an image that died before its nodeagent ran survives.
            ps.reboot_record = (reason, text)
            ps.reboot_image = self.zboot.current
        self._out.append(CancelAll())
        self._logs_stop(now)
        self._reset_volatile()
        self.phase = Phase.OFF
        self._note("reset", reason=reason.name if reason is not None else None)
        self._out.append(Reset(reason))

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

    def hang(self, agent: str, now: float) -> list[Action]:
        """One agent stops (and stops touching /run/<agent>.touch); the watchdog reboots the
        device 300 s later with WATCHDOG_HUNG (§7, eve:pkg/watchdog). The other agents go on:
        nodeagent keeps ticking, so a test window that already started commits when it expires,
        and its copy of the config status stays what zedagent last published (no fallback from a
        hung zedagent's silence). A hung zedagent polls, reports and attests no more; a hung
        nodeagent no longer runs its timers or a reboot in progress."""
        if self.phase != Phase.RUNNING or agent in self.hung:
            return self._drain()
        first = not self.hung
        self.hung.add(agent)
        self._note("hang", agent=agent)
        if agent == "zedagent":
            self.zedagent = False
            self.poll_inflight = self.poll_pending = False
            for rid in [r for r, (kind, _ctx) in self._inflight.items() if kind in _ZEDAGENT_REQUESTS]:
                del self._inflight[rid]  # its answers find nobody to read them
        if first:
            self._timer(Timer.WATCHDOG, now + WATCHDOG_CHANGE)
        return self._drain()

    def agent_exit(self, agent: str, now: float) -> list[Action]:
        """An agent's process dies: the watchdog finds /run/<agent>.pid dead at its next 1 s check
        and reboots with WATCHDOG_PID (§7, eve:pkg/watchdog). The first recorded reason wins."""
        if self.phase != Phase.RUNNING:
            return self._drain()
        self._note("agent_exit", agent=agent)
        self._timer(Timer.WATCHDOG_PID, now + WATCHDOG_INTERVAL)
        self._dead_agent = agent
        return self._drain()

    def oom(self, agent: str, now: float) -> list[Action]:
        """The kernel's OOM killer reaps an agent's process (spec §7): the watchdog finds its pid
        dead at the next 1 s check, and its report script (eve:pkg/watchdog/watchdog-report.sh),
        finding ``oom_reaper`` in dmesg, records OOM instead of WATCHDOG_PID; like every watchdog
        reason it does not replace a recorded one, and it names the running partition in
        /persist/reboot-image."""
        if self.phase != Phase.RUNNING:
            return self._drain()
        self._oom = agent
        self._note("oom", agent=agent)
        return self.agent_exit(agent, now)

    def agent_fatal(self, agent: str, now: float) -> list[Action]:
        """An agent calls log.Fatal (spec §7): agentlog's FatalHook (P:agentlog/agentlog.go
        ``FatalHook.Fire``, ``RebootReason``) writes the reason, /persist/reboot-image = the running
        partition and, only if no boot-reason file exists yet, FATAL. The process then exits, so the
        watchdog reboots at its next 1 s pid check; its WATCHDOG_PID does not replace the FATAL."""
        if self.phase != Phase.RUNNING:
            return self._drain()
        ps = self.persist
        cur = self.zboot.current
        text = (
            f"Reboot from agent {agent} in partition {cur} at EVE version {self.running_version}: "
            f"fatal: agent {agent}: log.Fatal"
        )
        if ps.reboot_record is None:
            ps.reboot_record = (BootReason.FATAL, text)
        ps.reboot_image = cur
        self._note("fatal", agent=agent)
        return self.agent_exit(agent, now)

    def kernel_panic(self, now: float) -> list[Action]:
        """The kernel panics while the agents run (spec §7). Every agent stops at once. With kdump
        (``NodeParams.kdump``) the capture kernel's kdump.sh (eve:pkg/kdump/kdump.sh) overwrites
        /persist/boot-reason with KERNEL and reboot-reason with "kernel panic, dmesg collected …",
        leaves /persist/reboot-image alone, sleeps the kernel's panic timeout (120 s) and resets;
        without kdump nothing is recorded and the kernel resets after the same 120 s, so the next
        nodeagent synthesizes KERNEL or UNKNOWN (``_synthesized_reason``). (The capture kernel's own
        boot and dump time is not modelled.)"""
        if self.phase != Phase.RUNNING:
            return self._drain()
        ps = self.persist
        if self.p.kdump:
            ps.reboot_record = (BootReason.KERNEL, f"kernel panic, dmesg collected: /persist/kcrashes/dmesg-{now:.0f}.log")
        self._note("kernel_panic", kdump=self.p.kdump, version=self.running_version)
        self._out.append(CancelAll())
        self._logs_stop(now)
        self._reset_volatile()
        self.phase = Phase.REBOOTING  # the machine runs, nothing of EVE does, until the reset
        self._timer(Timer.CRASH, now + PANIC_TIMEOUT)
        return self._drain()

    def _watchdog_reason(self, reason: BootReason) -> BootReason:
        """watchdog-report.sh: an OOM line in dmesg makes any watchdog reboot OOM (spec §7)."""
        return BootReason.OOM if self._oom else reason

    def _oom_text(self) -> str:
        return f"; dmesg: oom_reaper: reaped process ({self._oom})" if self._oom else ""

    def _synthesized_reason(self, power_lost: bool) -> tuple[BootReason, str]:
        """nodeagent's reason for a boot nobody recorded (§7, P:cmd/nodeagent/nodeagent.go
        ``synthesizeRebootReason``): with SMART power-cycle counters a power cut is POWER_FAIL
        and any other reset KERNEL; without them both are UNKNOWN. (A hardware watchdog's
        CARDRESET, HW_WATCHDOG, is not modelled.)"""
        if not self.p.smart_power_cycles:
            return BootReason.UNKNOWN, "Unknown reboot reason: no SMART power-cycle count on this storage"
        if power_lost:
            return BootReason.POWER_FAIL, "Reboot reason: power failure (SMART power-cycle count increased)"
        return BootReason.KERNEL, "Reboot reason: kernel (SMART power-cycle count unchanged)"

    def _booted(self, now: float) -> None:
        """Kernel and linuxkit services are up: nodeagent decides the boot reason, agents start."""
        self.phase = Phase.RUNNING
        self.agents_at = now
        ps = self.persist
        ps.boots_without_agents = 0
        ps.restart_counter += 1  # §7 restartCounter
        record, ps.reboot_record = ps.reboot_record, None
        reboot_image, ps.reboot_image = ps.reboot_image, None  # nodeagent deletes the old files
        if record is not None:
            reason, text = record
        elif ps.restart_counter == 1:
            reason, text = BootReason.FIRST, ""
        else:
            reason, text = self._synthesized_reason(ps.power_lost)
        ps.power_lost = False
        zb = self.zboot
        cur, other = zb.current_partition, zb.other_partition
        self.rolled_back = None
        if cur.state == PartitionState.ACTIVE and other.state == PartitionState.INPROGRESS and getattr(self, "_prev_booted", None) == other.label:
            # §3 "Controller view of a rollback": the one test boot of `other` ended before its
            # commit, so GRUB came back to the active image. The boot reason is what was recorded
            # or synthesized (FALLBACK only from nodeagent's own timer); the failed version gets a
            # swErr only when /persist/reboot-image does not name the partition now running
            # (P:cmd/baseosmgr/handlebaseos.go handleOtherPartRebootReason). An image that died
            # before its nodeagent ran leaves the old image's stale UPDATE record and no swErr.
            self.rolled_back = other.version
            if reboot_image != cur.label:
                ps.failed[other.version or ""] = text or reason.name
        self.boot_reason, self.boot_reason_text = reason, text
        self.testing = cur.state == PartitionState.INPROGRESS
        self.net_broken = self.image is not None and self.image.behaviour == NO_CONTROLLER
        # Vault (§5): unseal locally when the PCRs match the sealing policy.
        self.vault_at = now
        if not self.p.tpm:
            self.vault_unlocked = True
        elif ps.seal is None:
            ps.vault_key = f"vault-{self.p.serial}"
            ps.seal = seal_digest(self.pcrs)
            self.vault_unlocked = True
        else:
            self.vault_unlocked = ps.seal == seal_digest(self.pcrs)
        self._note(
            "booted",
            reason=reason.name,
            partition=cur.label,
            version=cur.version,
            testing=self.testing,
            vault="unlocked" if self.vault_unlocked else "locked",
            **({"rolled_back": self.rolled_back} if self.rolled_back is not None else {}),
        )
        if not self.vault_unlocked:
            self._note("vault_locked")
        if self.p.hang_per_day > 0:
            self._timer(Timer.HANG, now + float(self.luck.exponential(86400.0 / self.p.hang_per_day)))
        if ps.disk_full:  # volumemgr and tpmmgr report again at start (disk_space, tpm_sanity)
            self._set_local_maintenance(MaintenanceModeReason.LOW_DISK_SPACE, True, now)
        if ps.tpm_broken:
            self._set_local_maintenance(MaintenanceModeReason.TPM_ENCRYPTION_FAILURE, True, now)
        if ps.dpcs is not None:
            # §4 ingestDPCList: the persisted list is verified again from index 0 at boot.
            self._dpc_restart_verify(now)
        self._start_onboarding(now)
        self._arm_nodeagent(now)

    # ------------------------------------------------------------------------------- onboarding --
    def _start_onboarding(self, now: float) -> None:
        """device-steps.sh runs ``client selfRegister getUuid`` on every boot (§1)."""
        self.onboarding = True
        self._ob_backoff = ONBOARD_BACKOFF_START
        # EVE's client is one process per boot: what it got stays got for this boot only.
        self._got_certs = False
        self._onboard_attempt(now)
        if self.onboarded:
            self._timer(Timer.ONBOARD_FAST, now + ONBOARD_FAST_PATH)

    def _onboard_attempt(self, now: float) -> None:
        """One attempt of ``tryRegister`` in P:cmd/client/client.go ``Run`` (§1 Onboarding):
        ``certs`` only until the first success of the boot, then ``register`` on every attempt
        (``selfRegister`` reports not-done for every HTTP answer, 200/201 included, so
        ``gotRegister`` is never set), then ``uuid``; a failed ``uuid`` is posted a second time at
        once. So every failed attempt is register + uuid + uuid."""
        if not self._got_certs:
            self._send("certs", {}, now)
        else:
            self._send("register", {"serial": self.p.serial, "cert": f"device-cert-{self.p.serial}"}, now)

    def _onboard_failed(self, now: float) -> None:
        self._timer(Timer.ONBOARD, now + self._ob_backoff)
        self._ob_backoff = min(self._ob_backoff * 2, ONBOARD_BACKOFF_CAP)

    def _onboard_response(self, kind: str, status: int, body: dict[str, Any], now: float, ctx: Any = None) -> None:
        if not self.onboarding:
            return
        if kind == "certs":
            if status == 200:
                self._got_certs = True
                self._onboard_attempt(now)
            else:
                self._onboard_failed(now)
        elif kind == "register":
            if status not in (200, 201):
                self._note("register_refused", status=status)
            # §1 selfRegister: the answer only sets the LED (200/201 onboarded, 409 conflict, 403
            # not found, …); uuid is tried whatever it was, so a refused device still onboards.
            self._send("uuid", {}, now, ctx=1)
        elif kind == "uuid":
            if status in (200, 201):
                first = not self.onboarded
                self.persist.uuid = body.get("uuid", self.p.device_id)
                self.onboarding = False
                if first:
                    self._note("onboarded", uuid=self.persist.uuid)
                self._start_zedagent(now)
            elif ctx == 1:
                self._send("uuid", {}, now, ctx=2)  # §1: a failed uuid is posted a second time at once
            else:
                self._onboard_failed(now)

    # -------------------------------------------------------------------------------- zedagent --
    def _start_zedagent(self, now: float) -> None:
        if self.zedagent or "zedagent" in self.hung:
            return
        self.zedagent = True
        # §1: the config hash lives in memory only, so the first poll of every boot sends "" and
        # gets the full config; the saved config is read only if that poll fails (_read_saved).
        self.last_hash = ""
        self.saved_read = False
        bos = self.persist.bos
        if bos is not None:
            # Download or write progress dies with the reboot; baseosmgr starts that step again.
            if bos["zsw"] == ZSwState.DOWNLOAD_STARTED:
                bos["zsw"] = ZSwState.INITIAL
            elif bos["zsw"] == ZSwState.LOADING:
                bos["zsw"] = ZSwState.DELIVERED
        self._timer(Timer.CONFIG, now)  # first poll at start (§1)
        self._uuid_lookup_at = now  # lastDevUUIDChange starts at zedagent start (§1)
        self._timer(Timer.METRICS, now + self.rng.uniform(0.3, 1.0) * self.item("timer.metric.interval"))
        self._timer(Timer.DEVICEINFO, now + self.rng.uniform(0.8, 1.2) * self.item("timer.deviceinfo.interval"))
        self._timer(Timer.PORTTEST, now + self.item("timer.port.testinterval"))
        self.logs = LogUploader(self.persist.logs, now)
        self._timer(Timer.LOGS, now + LOG_INTERVAL)  # loguploader's first upload timer (§1)
        if self._reverify is None or self.persist.dpcs is None:
            self.dpc_state = DPCState.SUCCESS
        if self.p.tpm:
            self._post_edge_certs(now)  # publishEdgeNodeCertsToController at zedagent start (§5)
        self._attest_start(now)
        self._publish(now)

    def _read_saved(self, now: float) -> None:
        """zedagent after a failed poll with no config received or read in this boot (§1,
        P:cmd/zedagent/handleconfig.go ``requestConfigByURL``): lastconfig, or lastconfig.bak when
        the boot reason is not one that starts with the saved config; status ReadSaved, ONLINE,
        apps and base OS from it."""
        self.saved_read = True
        ps = self.persist
        cfg = ps.config if self.boot_reason in _START_WITH_LASTCONFIG else (ps.config_bak or ps.config)
        if cfg is None:
            return
        self.config_received = True
        self.config_status = ConfigGetStatus.READ_SAVED
        self._note("config_read_saved", file="lastconfig" if cfg is ps.config else "lastconfig.bak")
        self.api_maintenance = bool(cfg.get("maintenance"))
        self._merge_maintenance(now)
        if not self.maintenance and self.vault_unlocked:  # baseosmgr waits for the vault too (§5)
            self._apply_baseos(cfg.get("baseos"), now)
        self._resume_apps(cfg, now)
        self._publish(now)

    def _config_tick(self, now: float) -> None:
        self._timer(Timer.CONFIG, now + self.rng.uniform(0.3, 1.0) * self.item("timer.config.interval"))
        if self.poll_inflight:
            # §1 flexTicker: a tick during a running poll is held (one deep) and the next poll
            # starts as soon as that one returns.
            self.poll_pending = True
            return
        self._poll(now)

    def _poll(self, now: float) -> None:
        self.poll_inflight = True
        self.poll_pending = False
        self._send("config", {"hash": self.last_hash, "token": self.token}, now, ctx=self.token)

    def _update_inprogress(self) -> bool:
        """zedagent's ``updateInprogress`` (§1): the current partition is inprogress. Not while the
        other one is only ``updating``: the config poll's TemporaryFail needs the test boot."""
        zb = self.zboot
        return zb.current is not None and zb.current_partition.state == PartitionState.INPROGRESS

    def _config_response(self, status: int, body: dict[str, Any], now: float, sent_token: str | None = None) -> None:
        self.poll_inflight = False
        error = body.get("error", "")
        if status in (200, 304):
            self._contact(now, ConfigGetStatus.SUCCESS)
            cfg = body.get("config")
            if status == 200 and cfg is not None and cfg.get("hash") != self.last_hash:
                self._apply_config(cfg, now)
            elif not self.config_received:
                self.config_received = True
                self._publish(now)
            return
        temporary = status in (503, 404, 400, 403) or error == "refused"
        if self._update_inprogress() and temporary:
            # TemporaryFail: only during a base-OS update; counts as reachable but restarts the
            # test window, so a 503-ing controller blocks the commit (§1, §3 step 5).
            self._contact(now, ConfigGetStatus.TEMPORARY_FAIL)
            if self.test_start is not None:
                self.test_start = now
        else:
            if self.config_status in (ConfigGetStatus.SUCCESS, ConfigGetStatus.TEMPORARY_FAIL):
                # §3 step 7: nodeagent refreshes lastControllerReachableTime on every 10 s tick
                # while its copy of the status is Success/TemporaryFail, and that copy changes
                # only now, when a poll has failed: silence counts from the last tick before this.
                self.reachable_until = self._tick_at_or_before(now)
            self.config_status = ConfigGetStatus.FAIL
        if not self.config_received and not self.saved_read:
            self._read_saved(now)
        if status == 403 and self.quote_sent:
            self._attest_restart_requested(sent_token, now)
        if status in (404, 400):
            self._potential_uuid_update(now)
        self._note("config_fail", status=status, error=error)

    def _potential_uuid_update(self, now: float) -> None:
        """Config 404/400 ("device deleted in controller?"): ``client getUuid`` at most every
        10 min, the first not before 10 min after zedagent start (§1, P:cmd/zedagent/handleconfig.go
        ``potentialUUIDUpdate``; one lookup at a time, its pidfile check). The model sends one
        ``uuid`` request per lookup, not the client's retry loop."""
        if self._uuid_lookup_inflight or self._uuid_lookup_at is None or now - self._uuid_lookup_at < UUID_LOOKUP_EVERY:
            return
        self._uuid_lookup_at = now
        self._uuid_lookup_inflight = True
        self._note("uuid_lookup")
        self._send("uuid", {}, now, ctx="lookup")

    def _uuid_lookup_response(self, status: int, body: dict[str, Any], now: float) -> None:
        """A UUID the controller gives now replaces the old one (P:cmd/client/client.go
        ``finalizeOnboarding``): requests go to the new ``id/<uuid>/`` and the next config is a
        full one."""
        self._uuid_lookup_inflight = False
        new = body.get("uuid") if status in (200, 201) else None
        if not new or new == self.persist.uuid:
            return
        self._note("uuid_changed", old=self.persist.uuid, new=new)
        self.persist.uuid = new
        self.last_hash = ""
        self._publish(now)

    def _contact(self, now: float, status: ConfigGetStatus) -> None:
        was = self.config_status
        self.config_status = status
        self.last_contact = now
        if self.first_success is None and status == ConfigGetStatus.SUCCESS:
            self.first_success = now
            self._arm_nodeagent(now)  # vault cutoff counts from the first config Success (§5)
        if self.testing and self.test_start is None:
            self.test_start = now  # §3 step 5: the window starts at the first ConfigGetSuccess
            self._note("test_window_start")
            self._arm_nodeagent(now)
        if was not in (ConfigGetStatus.SUCCESS, ConfigGetStatus.TEMPORARY_FAIL):
            self._note("controller_reachable")
            if self._info_dirty and not self._info_inflight:
                self._info_waiting = False
                self._send_info(now)  # reliable queue kicked on reconnect (§1)

    def note_contact(self, when: float) -> None:
        """Driver hook: a bulk-answered 304 poll succeeded at ``when`` (see :meth:`quiescent`)."""
        if when > self.last_contact:
            self.last_contact = when

    def _apply_config(self, cfg: dict[str, Any], now: float) -> None:
        """parseconfig.go order and skips (§1)."""
        ps = self.persist
        self.last_hash = cfg.get("hash", "")
        ps.config = cfg
        # lastconfig.bak: made at the first save, then refreshed when a config comes more than
        # timer.test.baseimage.update after the last backup (§1 configTimerTask; the ≤25 s loop
        # delay is not modelled; a clock that went back, a new agent process, counts as elapsed).
        if ps.config_bak is None or ps.config_bak_at is None or not 0 <= now - ps.config_bak_at <= self.item("timer.test.baseimage.update"):
            ps.config_bak, ps.config_bak_at = cfg, now
        self.config_received = True
        old_interval = self.item("timer.config.interval")
        errors = ps.items.apply(cfg.get("items", {}))
        self.items_version += 1
        if errors:
            self._note("config_item_errors", keys=[e.key for e in errors])
        if self.item("timer.config.interval") != old_interval:
            self._timer(Timer.CONFIG, now)  # a changed interval applies at once and forces a tick (§1)
        self._arm_nodeagent(now)
        # parseConfig merges maintenance_mode (and parseConfigItems maintenance.mode) first (§7)
        self.api_maintenance = bool(cfg.get("maintenance"))
        self._merge_maintenance(now)
        if self._force_fallback(now):
            return
        rc = cfg.get("reboot")
        if rc is not None:
            if ps.reboot_seen is None:
                ps.reboot_seen = rc  # the first counter ever seen is only stored (§1)
            elif rc != ps.reboot_seen:
                ps.reboot_seen = rc
                if self.testing:
                    self.deferred_reboot = True  # deferred until the test completes (§1)
                else:
                    self._reboot(now, BootReason.REBOOT_CMD, "Reboot from controller")
                    self._publish(now)
                    return  # the rest of the config is ignored (still saved)
        if self._shutdown_cmd(cfg.get("shutdown"), now) or self.node_op is not None:
            self._publish(now)
            return  # parseConfig: the rest is ignored while a shutdown is set (§1)
        if self.maintenance:
            self._publish(now)
            return  # apps and baseOS deferred in maintenance mode (§7)
        # §4 parseconfig.go: system adapters (the network config) come after the reboot and
        # maintenance checks and before the base OS; they do not wait for the vault.
        self._apply_network(cfg.get("network"), now)
        if not self.vault_unlocked:
            # §5: baseosmgr, volumemgr and domainmgr wait for the vault; the saved config is
            # applied when it unlocks (_vault_ready).
            self._publish(now)
            return
        skip_apps = self._apply_baseos(cfg.get("baseos"), now)
        if not skip_apps:
            self._apply_apps(cfg.get("apps", {}), now)
        self._publish(now)

    def _update_reboot_text(self) -> str:
        """nodeagent's reboot for any other=updating partition, an update, a retry or a forced
        fallback alike (P:cmd/nodeagent/handlebaseos.go ``doZbootBaseOsInstallationComplete``)."""
        other = self.zboot.other_partition
        return f"NORMAL: baseos-update({other.label}) to EVE version {other.version or '(unknown)'} reboot"

    def _force_fallback(self, now: float) -> bool:
        """§3 (P:cmd/baseosmgr/forcefallback.go): a changed ``force.fallback.counter`` makes the
        other partition ``updating`` and reboots into it, if current is active and the other is
        unused with a version. No saved counter yet: only stored. The new value is saved only when
        the fallback happens, so a change whose preconditions fail stays pending and acts once they
        hold (checked again when the partitions change: the commit)."""
        ps = self.persist
        ff = int(ps.items.get("force.fallback.counter"))  # type: ignore[arg-type]
        if ps.force_fallback_seen is None:
            ps.force_fallback_seen = ff
            return False
        if ff == ps.force_fallback_seen or not self.zboot.can_force_fallback() or self.rebooting is not None:
            return False
        ps.force_fallback_seen = ff
        self.zboot.set_updating(self.zboot.other_partition.label)
        self._reboot(now, BootReason.UPDATE, self._update_reboot_text())
        self._publish(now)
        return True

    # -------------------------------------------------------------------------------- base OS --
    def _apply_baseos(self, bos: dict[str, Any] | None, now: float) -> bool:
        """baseosmgr (§3). Returns True when app config must wait for the update reboot."""
        ps = self.persist
        if not bos:
            return False
        version, image, activate, retry = bos["version"], bos["image"], bool(bos.get("activate", True)), bos.get("retry", 0)
        # §3 handleUpdateRetryCounter: compared with the saved counter (a file, 0 when absent); a
        # change while the current partition is not active is ignored and not saved.
        if self.zboot.current is not None and self.zboot.current_partition.state == PartitionState.ACTIVE:
            retry_changed = retry != (ps.retry_seen or 0)
            ps.retry_seen = retry
        else:
            retry_changed = False
        entry = ps.bos
        if entry is None or entry["version"] != version:
            entry = ps.bos = {"version": version, "image": image, "activate": activate, "zsw": ZSwState.INITIAL, "err": ""}
            self.downloads.pop("bos", None)  # the old version's DownloaderConfig goes away (§3 step 1)
            self._note("baseos_config", version=version, activate=activate)
        entry["activate"] = activate
        zb = self.zboot
        cur, other = zb.current_partition, zb.other_partition
        if cur.version == version:
            entry["zsw"] = ZSwState.INSTALLED
            entry["err"] = ""
            return False
        if other.version == version and other.state == PartitionState.INPROGRESS:
            if retry_changed and activate and zb.can_retry(version):
                zb.set_updating(other.label)  # §3 retry: other=updating -> reboot
                ps.failed.pop(version, None)
                entry.update(zsw=ZSwState.INSTALLED, err="")
                self._note("baseos_retry", version=version)
                self._reboot(now, BootReason.UPDATE, self._update_reboot_text())
                return True
            entry["zsw"] = ZSwState.INSTALLED
            # validatePartition quotes the failed boot's error, which is none when reboot-image
            # names the running partition (P:cmd/baseosmgr/handlebaseos.go handleOtherPartRebootReason).
            entry["err"] = ps.failed.get(version, "")
            return False  # EVE does not retry a failed version (§3)
        if other.version == version and other.state == PartitionState.UPDATING:
            return True
        if self.rebooting is not None:
            return True
        startable = entry["zsw"] in (ZSwState.INITIAL, ZSwState.DOWNLOAD_STARTED) and "bos" not in self.downloads
        if startable and self.vault_unlocked:
            # §3 step 1: download and verify first; a TooEarly refusal only blocks the install.
            # A download cut by a reboot starts again from byte 0 (the downloader's state is volatile).
            entry["zsw"] = ZSwState.DOWNLOAD_STARTED
            info = self.p.images.get(image)
            size = info.size if info is not None else 300 * 2**20
            self._note("baseos_download", version=version)
            self._dl_start("bos", size, now, verify_ok=info.verify_ok if info is not None else True)
        elif entry["zsw"] == ZSwState.DELIVERED and activate:
            self._bos_install(now)
        return activate and not entry.get("too_early")

    def _bos_install(self, now: float) -> None:
        """Write the delivered image into the other partition unless baseosmgr refuses (§3 step 2)."""
        e = self.persist.bos
        assert e is not None
        refuse = self.zboot.refuse_reason(e["version"])
        e["too_early"] = refuse == REFUSE_TOO_EARLY
        if refuse is None:
            self._bos_write(now)

    def _bos_downloaded(self, now: float) -> None:
        e = self.persist.bos
        if not e or e["zsw"] != ZSwState.DOWNLOAD_STARTED:
            return
        e["zsw"] = ZSwState.DELIVERED
        if e["activate"]:
            self._bos_install(now)
        self._publish(now)

    def _bos_write(self, now: float) -> None:
        e = self.persist.bos
        assert e is not None
        size = self.p.images[e["image"]].size if e["image"] in self.p.images else 300 * 2**20
        e["zsw"] = ZSwState.LOADING
        self._timer(Timer.BOS_WRITE, now + size / self.p.write_speed)

    def _bos_written(self, now: float) -> None:
        e = self.persist.bos
        if not e or e["zsw"] != ZSwState.LOADING:
            return
        zb = self.zboot
        if self.p.write_error and self.luck.random() < self.p.write_error:
            # Read-back mismatch: the partition is left unused and the update fails (§3 step 2).
            zb.write_other(None)
            e.update(zsw=ZSwState.INSTALLED, err="version read back from the partition does not match")
            self._publish(now)
            return
        zb.write_other(e["version"], e["image"])
        zb.set_updating(zb.other_partition.label)
        e["zsw"] = ZSwState.INSTALLED
        self._note("baseos_installed", version=e["version"], partition=zb.other_partition.label)
        self._reboot(now, BootReason.UPDATE, self._update_reboot_text())
        self._publish(now)

    def _commit(self, now: float) -> None:
        """Test window expired: TestComplete -> MarkCurrentPartitionStateActive (§3 step 6)."""
        zb = self.zboot
        self.zboot.mark_current_active()
        self.testing = False
        self.test_start = None
        e = self.persist.bos
        if e and e["version"] == zb.current_partition.version:
            e.update(zsw=ZSwState.INSTALLED, err="")
        self._note("update_committed", version=zb.current_partition.version)
        self._publish(now)
        if self.deferred_reboot:
            self.deferred_reboot = False
            self._reboot(now, BootReason.REBOOT_CMD, "Reboot from controller (deferred by update test)")
        elif self.deferred_shutdown:
            self.deferred_shutdown = False
            self._node_operation("shutdown", now)
        elif self.deferred_poweroff:
            self.deferred_poweroff = False
            self._node_operation("poweroff", now, "TestComplete and deferred Poweroff Cmd")
        elif self._force_fallback(now):
            pass  # a pending forced fallback acts now that the old image sits in the unused partition
        elif self.persist.config is not None:
            self._apply_baseos(self.persist.config.get("baseos"), now)
            self._apply_apps(self.persist.config.get("apps", {}), now)

    # ------------------------------------------------------------------------ shutdown, power-off --
    def _shutdown_cmd(self, counter: int | None, now: float) -> bool:
        """EdgeDevConfig.shutdown (DeviceOpsCmd, §1; P:cmd/zedagent/parseconfig.go
        ``scheduleDeviceOperation``): the first counter ever seen is only stored; a change shuts
        the apps down (deferred during the update test, like a reboot). True when one starts."""
        ps = self.persist
        if counter is None or counter == ps.shutdown_seen:
            return False
        first = ps.shutdown_seen is None
        ps.shutdown_seen = counter  # saved and echoed in shutdown_config_counter
        if first:
            return False
        if self.testing:
            self.deferred_shutdown = True
            return False
        self._node_operation("shutdown", now)
        return True

    def poweroff_cmd(self, now: float) -> list[Action]:
        """The local profile server's COMMAND_GRACEFUL_POWEROFF (§7; P:cmd/zedagent/localcommand.go
        ``processReceivedDevCommands``, DevCommandShutdownPoweroff). The controller cannot ask for
        it: EdgeDevConfig has only ``shutdown`` (P:types/zedagenttypes.go DeviceOperationPoweroff
        "Not settable from controller"). POWERING_OFF, the reason POWEROFF_CMD with "NORMAL: local
        profile server power off", apps halted, then the device powers off. During the update
        test it waits for TestComplete (``poweroffCmdDeferred``); one in progress is not repeated."""
        if self.phase != Phase.RUNNING or not self.zedagent:
            return self._drain()
        if self.testing:
            self.deferred_poweroff = True
            self._note("poweroff_deferred")
        else:
            self._node_operation("poweroff", now, "NORMAL: local profile server power off")
        return self._drain()

    def _node_operation(self, op: str, now: float, text: str = "") -> None:
        """nodeagent's ``handleNodeOperation`` for shutdown and power-off (§3 reboot procedure):
        30 s, the reason written (power-off only), apps halted (at most 300 s, polled every 5 s),
        then a shutdown stops there (PREPARED_POWEROFF, the device stays up) and a power-off waits
        30 s more and powers off (P:cmd/nodeagent/handletimers.go, P:cmd/zedagent/reportinfo.go
        ``getDeviceState``).

        A power-off after a shutdown runs too (localcommand.go checks only poweroffCmd; nodeagent
        starts one more ``handleNodeOperation``): the device keeps reporting the shutdown's state,
        which ``getDeviceState`` checks first, until it powers off."""
        if self.rebooting is not None or self.phase != Phase.RUNNING:
            return
        if self.node_op is not None and not (op == "poweroff" and self.node_op == "shutdown"):
            return
        if op == "shutdown":
            self.shutdown_cmd = True
        if not self.shutdown_cmd:
            self.all_halted = False
        self.node_op = op
        self._node_op_text = text
        self._node_op_stage = 0
        self._note("node_operation", op=op)
        for app in self.apps.values():  # shutdownAppsGlobal: Activate cleared, the apps halt
            if app["state"] == ZSwState.RUNNING:
                app["state"] = ZSwState.HALTING
            elif app["state"] not in (ZSwState.ERROR, ZSwState.HALTING):
                app["state"] = ZSwState.HALTED  # not started yet: nothing to halt, it stays put
        self._timer(Timer.NODEOP, now + REBOOT_PRE_WAIT)
        self._publish(now)

    def _node_op_step(self, now: float) -> None:
        if self.node_op is None:
            return
        if self._node_op_stage == 0:
            if self.node_op == "poweroff":
                self.persist.reboot_record = (BootReason.POWEROFF_CMD, self._node_op_text)
                self.persist.reboot_image = self.zboot.current
            halting = [a for a in self.apps.values() if a["state"] == ZSwState.HALTING]
            halt = sum(float(self.rng.uniform(2.0, 10.0)) for _ in halting)
            halt = min(300.0, HALT_POLL * math.ceil(halt / HALT_POLL)) if halt else 0.0
            self._node_op_stage = 1
            self._timer(Timer.NODEOP, now + halt)
        elif self._node_op_stage == 1:
            for app in self.apps.values():
                if app["state"] == ZSwState.HALTING:
                    app["state"] = ZSwState.HALTED
            self.all_halted = True
            self._note("all_domains_halted", op=self.node_op)
            self._publish(now)
            if self.node_op == "poweroff":
                self._node_op_stage = 2
                self._timer(Timer.NODEOP, now + REBOOT_POST_WAIT)
        else:
            self._note("powered_off")
            self._out.append(CancelAll())
            self._reset_volatile()
            self.phase = Phase.OFF

    # ----------------------------------------------------------------------------- maintenance --
    def _set_local_maintenance(self, reason: MaintenanceModeReason, on: bool, now: float) -> None:
        """nodeagent's ``addMaintenanceModeReason`` / ``removeMaintenanceModeReason`` (§7)."""
        if on == (reason in self.local_maintenance):
            return
        (self.local_maintenance.add if on else self.local_maintenance.discard)(reason)
        self._note("maintenance_reason", reason=reason.name, on=on)
        self._merge_maintenance(now)

    def _merge_maintenance(self, now: float) -> None:
        """zedagent's ``mergeMaintenanceMode`` (§6, §7; P:cmd/zedagent/parseconfig.go): configItem
        ``maintenance.mode`` enabled -> [USER_REQUESTED] only; disabled -> never in maintenance,
        whatever the local reasons (VAULT_LOCKED_UP included); none -> the config's
        maintenance_mode as [USER_REQUESTED] only, else nodeagent's local reasons. Leaving
        maintenance forgets the config hash and fetches the config at once
        (``forgetConfigHashOnLeavingMaintenanceMode``, ``triggerGetConfig``)."""
        mode = self.items.get("maintenance.mode")
        if mode == "enabled":
            merged = {MaintenanceModeReason.USER_REQUESTED}
        elif mode == "disabled":
            merged = set()
        elif self.api_maintenance:
            merged = {MaintenanceModeReason.USER_REQUESTED}
        else:
            merged = set(self.local_maintenance)
        if merged == self.maintenance:
            return
        left = bool(self.maintenance) and not merged
        self.maintenance = merged
        self._note("maintenance", reasons=sorted(r.name for r in merged))
        if left and self.zedagent:
            self.last_hash = ""
            self._timer(Timer.CONFIG, now)
        self._publish(now)

    def _post_edge_certs(self, now: float) -> None:
        """POST attest ATTEST_REQ_CERT with the device's ECDH, attestation-key and EK certs (§5; the
        driver fills them in from the TPM; P:cmd/zedagent/handlecertconfig.go
        ``publishEdgeNodeCertsToController``), at zedagent start and 10 s after a failed post."""
        self._send("attest", {"type": "CERT"}, now, ctx="edge_certs")

    def _on_edge_certs_timer(self, now: float) -> None:
        if self.zedagent and not self._edge_certs_published:
            self._post_edge_certs(now)

    def _edge_certs_answer(self, status: int, now: float) -> None:
        """The deferred queue's sent handler for ATTEST_REQ_CERT (§5; P:cmd/zedagent/zedagent.go
        ``getDeferredSentHandlerFunction``): accepted -> published, the reason is cleared; refused
        while the config status is Success and before any acceptance -> maintenance
        EDGE_NODE_CERTS_REFUSED; refused without config contact -> cleared (decided again once the
        controller is back); a 404 also looks the UUID up; until accepted, posted again 10 s later."""
        if 200 <= status < 300:
            self._edge_certs_published = True
            self._set_local_maintenance(MaintenanceModeReason.EDGE_NODE_CERTS_REFUSED, False, now)
            return
        if status == 404:
            self._potential_uuid_update(now)
        if not self._edge_certs_published and self.config_status == ConfigGetStatus.SUCCESS:
            self._set_local_maintenance(MaintenanceModeReason.EDGE_NODE_CERTS_REFUSED, True, now)
        elif self.config_status != ConfigGetStatus.SUCCESS:
            self._set_local_maintenance(MaintenanceModeReason.EDGE_NODE_CERTS_REFUSED, False, now)
        if not self._edge_certs_published:
            self._timer(Timer.EDGE_CERTS, now + EDGE_CERTS_RETRY)

    def disk_space(self, remaining: int, now: float) -> list[Action]:
        """volumemgr's RemainingSpace: 0 -> maintenance LOW_DISK_SPACE, more -> cleared (§7,
        P:cmd/nodeagent/nodeagent.go ``handleVolumeMgrStatusImpl``). Kept across reboots (it
        is the disk's state; volumemgr publishes it again at start)."""
        self.persist.disk_full = remaining <= 0
        if self.phase == Phase.RUNNING:
            self._set_local_maintenance(MaintenanceModeReason.LOW_DISK_SPACE, self.persist.disk_full, now)
        return self._drain()

    def tpm_sanity(self, ok: bool, now: float) -> list[Action]:
        """tpmmgr's sanity check (§5, hourly and at start): TPM_ENCRYPTION_FAILURE puts the device
        in maintenance mode, a passing check clears it (``handleTpmStatusImpl``). Kept across
        reboots (it is the TPM's state). A device without a TPM has no such check."""
        if not self.p.tpm:
            return self._drain()
        self.persist.tpm_broken = not ok
        if self.phase == Phase.RUNNING:
            self._set_local_maintenance(MaintenanceModeReason.TPM_ENCRYPTION_FAILURE, not ok, now)
        return self._drain()

    # ------------------------------------------------------------------------------- downloads --
    def links(self, down: frozenset[str] | set[str], now: float) -> list[Action]:
        """Input: the set of ports whose link is down changed. A download depends on the links
        (§4): without a usable port it makes no progress and stalls after ``timer.download.stalled``."""
        self.links_down = set(down)
        if self.phase == Phase.RUNNING:
            self._dl_links_changed(now)
        return self._drain()

    def _dl_rate(self) -> float:
        """Bytes/s over the usable ports, or -1 when none passes the cost gate (§4, P:cmd/downloader/
        syncop.go ``handleSyncOp``: ``CountLocalAddrNoLinkLocalWithCost``). A port with its link
        down has no address, so it does not count. Datastores on ``.local`` hosts (exempt from the
        gate) are not modelled."""
        max_cost = self.item("network.download.max.cost")
        dpc = self.ports()
        usable = [
            p for p in self.p.ports
            if p.name in dpc and p.mgmt and p.name not in self.links_down and p.cost <= max_cost
        ]
        if not usable:
            return -1.0
        return min(max(p.speed for p in usable), WAN_RATE)

    def _dl_start(self, key: str, size: int, now: float, *, verify_ok: bool = True) -> None:
        """A new DownloaderConfig: runHandler's retry ticker starts with it, then the first attempt
        (P:cmd/downloader/downloader.go ``runHandler``: ``NewRangeTicker(0.3 x retry, retry)``)."""
        if key in self.downloads:
            return
        # The ticker's range is fixed when runHandler starts; a later timer.download.retry changes
        # only the "since the error" check (maybeRetryDownload reads the current value).
        d = self.downloads[key] = Download(size=size, verify_ok=verify_ok, tick=self.item("timer.download.retry"))
        self._timer(KeyedTimer(TimerFamily.DOWNLOAD_RETRY, key), now + float(self.rng.uniform(0.3, 1.0)) * d.tick)
        self._dl_attempt(key, now)

    def _dl_attempt(self, key: str, now: float) -> None:
        d = self.downloads[key]
        d.start(now, self._dl_rate(), int(self.item("network.download.max.cost")))
        if d.state == "error":
            self._note("download_failed", key=key, err=d.err)
        self._dl_timers(key, now)
        self._dl_report(key, now)

    def _dl_timers(self, key: str, now: float) -> None:
        d = self.downloads[key]
        if d.state != "running":
            return
        if d.finish_at is not None:
            # The base-OS timer keeps its name: the reference image's platform gates on it (eden/agent/platform.py).
            self._timer(Timer.BOS_DOWNLOAD if key == "bos" else KeyedTimer(TimerFamily.DOWNLOAD, key), d.finish_at)
        else:
            self._timer(KeyedTimer(TimerFamily.DOWNLOAD_STALL, key), d.last_progress + self.item("timer.download.stalled"))

    def _dl_links_changed(self, now: float) -> None:
        for key in sorted(self.downloads):
            d = self.downloads[key]
            if d.state == "running":
                was = d.rate
                d.set_rate(now, max(self._dl_rate(), 0.0))
                self._dl_timers(key, now)
                if (was > 0) != (d.rate > 0):
                    self._dl_report(key, now)

    def _dl_report(self, key: str, now: float) -> None:
        """Copy progress and error to the owner (ContentTreeStatus -> BaseOsStatus / AppInstanceStatus):
        the error stays set during a retry and clears only on success (``maybeRetryDownload``)."""
        d = self.downloads[key]
        d.advance(now)
        if key == "bos":
            e = self.persist.bos
            if e is not None and e["zsw"] == ZSwState.DOWNLOAD_STARTED:
                e["err"] = d.err
        else:
            app = self.apps.get(key[4:])
            if app is not None:
                app["err"] = d.err
        self._publish(now)

    def _dl_finished(self, key: str, now: float) -> None:
        d = self.downloads.get(key)
        if d is None or d.state != "running" or d.finish_at is None or now < d.finish_at - 1e-6:
            return  # moved or stopped since the timer was set
        d.advance(now)
        d.done = float(d.size)
        if not d.verify_ok:
            max_retries = int(self.item("blob.download.max.retries"))
            if d.verify_retries < max_retries:
                # P:cmd/volumemgr/updatestatus.go: verify failed -> remove the verify config and
                # download again at once, RetryCount++ (at most blob.download.max.retries).
                d.verify_retries += 1
                self._note("verify_failed", key=key, retry=d.verify_retries)
                self._dl_attempt(key, now)
                return
            d.state = "verify_failed"
            d.finish_at = None
            d.err = f"computed sha256 of {key} does not match the configured sha256"
            self._note("verify_failed", key=key, retry=None)
            self._dl_report(key, now)
            return
        d.state = "verified"
        d.err = ""
        self._dl_report(key, now)
        if key == "bos":
            self._bos_downloaded(now)
        else:
            app = self.apps.get(key[4:])
            if app is not None and app["state"] == ZSwState.DOWNLOAD_STARTED:
                self._app_advance(key[4:], now)

    def _dl_stall_check(self, key: str, now: float) -> None:
        d = self.downloads.get(key)
        if d is None or not d.stalled(now, self.item("timer.download.stalled")):
            return
        d.fail(now, d.stall_error(key, now))  # download.go: "Cancelling due to no progress ..."
        self._note("download_failed", key=key, err=d.err)
        self._dl_report(key, now)

    def _dl_retry_tick(self, key: str, now: float) -> None:
        d = self.downloads.get(key)
        if d is None or d.state in ("verified", "verify_failed"):
            return  # the ticker ends with the download
        self._timer(KeyedTimer(TimerFamily.DOWNLOAD_RETRY, key), now + float(self.rng.uniform(0.3, 1.0)) * d.tick)
        if d.retry_due(now, self.item("timer.download.retry")):
            d.retries += 1  # maybeRetryDownload: RetryCount++, the original error kept until success
            d.err = f"{d.orig_err}; Retrying; attempt {d.retries}"
            self._dl_attempt(key, now)

    # ------------------------------------------------------------------------------- nodeagent --
    def _tick_at_or_before(self, t: float) -> float:
        start = self.agents_at if self.agents_at is not None else t
        return start + math.floor((t - start) / NODEAGENT_TICK + 1e-9) * NODEAGENT_TICK

    def _reachable_at(self, now: float) -> float:
        """nodeagent's lastControllerReachableTime (§3 step 7, P:cmd/nodeagent/handletimers.go
        ``updateTickerTime``): now while the status is Success or TemporaryFail; after a failed
        poll, the last tick before it; never reached since start: the start. ReadSaved and Fail
        are not contact."""
        if self.config_status in (ConfigGetStatus.SUCCESS, ConfigGetStatus.TEMPORARY_FAIL):
            return now
        if self.reachable_until is not None:
            return self.reachable_until
        return self.agents_at if self.agents_at is not None else now

    def _arm_nodeagent(self, now: float) -> None:
        """Schedule the next 10 s nodeagent tick at which some deadline may have passed (§3 step 8).

        Ticks sit on a grid anchored at agent start; the node is woken only at the first tick past
        the earliest deadline, and re-arms itself if that deadline moved in the meantime."""
        if self.phase != Phase.RUNNING or self.agents_at is None:
            return
        deadlines = []
        contact = self._reachable_at(now)
        if self.testing:
            if self.test_start is not None:
                deadlines.append(self.test_start + self.item("timer.test.baseimage.update"))
            deadlines.append(contact + self.item("timer.update.fallback.no.network"))
        deadlines.append(contact + self.item("timer.reboot.no.network"))
        if not self.vault_unlocked and self.first_success is not None and MaintenanceModeReason.VAULT_LOCKED_UP not in self.local_maintenance:
            deadlines.append(max(self.vault_at or now, self.first_success) + self.item("timer.vault.ready.cutoff"))
        due = min(deadlines)
        ticks = max(1, math.ceil((due - self.agents_at) / NODEAGENT_TICK + 1e-9))
        at = self.agents_at + ticks * NODEAGENT_TICK
        while at <= now:
            at += NODEAGENT_TICK
        self._timer(Timer.NODEAGENT, at)

    def _nodeagent_tick(self, now: float) -> None:
        if self.rebooting is not None:
            return
        silent = now - self._reachable_at(now)
        if self.testing:
            if not self.vault_unlocked and self._vault_cutoff_passed(now):
                self._reboot(now, BootReason.VAULT_FAILED, "vault not ready within timer.vault.ready.cutoff during update test")
                return
            fallback = self.item("timer.update.fallback.no.network")
            if silent > fallback:
                self._reboot(
                    now,
                    BootReason.FALLBACK,
                    f"Exceeded fallback outage for controller connectivity {int(fallback)} by {int(silent - fallback)} seconds",
                )
                return
            if self.test_start is not None and now - self.test_start >= self.item("timer.test.baseimage.update"):
                self._commit(now)
        elif not self.vault_unlocked and self._vault_cutoff_passed(now):
            if MaintenanceModeReason.VAULT_LOCKED_UP not in self.local_maintenance:
                self._set_local_maintenance(MaintenanceModeReason.VAULT_LOCKED_UP, True, now)  # §5
        if silent > self.item("timer.reboot.no.network"):
            self._reboot(now, BootReason.DISCONNECT, "no controller connectivity for timer.reboot.no.network")
            return
        self._arm_nodeagent(now)

    def _vault_cutoff_passed(self, now: float) -> bool:
        if self.first_success is None:
            return False
        return now - max(self.vault_at or now, self.first_success) >= self.item("timer.vault.ready.cutoff")

    def _reboot(self, now: float, reason: BootReason, text: str) -> None:
        """nodeagent's reboot procedure (§3): 30 s, write the reason, halt apps, sync, 30 s, reset."""
        if self.rebooting is not None or self.phase != Phase.RUNNING:
            return
        self.rebooting = (reason, text)
        self._reboot_stage = 0
        self._note("reboot_scheduled", reason=reason.name, text=text)
        self._timer(Timer.REBOOT, now + REBOOT_PRE_WAIT)
        self._publish(now)

    def _reboot_step(self, now: float) -> None:
        assert self.rebooting is not None
        reason, text = self.rebooting
        if self._reboot_stage == 0:
            self.persist.reboot_record = (reason, text)  # /persist/reboot-reason, boot-reason
            self.persist.reboot_image = self.zboot.current  # /persist/reboot-image
            running = [a for a in self.apps.values() if a["state"] == ZSwState.RUNNING]
            halt = sum(float(self.rng.uniform(2.0, 10.0)) for _ in running)
            halt = min(300.0, HALT_POLL * math.ceil(halt / HALT_POLL)) if halt else 0.0
            self._reboot_stage = 1
            self._timer(Timer.REBOOT, now + halt + REBOOT_POST_WAIT)
        else:
            self._hard_reset(now, reason, text)

    # ------------------------------------------------------------------------------ attestation --
    def _attest_start(self, now: float) -> None:
        """§5 FSM: NONCE -> QUOTE -> (escrow) -> COMPLETE; errors -> RESTART_WAIT, fixed 15 s."""
        self.attest = AttestState.NONCE_WAIT
        self._attest_pending = False  # §5 handleRetryTimerExpiryAtRestartWait clears the flag
        self._send("attest", {"type": "NONCE"}, now)

    def _attest_restart_requested(self, sent_token: str | None, now: float) -> None:
        """A config 403 after a quote was sent (§1, §5; P:cmd/zedagent/handleconfig.go
        ``getLatestConfig``, P:attest/attest.go ``handleRestart``, ``handleRestartAtStateComplete``).

        As EVE: at COMPLETE the FSM goes to RESTART_WAIT and starts over after 15 s; while a cycle
        runs the request is remembered (one flag) and runs 15 s after that cycle's COMPLETE; in
        RESTART_WAIT it is dropped (the timer's expiry clears the flag).

        Bounded, unlike EVE, so that the token-replacement livelock cannot happen: a 403 for a
        config sent with a token the device no longer holds answers a token already replaced and
        asks for nothing, and the cycle the queue started queues no other. Without this, configs
        sent with the old token while a new one is issued (a slow link) get 403 in every cycle and
        each cycle would queue the next one forever."""
        if sent_token != self.token:
            return  # stale: that token was replaced after the config was sent
        if self.attest == AttestState.COMPLETE:
            self._attest_queued_cycle = False
            self._note("attest_restart", why="config 403")
            self._attest_restart_wait(now)
        elif self.attest != AttestState.RESTART_WAIT and not self._attest_queued_cycle:
            self._attest_pending = True

    def _attest_complete(self, now: float) -> None:
        """COMPLETE; a restart remembered during the cycle runs 15 s later (§5,
        ``handleAttestEscrowRecordedAtAttestEscrowWait``)."""
        self.attest = AttestState.COMPLETE
        self._note("attested")
        if self._attest_pending:
            self._attest_pending = False
            self._attest_queued_cycle = True
            self._note("attest_restart", why="queued during the last cycle")
            self._attest_restart_wait(now)
        else:
            self._attest_queued_cycle = False

    def _attest_restart_wait(self, now: float) -> None:
        self.attest = AttestState.RESTART_WAIT
        self._timer(Timer.ATTEST, now + ATTEST_RETRY)

    def _attest_response(self, status: int, body: dict[str, Any], now: float) -> None:
        if status not in (200, 201):
            self._attest_restart_wait(now)
            return
        resp = body.get("type")
        if resp == "NONCE" and self.attest == AttestState.NONCE_WAIT:
            self._nonce = body.get("nonce")
            self.attest = AttestState.TPM_QUOTE_WAIT
            self._timer(Timer.QUOTE, now + (1.0 if self.p.tpm else 0.05))  # tpmmgr produces the quote
        elif resp == "QUOTE" and self.attest == AttestState.ATTEST_WAIT:
            code = QuoteResponseCode[body.get("code", "QUOTE_FAILED")]
            if code != QuoteResponseCode.SUCCESS:
                self._note("attest_failed", code=code.name, pcrs=body.get("mismatch", []))
                self._attest_restart_wait(now)
                self._publish(now)
                return
            self.token = body.get("token")
            key = body.get("key")
            if not self.vault_unlocked and key and key == self.persist.vault_key:
                # The escrowed key comes back only after a good quote; re-seal to the new PCRs (§5).
                self.vault_unlocked = True
                self.persist.seal = seal_digest(self.pcrs)
                self._note("vault_unlocked")
                self._set_local_maintenance(MaintenanceModeReason.VAULT_LOCKED_UP, False, now)
                self._vault_ready(now)
            if self.p.tpm:
                self.attest = AttestState.ATTEST_ESCROW_WAIT
                self._send("attest", {"type": "STORE_KEYS", "token": self.token, "key": self.persist.vault_key}, now)
            else:
                self._attest_complete(now)  # no TPM: escrow skipped (§5)
            self._publish(now)
        elif resp == "STORE_KEYS" and self.attest == AttestState.ATTEST_ESCROW_WAIT:
            if body.get("code") == "SUCCESS":
                self._attest_complete(now)
            else:
                self._attest_restart_wait(now)
            self._publish(now)

    def _send_quote(self, now: float) -> None:
        if self.attest != AttestState.TPM_QUOTE_WAIT:
            return
        self.attest = AttestState.ATTEST_WAIT
        self.quote_sent = True
        pcrs = {i: v.hex() for i, v in self.pcrs.items() if i < 16} if self.p.tpm else {}
        self._send("attest", {"type": "QUOTE", "nonce": self._nonce, "pcrs": pcrs, "tpm": self.p.tpm}, now)

    def _vault_ready(self, now: float) -> None:
        self._arm_nodeagent(now)
        if self.config_received and self.persist.config is not None and not self.maintenance:
            self._apply_baseos(self.persist.config.get("baseos"), now)
            self._resume_apps(self.persist.config, now)

    # ------------------------------------------------------------------------------------ apps --
    def _apply_apps(self, desired: dict[str, dict[str, Any]], now: float) -> None:
        """zedmanager: create, check resources, walk the states, or halt and delete (§8)."""
        if not self.vault_unlocked:
            return  # §5 WaitForVault: no volume, no app until the vault unlocks (_vault_ready)
        for name in sorted(desired):
            if name in self.apps:
                continue
            spec = desired[name]
            app = {"state": ZSwState.INITIAL, "err": "", "spec": spec, "stage": 0}
            self.apps[name] = app
            # §8: no check here; memory is admitted at activation (_app_admit)
            if name in self.persist.apps_installed:  # after a reboot: boot again from its volume
                app["stage"] = self._APP_STAGES.index(ZSwState.BOOTING)
            self._app_advance(name, now)
        for name in sorted(self.apps):
            if name not in desired and self.apps[name]["state"] not in (ZSwState.HALTING, ZSwState.HALTED):
                self.apps[name]["state"] = ZSwState.HALTING
                self._timer(KeyedTimer(TimerFamily.APP, name), now + float(self.rng.uniform(2.0, 10.0)))
        self._publish(now)

    def _app_admit(self, name: str, app: dict[str, Any], now: float) -> bool:
        """zedmanager's memory check at activation (§8, P:cmd/zedmanager/updatestatus.go `doActivate`).

        Runs when an installed app is about to boot, so its download and volumes are done. The need
        is its memory plus the VMM overhead; what remains is the total less EVE's reservation and
        the apps that are activated or activating (booting, running, or halting until they are
        gone: memorysizemgmt.go `getRemainingMemory`). Short: the app stays INSTALLED with the
        appErr EVE writes and waits for `checkRetry` (_app_retry). `memory.apps.ignore.check`
        skips the check."""
        spec = app["spec"]
        if not self.items.get("memory.apps.ignore.check"):
            if "overhead" not in app:  # status.MemOverhead: computed once, only when checking
                app["overhead"] = admission.vmm_overhead(spec, int(self.item("memory.vmm.limit.MiB")))
            used = halting = 0
            others = False
            for other, a in self.apps.items():
                if other == name or not a.get("active"):
                    continue
                mem = admission.config_memory(a["spec"]) + a.get("overhead", 0)
                used += mem
                others = True
                if a["state"] == ZSwState.HALTING:  # config gone: memory soon free
                    halting += mem
            remaining = max(self.p.memory - self.p.reserved_memory - used, 0)  # 0 on a discrepancy
            need = admission.config_memory(spec) + app["overhead"]
            short = admission.check(need, remaining, halting, others)
            if short is not None:
                new = not app.get("missing_memory") or app["err"] != short.error
                app.update(err=short.error, severity=short.severity, missing_memory=True)
                if new:
                    self._note("app_error", app=name, err=short.error, severity=short.severity)
                    self._publish(now)
                return False
        app.update(active=True, missing_memory=False, err="")
        app.pop("severity", None)
        return True

    def _app_freed(self, now: float) -> None:
        """An app stopped being activated: let the next free-resource tick retry (§8,
        P:cmd/zedmanager/zedmanager.go freeResourceChecker 5-10 s; the tick's phase is not
        modelled, a fresh draw stands for it). Only armed when an app waits for memory, so a quiet
        node has no periodic work."""
        if self._app_retry_pending or not any(a.get("missing_memory") for a in self.apps.values()):
            return
        self._app_retry_pending = True
        self._timer(Timer.APP_RETRY, now + float(self.rng.uniform(*admission.RETRY_TICK)))

    def _app_retry(self, now: float) -> None:
        """`checkRetry` (§8): every app waiting for memory clears its error and tries to activate
        again, in name order (EVE walks a map; the order among them is not defined)."""
        self._app_retry_pending = False
        for name in sorted(self.apps):
            app = self.apps[name]
            if app.get("missing_memory") and app["state"] == ZSwState.INSTALLED:
                self._app_advance(name, now)

    _APP_STAGES = (
        ZSwState.DOWNLOAD_STARTED,
        ZSwState.VERIFYING,
        ZSwState.LOADING,
        ZSwState.CREATING_VOLUME,
        ZSwState.INSTALLED,
        ZSwState.BOOTING,
        ZSwState.RUNNING,
    )

    def _app_advance(self, name: str, now: float) -> None:
        app = self.apps.get(name)
        if app is None or app["state"] in (ZSwState.ERROR, ZSwState.HALTING, ZSwState.HALTED):
            return
        spec = app["spec"]
        stage = app["stage"]
        if stage >= len(self._APP_STAGES):
            return
        state = self._APP_STAGES[stage]
        if state == ZSwState.CREATING_VOLUME and not self.vault_unlocked:
            return  # volumes live in the vault (§5): wait for it
        if state == ZSwState.BOOTING and not spec.get("activate", True):
            app["state"] = ZSwState.HALTED
            self._publish(now)
            return
        if state == ZSwState.BOOTING and not app.get("active") and not self._app_admit(name, app, now):
            if app["state"] != ZSwState.INSTALLED:  # after a reboot: volumes there, doPrepare ran
                app["state"] = ZSwState.INSTALLED
                self._publish(now)
            return  # waits INSTALLED for memory (§8)
        app["state"] = state
        app["stage"] = stage + 1
        durations = {
            ZSwState.VERIFYING: 2.0,
            ZSwState.LOADING: 1.0,
            ZSwState.CREATING_VOLUME: spec["size"] / self.p.write_speed,
            ZSwState.INSTALLED: 1.0,
            ZSwState.BOOTING: 15.0 if spec.get("kind") == "vm" else 3.0,
        }
        if state == ZSwState.RUNNING:
            self.persist.apps_installed.add(name)
            self._note("app_running", app=name)
        elif state == ZSwState.DOWNLOAD_STARTED:
            # §3 step 1, §4: the downloader; a ``download: corrupt`` image fails its verify (the sim)
            self._dl_start(f"app/{name}", int(spec["size"]), now, verify_ok=spec.get("download", "ok") != CORRUPT)
        else:
            self._timer(KeyedTimer(TimerFamily.APP, name), now + durations[state])
        self._publish(now)

    def _resume_apps(self, cfg: dict[str, Any], now: float) -> None:
        """After a reboot, installed apps boot again from their volumes; new ones start over.
        Not before the vault unlocks (§5: volumemgr and domainmgr wait for it at start)."""
        if self.maintenance or not self.vault_unlocked:
            return
        for name, spec in sorted(cfg.get("apps", {}).items()):
            if name in self.apps:
                if self.apps[name]["stage"] and self.apps[name]["state"] != ZSwState.RUNNING:
                    self._app_advance(name, now)
                continue
            app = {"state": ZSwState.INITIAL, "err": "", "spec": spec, "stage": 0}
            self.apps[name] = app
            if name in self.persist.apps_installed:
                app["stage"] = self._APP_STAGES.index(ZSwState.BOOTING)
            self._app_advance(name, now)

    def _app_timer(self, name: str, now: float) -> None:
        app = self.apps.get(name)
        if app is None:
            return
        if app["state"] == ZSwState.HALTING:
            del self.apps[name]
            self.downloads.pop(f"app/{name}", None)
            self.persist.apps_installed.discard(name)
            self._note("app_removed", app=name)
            if app.get("active"):
                self._app_freed(now)  # doInactivateHalt sets checkFreedResources
            self._publish(now)
            return
        self._app_advance(name, now)

    # ---------------------------------------------------------------------------- info, metrics --
    def _publish(self, now: float) -> None:
        """Device info changed: queue it on the reliable queue (one slot, newest wins, §1)."""
        self._info_dirty = True
        if self.zedagent and not self._info_inflight and not self._info_waiting:
            self._send_info(now)

    def _send_info(self, now: float) -> None:
        self._info_dirty = False
        self._info_inflight = True
        self._send("info", self.report(now), now)

    def _info_response(self, status: int, now: float) -> None:
        self._info_inflight = False
        if 200 <= status < 300:
            self._info_backoff = 0.0
            if self._info_dirty:
                self._send_info(now)
            return
        retriable = status == 0 or status in (401, 403, 407, 408, 429) or status >= 500
        if not retriable:
            self._info_backoff = 0.0
            return  # other 4xx: item dropped (§1)
        self._info_dirty = True
        self._info_backoff = min(max(INFO_RETRY_MIN, self._info_backoff * 2), INFO_RETRY_MAX)
        self._info_waiting = True
        self._timer(Timer.INFO, now + self._info_backoff + float(self.rng.uniform(-30.0, 30.0)))

    # ----------------------------------------------------------------------------- port tests --
    def _port_test(self, now: float) -> None:
        self._timer(Timer.PORTTEST, now + self.item("timer.port.testinterval"))
        if self._reverify is None:
            self._send("ping", {}, now, ctx=("test", self.dpc_index))

    def _port_better(self, now: float) -> None:
        better = self.item("timer.port.testbetterinterval")
        if self.persist.dpcs is not None:
            # §4 dpcmanager.go: the testBetter timer restarts the verification from index 0
            # (runVerify arms it again when the walk ends away from index 0).
            if self.dpc_index != 0 and self._reverify is None:
                self._dpc_restart_verify(now)
            return
        if self.dpc_index != 0 and self._reverify is None:
            self._send("ping", {}, now, ctx=("better", 0), ports=self.ports(0))
        if better > 0 and self.dpc_index != 0:
            self._timer(Timer.PORTBETTER, now + better)

    def _ping_response(self, status: int, body: dict[str, Any], ctx: Any, now: float) -> None:
        mode, index = ctx[0], ctx[1]
        ok = 200 <= status < 300 or status == 304  # any 2xx/304, body ignored (§2.1)
        # §4 (P:dpcmanager/verify.go): connection refused and any HTTP 5xx are a remote temporary
        # failure: the DPC is kept (RemoteWait) and counts as working, so an overloaded controller
        # answering 503 never makes a device switch DPC.
        remote_temporary = body.get("error") == "refused" or 500 <= status <= 511
        if mode == "verify":
            self._dpc_verify_response(ok, remote_temporary, ctx, now)
            return
        if mode == "better":
            if ok or remote_temporary:
                self._switch_dpc(0, now)
                self.dpc_state = DPCState.SUCCESS if ok else DPCState.REMOTE_WAIT
            return
        if mode == "test":
            if ok:
                self._port_fails = 0
                self.dpc_state = DPCState.SUCCESS
                if self.persist.dpcs is not None and index < len(dpcs := self._dpcs()):
                    dpcs[index].last_succeeded, dpcs[index].state = now, DPCState.SUCCESS
            elif remote_temporary:
                self.dpc_state = DPCState.REMOTE_WAIT  # keep the DPC (§4)
            else:
                self._port_fails += 1
                if self._port_fails >= 2 and self.persist.dpcs is not None:
                    self._dpc_restart_verify(now)  # a pushed DPC list: nim's own walk (§4)
                elif self._port_fails >= 2:  # two consecutive failures: re-verify the list (§4)
                    self._reverify = 0
                    self._send("ping", {}, now, ctx=("reverify", 0), ports=self.ports(0))
            return
        # re-verify walks the DPC list by priority and takes the first that works
        if ok or remote_temporary:
            self._reverify = None
            self._port_fails = 0
            self._switch_dpc(index, now)
            self.dpc_state = DPCState.SUCCESS if ok else DPCState.REMOTE_WAIT
            return
        nxt = index + 1
        if nxt < len(self.dpc_list()):
            self._reverify = nxt
            self._send("ping", {}, now, ctx=("reverify", nxt), ports=self.ports(nxt))
        else:
            # Every DPC failed: the device parks at index 0, the most preferred (§4).
            self._reverify = None
            if self.dpc_index != 0:
                self._switch_dpc(0, now)
            self.dpc_state = DPCState.FAIL

    def _switch_dpc(self, index: int, now: float) -> None:
        if index == self.dpc_index:
            return
        self._note("dpc_switch", frm=self.dpc_index, to=index, key=self.dpc_list()[index][0])
        self.dpc_index = index
        self._dl_links_changed(now)  # the usable ports of a download are the new DPC's (§4)
        if index != 0 and self.item("timer.port.testbetterinterval") > 0:
            self._timer(Timer.PORTBETTER, now + self.item("timer.port.testbetterinterval"))
        self._publish(now)

    # --------------------------------------------------------------- controller network config --
    def _dpcs(self) -> list[Dpc]:
        """The DPC list with the last-resort DPC at its end when enabled (TimePriority 1970, §4)."""
        ps = self.persist
        dpcs = list(ps.dpcs or [])
        if self.items.get("network.fallback.any.eth") == "enabled":
            if ps.lastresort is None:
                eth = sorted((p for p in self.p.ports if p.kind == "ethernet"), key=lambda p: (p.cost, p.name))
                ps.lastresort = Dpc("lastresort", tuple(p.name for p in eth), prio=-math.inf)
            dpcs.append(ps.lastresort)
        return dpcs

    def _dpc_configured_ports(self) -> list[str]:
        """The management ports the current DPC names (DevicePortStatus.ports with isMgmt)."""
        if self.persist.dpcs is None:
            return list(self.ports())
        dpcs = self._dpcs()
        return list(dpcs[self.dpc_index].ports) if 0 <= self.dpc_index < len(dpcs) else []

    def _apply_network(self, net: dict[str, Any] | None, now: float) -> None:
        """zedagent turns the controller's network config into a ``zedagent`` DPC and nim adds it
        (§4, P:dpcmanager/dpc.go ``doAddDPC``, ``updateDPCListAndPublish``): it goes to index 0 and
        is verified at once; an unchanged config changes nothing."""
        ps = self.persist
        if net is None or net == ps.net_seen:
            return
        ps.net_seen = net
        if ps.dpcs is None:
            # The bootstrap DPC (the profile's management ports) becomes an entry with its record.
            mgmt = sorted((p for p in self.p.ports if p.mgmt), key=lambda p: (p.cost, p.name))
            working = self.dpc_state in (DPCState.SUCCESS, DPCState.REMOTE_WAIT)
            ps.dpcs = [Dpc("zedagent", tuple(p.name for p in mgmt), prio=-1.0, state=self.dpc_state, last_succeeded=now if working else None)]
        new = Dpc("zedagent", tuple(net.get("mgmt") or ()), prio=now, broken=bool(net.get("broken")))
        self._note("dpc_new", ports=list(new.ports), broken=new.broken)
        current = self._dpcs()[self.dpc_index] if 0 <= self.dpc_index < len(self._dpcs()) else None
        dpcl.insert(ps.dpcs, new)
        if current is not None and current in ps.dpcs:
            self.dpc_index = ps.dpcs.index(current)
        self._dpc_restart_verify(now)

    def _dpc_restart_verify(self, now: float) -> None:
        """``restartVerify`` (§4, P:dpcmanager/verify.go): start at index 0, skipping DPCs that failed
        in the last 5 min; nothing testable parks at index 0 (``parkAtManualOrHighestPriority``)."""
        self._verify_gen += 1
        nxt = dpcl.next_testable(self._dpcs(), 0, now)
        if nxt < 0:
            self._reverify = None
            self._dpc_set_index(0, now)
            return
        self._dpc_setup_verify(nxt, now, now)

    def _dpc_setup_verify(self, index: int, started: float, now: float) -> None:
        """``setupVerify``: the DPC under test becomes the current one (all traffic uses it)."""
        self._reverify = index
        self._dpc_set_index(index, now)
        self._dpc_verify_attempt(index, started, now)

    def _dpc_verify_attempt(self, index: int, started: float, now: float) -> None:
        """One ``verifyDPC``: the controller test over the DPC's ports; a DPC none of whose ports
        exists has nothing to test with and is judged at once (missing interface)."""
        ctx = ("verify", self._verify_gen, index, started)
        d = self._dpcs()[index]
        if not d.broken and not self.ports(index):
            self._dpc_verify_response(False, False, ctx, now)
            return
        self._send("ping", {}, now, ctx=ctx)

    def _dpc_set_index(self, index: int, now: float) -> None:
        if index != self.dpc_index:
            self._note("dpc_switch", frm=self.dpc_index, to=index, key=self._dpcs()[index].key)
            self.dpc_index = index
        self.dpc_state = self._dpcs()[index].state
        self._publish(now)

    def _dpc_verify_response(self, ok: bool, remote_temporary: bool, ctx: Any, now: float) -> None:
        """``verifyDPC``/``runVerify`` (§4): success or a remote temporary failure ends the walk on
        this DPC; a missing interface is waited for 2 x timer.port.testduration (IntfWait); a DPC
        with addresses that cannot reach the controller fails at once (FailWithIPAndDNS); a failure
        moves on to the next testable DPC, and when there is none the device parks at index 0."""
        _mode, gen, index, started = ctx
        dpcs = self._dpcs()
        if gen != self._verify_gen or index >= len(dpcs):
            return  # a newer verification replaced this one
        d = dpcs[index]
        if ok or remote_temporary:
            d.last_succeeded = now
            d.state = DPCState.SUCCESS if ok else DPCState.REMOTE_WAIT
            self._reverify = None
            self._port_fails = 0
            self._dpc_set_index(index, now)
            self._dpc_compress()
            self._timer(Timer.PORTTEST, now + self.item("timer.port.testinterval"))
            better = self.item("timer.port.testbetterinterval")
            if self.dpc_index != 0 and better > 0:
                self._timer(Timer.PORTBETTER, now + better)
            return
        usable = self.ports(index)
        duration = self.item("timer.port.testduration")
        if not usable and not d.broken and now - started < dpcl.WAIT_FOR_INTF_RETRIES * duration:
            d.state = DPCState.INTF_WAIT
            self.dpc_state = d.state
            self._timer(KeyedTimer(TimerFamily.DPC_VERIFY, (gen, index, started)), now + duration)
            return
        d.last_failed = now
        d.state = DPCState.FAIL_WITH_IP_AND_DNS if d.broken else DPCState.FAIL
        if d.broken or usable:
            d.last_error = "no route to the controller over " + ",".join(d.ports)
        else:
            d.last_error = "missing interface " + ",".join(d.ports)
        self._note("dpc_fail", index=index, state=d.state.name)
        nxt = dpcl.next_testable(dpcs, index + 1, now)
        if nxt < 0:
            self._reverify = None
            self._dpc_set_index(0, now)
            self._timer(Timer.PORTTEST, now + self.item("timer.port.testinterval"))
            return
        self._dpc_setup_verify(nxt, now, now)

    def _dpc_verify_timer(self, key: tuple[int, int, float], now: float) -> None:
        gen, index, started = key
        if gen == self._verify_gen and self._reverify == index:
            self._dpc_verify_attempt(index, started, now)

    def _dpc_compress(self) -> None:
        ps = self.persist
        if ps.dpcs is None:
            return
        n = len(ps.dpcs)
        cur = self.dpc_index if self.dpc_index < n else -1  # the last-resort DPC is never dropped
        ps.dpcs, new_cur = dpcl.compress(ps.dpcs, cur)
        if cur >= 0:
            self.dpc_index = new_cur
        else:
            self.dpc_index = len(ps.dpcs)

    # ------------------------------------------------------------------------------ log upload --
    def _logs_fire(self, now: float) -> None:
        """loguploader's upload timer (§1 newlogs upload timer, P:cmd/loguploader/loguploader.go
        ``Run``/``doFetchSend``): send the oldest file, re-arm after the answer (the send is
        synchronous), or at once when there is no file."""
        up = self.logs
        if up is None or up.inflight:
            return
        if up.fire(now, self.rng):
            self._send("logs", {"at": now, "files": up.left + 1}, now)
        else:
            self._timer(Timer.LOGS, now + up.interval)

    def _logs_response(self, status: int, now: float) -> None:
        """§2.1 POST newlogs: 200/201 only; 503/no answer count towards the outage back-off;
        4xx retries the file (moved aside on the 11th); 429 slows uploads (``sendToCloud``)."""
        up = self.logs
        if up is None:
            return
        up.answer(status, now)
        self._timer(Timer.LOGS, now + up.interval)

    def _logs_stop(self, now: float) -> None:
        if self.logs is not None:
            self.logs.stop(now)

    def note_log_uploads(self, count: int, left: int, interval: int | None = None, sched_at: float | None = None) -> None:
        """Files the simulator's bulk path uploaded for this node while it was quiescent (200/201
        answers, the same rule as :meth:`_logs_response`), and the plain schedule evaluations it
        ran (``logs.plain_at``), written back before its next call."""
        if self.logs is not None:
            if interval is not None and sched_at is not None:
                self.logs.evaluated(interval, sched_at)
            self.logs.sent(count, left)

    # ------------------------------------------------------------------------------- dispatch --
    def on_timer(self, name: TimerName, now: float) -> list[Action]:
        phase = self.phase
        if name == Timer.WATCHDOG:
            if phase == Phase.BOOTING or (phase == Phase.RUNNING and self.hung):
                agent = ",".join(sorted(self.hung)) or "boot"
                text = f"watchdog: /run/{agent}.touch unchanged for 300 s" + self._oom_text()
                self._hard_reset(now, self._watchdog_reason(BootReason.WATCHDOG_HUNG), text)
            return self._drain()
        if name == Timer.WATCHDOG_PID:
            if phase == Phase.RUNNING:
                text = f"watchdog: /run/{self._dead_agent}.pid: process gone" + self._oom_text()
                self._hard_reset(now, self._watchdog_reason(BootReason.WATCHDOG_PID), text)
            return self._drain()
        if name == Timer.CRASH:
            if phase == Phase.BOOTING:
                self._note("crash", version=self.image.version if self.image else None)
                self._hard_reset(now, None)
            elif phase == Phase.REBOOTING:  # the panic timeout of kernel_panic
                self._hard_reset(now, BootReason.KERNEL if self.p.kdump else None)
            return self._drain()
        if name == Timer.BOOTED:
            if phase == Phase.BOOTING:
                self._booted(now)
            return self._drain()
        if phase not in (Phase.RUNNING,):
            return self._drain()
        if self.hung and (
            ("zedagent" in self.hung and name in _ZEDAGENT_TIMERS) or ("nodeagent" in self.hung and name in (Timer.NODEAGENT, Timer.REBOOT, Timer.NODEOP))
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

    # -- timer handlers of a running node (dispatched by on_timer through _ON_TIMER) --
    def _on_config_timer(self, now: float) -> None:
        if self.zedagent:
            self._config_tick(now)

    def _on_reboot_timer(self, now: float) -> None:
        if self.rebooting is not None:
            self._reboot_step(now)

    def _on_periodic_report(self, timer: Timer, now: float) -> None:
        """Re-arm a periodic report timer with its jitter (spec §6, :data:`eve.vocab.PERIODIC`)."""
        rule = PERIODIC[timer]
        lo, hi = rule.jitter
        self._timer(timer, now + self.rng.uniform(lo, hi) * self.item(rule.interval_item))  # type: ignore[arg-type]

    def _on_metrics_timer(self, now: float) -> None:
        self._on_periodic_report(Timer.METRICS, now)
        if self.zedagent:
            self._send("metrics", {"at": now}, now)

    def _on_deviceinfo_timer(self, now: float) -> None:
        self._on_periodic_report(Timer.DEVICEINFO, now)
        self._publish(now)

    def _on_onboard_timer(self, now: float) -> None:
        if self.onboarding:
            self._onboard_attempt(now)

    def _on_onboard_fast_timer(self, now: float) -> None:
        if self.onboarding and self.onboarded and self.dpc_state != DPCState.SUCCESS:
            self.onboarding = False  # cached UUID: done without the controller (§1)
            self._start_zedagent(now)

    def _on_attest_timer(self, now: float) -> None:
        if self.attest == AttestState.RESTART_WAIT:
            self._attest_start(now)

    def _on_hang_timer(self, now: float) -> None:
        self.hang("zedagent", now)

    def _on_info_timer(self, now: float) -> None:
        self._info_waiting = False
        if self._info_dirty and not self._info_inflight:
            self._send_info(now)

    def on_response(self, rid: int, status: int, body: dict[str, Any], now: float) -> list[Action]:
        entry = self._inflight.pop(rid, None)
        if entry is None or self.phase != Phase.RUNNING:
            return self._drain()
        kind, ctx = entry
        if kind == "uuid" and ctx == "lookup":
            self._uuid_lookup_response(status, body, now)
        elif kind in ("certs", "register", "uuid"):
            if kind == "certs" and status == 200 and (self._reverify is None or self.persist.dpcs is None):
                self.dpc_state = DPCState.SUCCESS
            self._onboard_response(kind, status, body, now, ctx)
        elif kind == "config":
            self._config_response(status, body, now, ctx)
            if self.poll_pending and not self.poll_inflight and self.phase == Phase.RUNNING and self.rebooting is None:
                self._poll(now)
        elif kind == "info":
            self._info_response(status, now)
        elif kind == "attest" and ctx == "edge_certs":
            self._edge_certs_answer(status, now)
        elif kind == "attest":
            self._attest_response(status, body, now)
        elif kind == "ping":
            self._ping_response(status, body, ctx, now)
        elif kind == "logs":
            self._logs_response(status, now)
        # metrics: best effort, nothing to do
        return self._drain()


_ON_TIMER: dict[Timer, Callable[[Node, float], None]] = {
    Timer.CONFIG: Node._on_config_timer,
    Timer.NODEAGENT: Node._nodeagent_tick,
    Timer.REBOOT: Node._on_reboot_timer,
    Timer.NODEOP: Node._node_op_step,
    Timer.METRICS: Node._on_metrics_timer,
    Timer.DEVICEINFO: Node._on_deviceinfo_timer,
    Timer.PORTTEST: Node._port_test,
    Timer.PORTBETTER: Node._port_better,
    Timer.LOGS: Node._logs_fire,
    Timer.ONBOARD: Node._on_onboard_timer,
    Timer.ONBOARD_FAST: Node._on_onboard_fast_timer,
    Timer.ATTEST: Node._on_attest_timer,
    Timer.QUOTE: Node._send_quote,
    Timer.INFO: Node._on_info_timer,
    Timer.BOS_DOWNLOAD: lambda node, now: node._dl_finished("bos", now),
    Timer.BOS_WRITE: Node._bos_written,
    Timer.HANG: Node._on_hang_timer,
    Timer.APP_RETRY: Node._app_retry,
    Timer.EDGE_CERTS: Node._on_edge_certs_timer,
}
"""What a running node does when a fixed-name timer fires."""

_ON_KEYED_TIMER: dict[TimerFamily, Callable[[Node, Any, float], None]] = {
    TimerFamily.DOWNLOAD: Node._dl_finished,
    TimerFamily.DOWNLOAD_STALL: Node._dl_stall_check,
    TimerFamily.DOWNLOAD_RETRY: Node._dl_retry_tick,
    TimerFamily.APP: Node._app_timer,
    TimerFamily.DPC_VERIFY: Node._dpc_verify_timer,
}
"""What a running node does when a keyed timer fires, given the timer's key (NET_FAIL is an answer)."""
