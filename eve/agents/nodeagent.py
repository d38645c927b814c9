"""nodeagent: the boot reason, the update test window and its commit, the fallback and
disconnect timers, the reboot procedure, shutdown and power-off, and the local maintenance reasons
(spec §3, §7; P:cmd/nodeagent/nodeagent.go, handletimers.go, handlebaseos.go).

Its timers run on a 10 s ticker anchored at agent start; the node is woken only at the first tick
past the earliest deadline.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import TYPE_CHECKING

from eve.agents.base import Agent
from eve.agents.baseosmgr import EntryEvent
from eve.agents.zedmanager import AppEvent, ZedManager
from eve.enums import (
    BootReason,
    ConfigGetStatus,
    MaintenanceModeReason,
    PartitionState,
    ZSwState,
)
from eve.fsm import Transitions
from eve.images import NO_CONTROLLER
from eve.power import PowerEvent
from eve.vocab import Phase, Timer

if TYPE_CHECKING:
    from eve.node import Node


NODEAGENT_TICK = 10.0  # §3 step 8: nodeagent checks its timers every 10 s
REBOOT_PRE_WAIT = 30.0  # §3 reboot procedure: wait 30 s before writing the reason
REBOOT_POST_WAIT = 30.0  # §3: sync, then 30 s, then zboot reset
HALT_POLL = 5.0  # §3: domains halted, polled every 5 s (<= 300 s)


class Procedure(StrEnum):
    """Where nodeagent's reboot procedure, or a node operation (shutdown, power-off), is (§3, §7)."""

    IDLE = "idle"
    WAITING = "waiting"  # the first 30 s
    HALTING = "halting"  # the reason written (a reboot, a power-off); apps halting, at most 300 s
    SHUT_DOWN = "shut down"  # a shutdown's end: apps halted, PREPARED_POWEROFF, the device stays up
    POWERING_OFF = "powering off"  # a power-off's last 30 s


class ProcedureEvent(StrEnum):
    START = "start"
    TIMER = "timer"  # the step's timer ran out
    HALTED_STAY_UP = "halted, stay up"  # a shutdown
    HALTED_POWER_OFF = "halted, power off"


_Q = Procedure
REBOOT: Transitions[Procedure, ProcedureEvent] = Transitions("reboot", {
    (_Q.IDLE, ProcedureEvent.START): _Q.WAITING,
    (_Q.WAITING, ProcedureEvent.TIMER): _Q.HALTING,
    (_Q.HALTING, ProcedureEvent.TIMER): _Q.IDLE,  # sync, 30 s, zboot reset
})
"""nodeagent's reboot procedure (§3; P:cmd/nodeagent/handletimers.go)."""

NODE_OPERATION: Transitions[Procedure, ProcedureEvent] = Transitions("node operation", {
    (_Q.IDLE, ProcedureEvent.START): _Q.WAITING,
    # a power-off after a shutdown, or during one: it starts over (P:cmd/zedagent/localcommand.go
    # checks only poweroffCmd; nodeagent starts one more handleNodeOperation)
    **{(q, ProcedureEvent.START): _Q.WAITING for q in (_Q.WAITING, _Q.HALTING, _Q.SHUT_DOWN)},
    (_Q.WAITING, ProcedureEvent.TIMER): _Q.HALTING,
    (_Q.HALTING, ProcedureEvent.HALTED_STAY_UP): _Q.SHUT_DOWN,
    (_Q.HALTING, ProcedureEvent.HALTED_POWER_OFF): _Q.POWERING_OFF,
    (_Q.POWERING_OFF, ProcedureEvent.TIMER): _Q.IDLE,  # the device powers off
})
"""``handleNodeOperation`` for shutdown and power-off (§7; P:cmd/nodeagent/handletimers.go)."""


