"""zedagent: the config poll and what it applies, the device-info queue, the maintenance merge,
the ATTEST_REQ_CERT post and the UUID lookup (spec §1, §5, §6, §7; P:cmd/zedagent/).

It starts when onboarding ends, polls the config on a jittered ticker, applies a new config in
parseconfig.go's order and hands the parts on: network to nim, base OS to baseosmgr, apps to
zedmanager, reboot and shutdown commands to nodeagent. Its status (Success, TemporaryFail,
Fail, ReadSaved) is what nodeagent's fallback and disconnect timers read.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from eve.agents.base import Agent
from eve.enums import (
    BootReason,
    ConfigGetStatus,
    MaintenanceModeReason,
    PartitionState,
)
from eve.logs import DEFAULT_INTERVAL as LOG_INTERVAL
from eve.logs import LogUploader
from eve.vocab import PERIODIC, Timer

if TYPE_CHECKING:
    from eve.node import Node

EDGE_CERTS_RETRY = 10.0  # §5: a failed ATTEST_REQ_CERT post is sent again 10 s later (triggerEdgeNodeCertDelayedEvent)
INFO_RETRY_MIN, INFO_RETRY_MAX = 60.0, 900.0  # §1 reliable queue 1 min -> 15 min, +-30 s noise
UUID_LOOKUP_EVERY = 600.0  # §1 potentialUUIDUpdate: at most every 10 min, from zedagent start


# P:types/zedagenttypes.go BootReason.StartWithSavedConfig: after these, lastconfig; after any
# other reason (first boot, fallback, fatal, OOM, watchdog, vault failure …) lastconfig.bak (§1).
_START_WITH_LASTCONFIG = frozenset({
    BootReason.REBOOT_CMD, BootReason.UPDATE, BootReason.DISCONNECT, BootReason.KERNEL,
    BootReason.POWER_FAIL, BootReason.UNKNOWN, BootReason.POWEROFF_CMD,
})


ZEDAGENT_REQUESTS = frozenset({"config", "info", "metrics", "attest"})
"""The requests that are zedagent's (they stop when it hangs)."""