class NodeAgent(Agent):
    """nodeagent for one boot: its timers, the test window and the reboot procedure."""

    __slots__ = ("reachable_until", "testing", "test_start", "rebooting", "reboot_step", "deferred_reboot", "local_maintenance", "node_op", "all_halted", "node_op_step", "_node_op_text")

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.reachable_until: float | None = None
        """nodeagent's lastControllerReachableTime once a poll failed (a tick time), else None."""
        self.testing = False
        self.test_start: float | None = None
        self.rebooting: tuple[BootReason, str] | None = None
        self.reboot_step = Procedure.IDLE
        self.deferred_reboot = False
        self.local_maintenance: set[MaintenanceModeReason] = set()  # nodeagent's own reasons
        self.node_op: str | None = None  # "shutdown" | "poweroff" in progress (nodeagent, §7)
        self.all_halted = False  # nodeagent's allDomainsHalted during a node operation
        self.node_op_step = Procedure.IDLE
        self._node_op_text = ""  # the reboot-reason text a power-off writes (requestedRebootReason)

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

    def start(self, now: float) -> None:
        """Kernel and linuxkit services are up: nodeagent decides the boot reason, agents start."""
        self.node.power(PowerEvent.AGENTS_STARTED)
        self.node.agents_at = now
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
        self.node.rolled_back = None
        if cur.state == PartitionState.ACTIVE and other.state == PartitionState.INPROGRESS and self.node.prev_booted == other.label:
            # §3 "Controller view of a rollback": the one test boot of `other` ended before its
            # commit, so GRUB came back to the active image. The boot reason is what was recorded
            # or synthesized (FALLBACK only from nodeagent's own timer); the failed version gets a
            # swErr only when /persist/reboot-image does not name the partition now running
            # (P:cmd/baseosmgr/handlebaseos.go handleOtherPartRebootReason). An image that died
            # before its nodeagent ran leaves the old image's stale UPDATE record and no swErr.
            self.node.rolled_back = other.version
            if reboot_image != cur.label:
                ps.failed[other.version or ""] = text or reason.name
        self.node.boot_reason, self.node.boot_reason_text = reason, text
        self.testing = cur.state == PartitionState.INPROGRESS
        self.node.net_broken = self.node.image is not None and self.node.image.behaviour == NO_CONTROLLER
        self.node.attest.unseal(now)
        self._note(
            "booted",
            reason=reason.name,
            partition=cur.label,
            version=cur.version,
            testing=self.testing,
            vault="unlocked" if self.node.attest.vault_unlocked else "locked",
            **({"rolled_back": self.node.rolled_back} if self.node.rolled_back is not None else {}),
        )
        if not self.node.attest.vault_unlocked:
            self._note("vault_locked")
        if self.p.hang_per_day > 0:
            self._timer(Timer.HANG, now + float(self.luck.exponential(86400.0 / self.p.hang_per_day)))
        if ps.disk_full:  # volumemgr and tpmmgr report again at start (disk_space, tpm_sanity)
            self.set_local_maintenance(MaintenanceModeReason.LOW_DISK_SPACE, True, now)
        if ps.tpm_broken:
            self.set_local_maintenance(MaintenanceModeReason.TPM_ENCRYPTION_FAILURE, True, now)
        if ps.dpcs is not None:
            # §4 ingestDPCList: the persisted list is verified again from index 0 at boot.
            self.node.nim.restart_verify(now)
        self.node.client.start(now)
        self.arm(now)

    def _commit(self, now: float) -> None:
        """Test window expired: TestComplete -> MarkCurrentPartitionStateActive (§3 step 6)."""
        zb = self.zboot
        self.zboot.mark_current_active()
        self.testing = False
        self.test_start = None
        e = self.persist.bos
        if e and e["version"] == zb.current_partition.version:
            self.node.baseosmgr.move(e, EntryEvent.SETTLED)
            e["err"] = ""
        self._note("update_committed", version=zb.current_partition.version)
        self.node.zedagent.publish(now)
        if self.deferred_reboot:
            self.deferred_reboot = False
            self.reboot(now, BootReason.REBOOT_CMD, "Reboot from controller (deferred by update test)")
        elif self.node.zedagent.deferred_shutdown:
            self.node.zedagent.deferred_shutdown = False
            self.node_operation("shutdown", now)
        elif self.node.zedagent.deferred_poweroff:
            self.node.zedagent.deferred_poweroff = False
            self.node_operation("poweroff", now, "TestComplete and deferred Poweroff Cmd")
        elif self.node.baseosmgr.force_fallback(now):
            pass  # a pending forced fallback acts now that the old image sits in the unused partition
        elif self.persist.config is not None:
            self.node.baseosmgr.apply(self.persist.config.get("baseos"), now)
            self.node.zedmanager.apply(self.persist.config.get("apps", {}), now)

    def node_operation(self, op: str, now: float, text: str = "") -> None:
        """nodeagent's ``handleNodeOperation`` for shutdown and power-off (§3 reboot procedure):
        30 s, the reason written (power-off only), apps halted (at most 300 s, polled every 5 s),
        then a shutdown stops there (PREPARED_POWEROFF, the device stays up) and a power-off waits
        30 s more and powers off (P:cmd/nodeagent/handletimers.go, P:cmd/zedagent/reportinfo.go
        ``getDeviceState``).

        A power-off after a shutdown runs too (localcommand.go checks only poweroffCmd; nodeagent
        starts one more ``handleNodeOperation``): the device keeps reporting the shutdown's state,
        which ``getDeviceState`` checks first, until it powers off."""
        if self.rebooting is not None or self.node.phase != Phase.RUNNING:
            return
        if self.node_op is not None and not (op == "poweroff" and self.node_op == "shutdown"):
            return
        if op == "shutdown":
            self.node.zedagent.shutdown_cmd = True
        if not self.node.zedagent.shutdown_cmd:
            self.all_halted = False
        self.node_op_step = NODE_OPERATION.fire(self.node_op_step, ProcedureEvent.START)
        self.node_op = op
        self._node_op_text = text
        self._note("node_operation", op=op)
        for app in self.node.zedmanager.apps.values():  # shutdownAppsGlobal: Activate cleared, the apps halt
            if app["state"] != ZSwState.HALTING:  # one already halting goes on halting
                ZedManager.move(app, AppEvent.NODE_HALT)
        self._timer(Timer.NODEOP, now + REBOOT_PRE_WAIT)
        self.node.zedagent.publish(now)

    def on_node_op_timer(self, now: float) -> None:
        if self.node_op is None:
            return
        step = self.node_op_step
        if step == Procedure.WAITING:
            self.node_op_step = NODE_OPERATION.fire(step, ProcedureEvent.TIMER)
            if self.node_op == "poweroff":
                self.persist.reboot_record = (BootReason.POWEROFF_CMD, self._node_op_text)
                self.persist.reboot_image = self.zboot.current
            self._timer(Timer.NODEOP, now + self._halt_time(ZSwState.HALTING))
        elif step == Procedure.HALTING:
            for app in self.node.zedmanager.apps.values():
                if app["state"] == ZSwState.HALTING:
                    ZedManager.move(app, AppEvent.HALT_DONE)
            self.all_halted = True
            self._note("all_domains_halted", op=self.node_op)
            self.node.zedagent.publish(now)
            halted = ProcedureEvent.HALTED_POWER_OFF if self.node_op == "poweroff" else ProcedureEvent.HALTED_STAY_UP
            self.node_op_step = NODE_OPERATION.fire(step, halted)
            if self.node_op == "poweroff":
                self._timer(Timer.NODEOP, now + REBOOT_POST_WAIT)
        else:
            self.node_op_step = NODE_OPERATION.fire(step, ProcedureEvent.TIMER)
            self._note("powered_off")
            self.node.powered_off(now)

    # ----------------------------------------------------------------------------- maintenance --
    def set_local_maintenance(self, reason: MaintenanceModeReason, on: bool, now: float) -> None:
        """nodeagent's ``addMaintenanceModeReason`` / ``removeMaintenanceModeReason`` (§7)."""
        if on == (reason in self.local_maintenance):
            return
        (self.local_maintenance.add if on else self.local_maintenance.discard)(reason)
        self._note("maintenance_reason", reason=reason.name, on=on)
        self.node.zedagent.merge_maintenance(now)

    # ------------------------------------------------------------------------------- nodeagent --
    def _tick_at_or_before(self, t: float) -> float:
        start = self.node.agents_at if self.node.agents_at is not None else t
        return start + math.floor((t - start) / NODEAGENT_TICK + 1e-9) * NODEAGENT_TICK

    def _reachable_at(self, now: float) -> float:
        """nodeagent's lastControllerReachableTime (§3 step 7, P:cmd/nodeagent/handletimers.go
        ``updateTickerTime``): now while the status is Success or TemporaryFail; after a failed
        poll, the last tick before it; never reached since start: the start. ReadSaved and Fail
        are not contact."""
        if self.node.zedagent.config_status in (ConfigGetStatus.SUCCESS, ConfigGetStatus.TEMPORARY_FAIL):
            return now
        if self.reachable_until is not None:
            return self.reachable_until
        return self.node.agents_at if self.node.agents_at is not None else now

    def arm(self, now: float) -> None:
        """Schedule the next 10 s nodeagent tick at which some deadline may have passed (§3 step 8).

        Ticks sit on a grid anchored at agent start; the node is woken only at the first tick past
        the earliest deadline, and re-arms itself if that deadline moved in the meantime."""
        if self.node.phase != Phase.RUNNING or self.node.agents_at is None:
            return
        deadlines = []
        contact = self._reachable_at(now)
        if self.testing:
            if self.test_start is not None:
                deadlines.append(self.test_start + self.item("timer.test.baseimage.update"))
            deadlines.append(contact + self.item("timer.update.fallback.no.network"))
        deadlines.append(contact + self.item("timer.reboot.no.network"))
        if not self.node.attest.vault_unlocked and self.node.zedagent.first_success is not None and MaintenanceModeReason.VAULT_LOCKED_UP not in self.local_maintenance:
            deadlines.append(max(self.node.attest.vault_at or now, self.node.zedagent.first_success) + self.item("timer.vault.ready.cutoff"))
        due = min(deadlines)
        ticks = max(1, math.ceil((due - self.node.agents_at) / NODEAGENT_TICK + 1e-9))
        at = self.node.agents_at + ticks * NODEAGENT_TICK
        while at <= now:
            at += NODEAGENT_TICK
        self._timer(Timer.NODEAGENT, at)

    def on_tick(self, now: float) -> None:
        if self.rebooting is not None:
            return
        silent = now - self._reachable_at(now)
        if self.testing:
            if not self.node.attest.vault_unlocked and self._vault_cutoff_passed(now):
                self.reboot(now, BootReason.VAULT_FAILED, "vault not ready within timer.vault.ready.cutoff during update test")
                return
            fallback = self.item("timer.update.fallback.no.network")
            if silent > fallback:
                self.reboot(
                    now,
                    BootReason.FALLBACK,
                    f"Exceeded fallback outage for controller connectivity {int(fallback)} by {int(silent - fallback)} seconds",
                )
                return
            if self.test_start is not None and now - self.test_start >= self.item("timer.test.baseimage.update"):
                self._commit(now)
        elif not self.node.attest.vault_unlocked and self._vault_cutoff_passed(now):
            if MaintenanceModeReason.VAULT_LOCKED_UP not in self.local_maintenance:
                self.set_local_maintenance(MaintenanceModeReason.VAULT_LOCKED_UP, True, now)  # §5
        if silent > self.item("timer.reboot.no.network"):
            self.reboot(now, BootReason.DISCONNECT, "no controller connectivity for timer.reboot.no.network")
            return
        self.arm(now)

    def _vault_cutoff_passed(self, now: float) -> bool:
        if self.node.zedagent.first_success is None:
            return False
        return now - max(self.node.attest.vault_at or now, self.node.zedagent.first_success) >= self.item("timer.vault.ready.cutoff")

    def _halt_time(self, state: ZSwState) -> float:
        """How long halting the apps in ``state`` takes: 2-10 s each, polled every 5 s, at most
        300 s (§3 reboot procedure)."""
        halt = sum(float(self.rng.uniform(2.0, 10.0)) for a in self.node.zedmanager.apps.values() if a["state"] == state)
        return min(300.0, HALT_POLL * math.ceil(halt / HALT_POLL)) if halt else 0.0

    def reboot(self, now: float, reason: BootReason, text: str) -> None:
        """nodeagent's reboot procedure (§3): 30 s, write the reason, halt apps, sync, 30 s, reset."""
        if self.rebooting is not None or self.node.phase != Phase.RUNNING:
            return
        self.reboot_step = REBOOT.fire(self.reboot_step, ProcedureEvent.START)
        self.rebooting = (reason, text)
        self._note("reboot_scheduled", reason=reason.name, text=text)
        self._timer(Timer.REBOOT, now + REBOOT_PRE_WAIT)
        self.node.zedagent.publish(now)

    def _reboot_step(self, now: float) -> None:
        assert self.rebooting is not None
        reason, text = self.rebooting
        step = self.reboot_step
        self.reboot_step = REBOOT.fire(step, ProcedureEvent.TIMER)
        if step == Procedure.WAITING:
            self.persist.reboot_record = (reason, text)  # /persist/reboot-reason, boot-reason
            self.persist.reboot_image = self.zboot.current  # /persist/reboot-image
            self._timer(Timer.REBOOT, now + self._halt_time(ZSwState.RUNNING) + REBOOT_POST_WAIT)
        else:
            self.node.hard_reset(now, reason, text)

    def on_reboot_timer(self, now: float) -> None:
        if self.rebooting is not None:
            self._reboot_step(now)