class ZedAgent(Agent):
    """zedagent for one boot: polls, applies, reports; its config status feeds nodeagent."""

    __slots__ = ("running", "poll_inflight", "poll_pending", "last_hash", "config_status", "config_received", "saved_read", "last_contact", "first_success", "info_dirty", "info_inflight", "info_backoff", "_info_waiting", "maintenance", "api_maintenance", "_uuid_lookup_at", "_uuid_lookup_inflight", "shutdown_cmd", "deferred_shutdown", "deferred_poweroff", "edge_certs_published")

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.running = False
        self.poll_inflight = False
        self.poll_pending = False
        self.last_hash = ""
        self.config_status: ConfigGetStatus | None = None
        self.config_received = False
        self.saved_read = False  # lastconfig read in this boot (§1)
        self.last_contact: float = -math.inf
        self.first_success: float | None = None
        self.info_dirty = False
        self.info_inflight = False
        self.info_backoff = 0.0
        self._info_waiting = False  # a retry timer is pending
        self.maintenance: set[MaintenanceModeReason] = set()
        """The merged reasons the device reports (``merge_maintenance``); set nowhere else."""
        self.api_maintenance = False  # EdgeDevConfig.maintenance_mode of the config in use
        self._uuid_lookup_at: float | None = None  # zedagent's lastDevUUIDChange (potentialUUIDUpdate)
        self._uuid_lookup_inflight = False
        self.shutdown_cmd = False  # zedagent's shutdownCmd: set by a shutdown, kept by a power-off after it
        self.deferred_shutdown = False
        self.deferred_poweroff = False  # zedagent's poweroffCmdDeferred (a power-off in the test window)
        self.edge_certs_published = False  # zedagent's publishedEdgeNodeCerts (ATTEST_REQ_CERT)

    # -------------------------------------------------------------------------------- zedagent --
    def stop(self) -> None:
        """zedagent hangs (:meth:`Watchdog.hang`): it polls, reports and attests no more, and the
        answers to its requests in flight find nobody to read them."""
        self.running = False
        self.poll_inflight = self.poll_pending = False
        inflight = self.node._inflight
        for rid in [r for r, (kind, _ctx) in inflight.items() if kind in ZEDAGENT_REQUESTS]:
            del inflight[rid]

    def start(self, now: float) -> None:
        if self.running or "zedagent" in self.node.watchdog.hung:
            return
        self.running = True
        # §1: the config hash lives in memory only, so the first poll of every boot sends "" and
        # gets the full config; the saved config is read only if that poll fails (_read_saved).
        self.last_hash = ""
        self.saved_read = False
        self.node.baseosmgr.restart()  # download or write progress died with the reboot
        self._timer(Timer.CONFIG, now)  # first poll at start (§1)
        self._uuid_lookup_at = now  # lastDevUUIDChange starts at zedagent start (§1)
        self._timer(Timer.METRICS, now + self.rng.uniform(0.3, 1.0) * self.item("timer.metric.interval"))
        self._timer(Timer.DEVICEINFO, now + self.rng.uniform(0.8, 1.2) * self.item("timer.deviceinfo.interval"))
        self._timer(Timer.PORTTEST, now + self.item("timer.port.testinterval"))
        self.node.loguploader.uploader = LogUploader(self.persist.logs, now)
        self._timer(Timer.LOGS, now + LOG_INTERVAL)  # loguploader's first upload timer (§1)
        self.node.nim.mark_working()
        if self.p.tpm:
            self.post_edge_certs(now)  # publishEdgeNodeCertsToController at zedagent start (§5)
        self.node.attest.start(now)
        self.publish(now)

    def _read_saved(self, now: float) -> None:
        """zedagent after a failed poll with no config received or read in this boot (§1,
        P:cmd/zedagent/handleconfig.go ``requestConfigByURL``): lastconfig, or lastconfig.bak when
        the boot reason is not one that starts with the saved config; status ReadSaved, ONLINE,
        apps and base OS from it."""
        self.saved_read = True
        ps = self.persist
        cfg = ps.config if self.node.boot_reason in _START_WITH_LASTCONFIG else (ps.config_bak or ps.config)
        if cfg is None:
            return
        self.config_received = True
        self.config_status = ConfigGetStatus.READ_SAVED
        self._note("config_read_saved", file="lastconfig" if cfg is ps.config else "lastconfig.bak")
        self.api_maintenance = bool(cfg.get("maintenance"))
        self.merge_maintenance(now)
        if not self.maintenance and self.node.attest.vault_unlocked:  # baseosmgr waits for the vault too (§5)
            self.node.baseosmgr.apply(cfg.get("baseos"), now)
        self.node.zedmanager.resume(cfg, now)
        self.publish(now)

    def _config_tick(self, now: float) -> None:
        self._timer(Timer.CONFIG, now + self.rng.uniform(0.3, 1.0) * self.item("timer.config.interval"))
        if self.poll_inflight:
            # §1 flexTicker: a tick during a running poll is held (one deep) and the next poll
            # starts as soon as that one returns.
            self.poll_pending = True
            return
        self.poll(now)

    def poll(self, now: float) -> None:
        self.poll_inflight = True
        self.poll_pending = False
        self._send("config", {"hash": self.last_hash, "token": self.node.attest.token}, now, ctx=self.node.attest.token)

    def _update_inprogress(self) -> bool:
        """zedagent's ``updateInprogress`` (§1): the current partition is inprogress. Not while the
        other one is only ``updating``: the config poll's TemporaryFail needs the test boot."""
        zb = self.zboot
        return zb.current is not None and zb.current_partition.state == PartitionState.INPROGRESS

    def on_config_answer(self, status: int, body: dict[str, Any], now: float, sent_token: str | None = None) -> None:
        self.poll_inflight = False
        error = body.get("error", "")
        if status in (200, 304):
            self._contact(now, ConfigGetStatus.SUCCESS)
            cfg = body.get("config")
            if status == 200 and cfg is not None and cfg.get("hash") != self.last_hash:
                self._apply_config(cfg, now)
            elif not self.config_received:
                self.config_received = True
                self.publish(now)
            return
        temporary = status in (503, 404, 400, 403) or error == "refused"
        if self._update_inprogress() and temporary:
            # TemporaryFail: only during a base-OS update; counts as reachable but restarts the
            # test window, so a 503-ing controller blocks the commit (§1, §3 step 5).
            self._contact(now, ConfigGetStatus.TEMPORARY_FAIL)
            if self.node.nodeagent.test_start is not None:
                self.node.nodeagent.test_start = now
        else:
            if self.config_status in (ConfigGetStatus.SUCCESS, ConfigGetStatus.TEMPORARY_FAIL):
                # §3 step 7: nodeagent refreshes lastControllerReachableTime on every 10 s tick
                # while its copy of the status is Success/TemporaryFail, and that copy changes
                # only now, when a poll has failed: silence counts from the last tick before this.
                self.node.nodeagent.reachable_until = self.node.nodeagent._tick_at_or_before(now)
            self.config_status = ConfigGetStatus.FAIL
        if not self.config_received and not self.saved_read:
            self._read_saved(now)
        if status == 403 and self.node.attest.quote_sent:
            self.node.attest.restart_requested(sent_token, now)
        if status in (404, 400):
            self.potential_uuid_update(now)
        self._note("config_fail", status=status, error=error)

    def potential_uuid_update(self, now: float) -> None:
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

    def on_uuid_lookup_answer(self, status: int, body: dict[str, Any], now: float) -> None:
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
        self.publish(now)

    def _contact(self, now: float, status: ConfigGetStatus) -> None:
        was = self.config_status
        self.config_status = status
        self.last_contact = now
        if self.first_success is None and status == ConfigGetStatus.SUCCESS:
            self.first_success = now
            self.node.nodeagent.arm(now)  # vault cutoff counts from the first config Success (§5)
        if self.node.nodeagent.testing and self.node.nodeagent.test_start is None:
            self.node.nodeagent.test_start = now  # §3 step 5: the window starts at the first ConfigGetSuccess
            self._note("test_window_start")
            self.node.nodeagent.arm(now)
        if was not in (ConfigGetStatus.SUCCESS, ConfigGetStatus.TEMPORARY_FAIL):
            self._note("controller_reachable")
            if self.info_dirty and not self.info_inflight:
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
        self.node.items_version += 1
        if errors:
            self._note("config_item_errors", keys=[e.key for e in errors])
        if self.item("timer.config.interval") != old_interval:
            self._timer(Timer.CONFIG, now)  # a changed interval applies at once and forces a tick (§1)
        self.node.nodeagent.arm(now)
        # parseConfig merges maintenance_mode (and parseConfigItems maintenance.mode) first (§7)
        self.api_maintenance = bool(cfg.get("maintenance"))
        self.merge_maintenance(now)
        if self.node.baseosmgr.force_fallback(now):
            return
        rc = cfg.get("reboot")
        if rc is not None:
            if ps.reboot_seen is None:
                ps.reboot_seen = rc  # the first counter ever seen is only stored (§1)
            elif rc != ps.reboot_seen:
                ps.reboot_seen = rc
                if self.node.nodeagent.testing:
                    self.node.nodeagent.deferred_reboot = True  # deferred until the test completes (§1)
                else:
                    self.node.nodeagent.reboot(now, BootReason.REBOOT_CMD, "Reboot from controller")
                    self.publish(now)
                    return  # the rest of the config is ignored (still saved)
        if self._shutdown_cmd(cfg.get("shutdown"), now) or self.node.nodeagent.node_op is not None:
            self.publish(now)
            return  # parseConfig: the rest is ignored while a shutdown is set (§1)
        if self.maintenance:
            self.publish(now)
            return  # apps and baseOS deferred in maintenance mode (§7)
        # §4 parseconfig.go: system adapters (the network config) come after the reboot and
        # maintenance checks and before the base OS; they do not wait for the vault.
        self.node.nim.apply_network(cfg.get("network"), now)
        if not self.node.attest.vault_unlocked:
            # §5: baseosmgr, volumemgr and domainmgr wait for the vault; the saved config is
            # applied when it unlocks (Attest._vault_ready).
            self.publish(now)
            return
        skip_apps = self.node.baseosmgr.apply(cfg.get("baseos"), now)
        if not skip_apps:
            self.node.zedmanager.apply(cfg.get("apps", {}), now)
        self.publish(now)

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
        if self.node.nodeagent.testing:
            self.deferred_shutdown = True
            return False
        self.node.nodeagent.node_operation("shutdown", now)
        return True

    def merge_maintenance(self, now: float) -> None:
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
            merged = set(self.node.nodeagent.local_maintenance)
        if merged == self.maintenance:
            return
        left = bool(self.maintenance) and not merged
        self.maintenance = merged
        self._note("maintenance", reasons=sorted(r.name for r in merged))
        if left and self.running:
            self.last_hash = ""
            self._timer(Timer.CONFIG, now)
        self.publish(now)

    def post_edge_certs(self, now: float) -> None:
        """POST attest ATTEST_REQ_CERT with the device's ECDH, attestation-key and EK certs (§5; the
        driver fills them in from the TPM; P:cmd/zedagent/handlecertconfig.go
        ``publishEdgeNodeCertsToController``), at zedagent start and 10 s after a failed post."""
        self._send("attest", {"type": "CERT"}, now, ctx="edge_certs")

    def on_edge_certs_timer(self, now: float) -> None:
        if self.running and not self.edge_certs_published:
            self.post_edge_certs(now)

    def on_edge_certs_answer(self, status: int, now: float) -> None:
        """The deferred queue's sent handler for ATTEST_REQ_CERT (§5; P:cmd/zedagent/zedagent.go
        ``getDeferredSentHandlerFunction``): accepted -> published, the reason is cleared; refused
        while the config status is Success and before any acceptance -> maintenance
        EDGE_NODE_CERTS_REFUSED; refused without config contact -> cleared (decided again once the
        controller is back); a 404 also looks the UUID up; until accepted, posted again 10 s later."""
        if 200 <= status < 300:
            self.edge_certs_published = True
            self.node.nodeagent.set_local_maintenance(MaintenanceModeReason.EDGE_NODE_CERTS_REFUSED, False, now)
            return
        if status == 404:
            self.potential_uuid_update(now)
        if not self.edge_certs_published and self.config_status == ConfigGetStatus.SUCCESS:
            self.node.nodeagent.set_local_maintenance(MaintenanceModeReason.EDGE_NODE_CERTS_REFUSED, True, now)
        elif self.config_status != ConfigGetStatus.SUCCESS:
            self.node.nodeagent.set_local_maintenance(MaintenanceModeReason.EDGE_NODE_CERTS_REFUSED, False, now)
        if not self.edge_certs_published:
            self._timer(Timer.EDGE_CERTS, now + EDGE_CERTS_RETRY)

    # ---------------------------------------------------------------------------- info, metrics --
    def publish(self, now: float) -> None:
        """Device info changed: queue it on the reliable queue (one slot, newest wins, §1)."""
        self.info_dirty = True
        if self.running and not self.info_inflight and not self._info_waiting:
            self._send_info(now)

    def _send_info(self, now: float) -> None:
        self.info_dirty = False
        self.info_inflight = True
        self._send("info", self.node.report(now), now)

    def on_info_answer(self, status: int, now: float) -> None:
        self.info_inflight = False
        if 200 <= status < 300:
            self.info_backoff = 0.0
            if self.info_dirty:
                self._send_info(now)
            return
        retriable = status == 0 or status in (401, 403, 407, 408, 429) or status >= 500
        if not retriable:
            self.info_backoff = 0.0
            return  # other 4xx: item dropped (§1)
        self.info_dirty = True
        self.info_backoff = min(max(INFO_RETRY_MIN, self.info_backoff * 2), INFO_RETRY_MAX)
        self._info_waiting = True
        self._timer(Timer.INFO, now + self.info_backoff + float(self.rng.uniform(-30.0, 30.0)))

    # -- timer handlers of a running node (dispatched by on_timer through _ON_TIMER) --
    def on_config_timer(self, now: float) -> None:
        if self.running:
            self._config_tick(now)

    def _rearm_periodic(self, timer: Timer, now: float) -> None:
        """Re-arm a periodic report timer with its jitter (spec §6, :data:`eve.vocab.PERIODIC`)."""
        rule = PERIODIC[timer]
        lo, hi = rule.jitter
        self._timer(timer, now + self.rng.uniform(lo, hi) * self.item(rule.interval_item))  # type: ignore[arg-type]

    def on_metrics_timer(self, now: float) -> None:
        self._rearm_periodic(Timer.METRICS, now)
        if self.running:
            self._send("metrics", {"at": now}, now)

    def on_deviceinfo_timer(self, now: float) -> None:
        self._rearm_periodic(Timer.DEVICEINFO, now)
        self.publish(now)

    def on_info_timer(self, now: float) -> None:
        self._info_waiting = False
        if self.info_dirty and not self.info_inflight:
            self._send_info(now)
