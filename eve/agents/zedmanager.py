"""zedmanager: apps from config to running, memory admission at activation, halting and
deletion (spec §8; P:cmd/zedmanager/updatestatus.go ``doActivate``, memorysizemgmt.go, zedmanager.go
``checkRetry``; the numbers in :mod:`eve.admission`), and domainmgr's pinned CPUs and adapters at
the same activation (P:cmd/domainmgr/domainmgr.go ``doActivate``; the rules in :mod:`eve.placement`).

An app walks :attr:`ZedManager.STAGES`; volumes live in the vault, so nothing of an app comes back
after a reboot before the vault unlocks.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from eve import admission, placement
from eve.agents.base import Agent
from eve.enums import (
    ZSwState,
)
from eve.fsm import STAY, Transitions
from eve.images import CORRUPT
from eve.vocab import KeyedTimer, Timer, TimerFamily

if TYPE_CHECKING:
    from eve.node import Node




class AppEvent(StrEnum):
    """What moves an app's state (§8; P:cmd/zedmanager/updatestatus.go)."""

    DOWNLOAD_START = "download starts"
    DOWNLOADED = "downloaded"
    VERIFIED = "verified"
    LOADED = "loaded"
    VOLUME_CREATED = "volume created"
    ACTIVATE = "activate"  # admitted (memory) and started
    BOOTED = "booted"
    NO_MEMORY = "waits for memory"  # doActivate found too little; INSTALLED until checkRetry
    NOT_PLACED = "not placed"  # domainmgr's doActivate refused its CPUs or adapters; INSTALLED with the error
    NOT_ACTIVATED = "activate false"
    CONFIG_GONE = "config gone"  # halt, then delete
    NODE_HALT = "node operation"  # shutdownAppsGlobal: a running app halts, one not started stays put
    HALT_DONE = "halted"


_Z = ZSwState
_WALK = (_Z.INITIAL, _Z.DOWNLOAD_STARTED, _Z.VERIFYING, _Z.LOADING, _Z.CREATING_VOLUME, _Z.INSTALLED, _Z.BOOTING, _Z.RUNNING)
APP: Transitions[ZSwState, AppEvent] = Transitions("app", {
    (_Z.INITIAL, AppEvent.DOWNLOAD_START): _Z.DOWNLOAD_STARTED,
    (_Z.DOWNLOAD_STARTED, AppEvent.DOWNLOADED): _Z.VERIFYING,
    (_Z.VERIFYING, AppEvent.VERIFIED): _Z.LOADING,
    (_Z.LOADING, AppEvent.LOADED): _Z.CREATING_VOLUME,
    (_Z.CREATING_VOLUME, AppEvent.VOLUME_CREATED): _Z.INSTALLED,
    (_Z.INSTALLED, AppEvent.ACTIVATE): _Z.BOOTING,
    (_Z.INITIAL, AppEvent.ACTIVATE): _Z.BOOTING,  # after a reboot: it boots again from its volume
    (_Z.BOOTING, AppEvent.BOOTED): _Z.RUNNING,
    (_Z.INSTALLED, AppEvent.NO_MEMORY): STAY,
    (_Z.INITIAL, AppEvent.NO_MEMORY): _Z.INSTALLED,  # after a reboot: volumes there, doPrepare ran
    (_Z.INSTALLED, AppEvent.NOT_PLACED): STAY,
    (_Z.INITIAL, AppEvent.NOT_PLACED): _Z.INSTALLED,
    (_Z.INSTALLED, AppEvent.NOT_ACTIVATED): _Z.HALTED,
    (_Z.INITIAL, AppEvent.NOT_ACTIVATED): _Z.HALTED,
    **{(z, AppEvent.CONFIG_GONE): _Z.HALTING for z in _WALK},
    (_Z.RUNNING, AppEvent.NODE_HALT): _Z.HALTING,
    **{(z, AppEvent.NODE_HALT): _Z.HALTED for z in _WALK[:-1] + (_Z.HALTED,)},
    (_Z.HALTING, AppEvent.HALT_DONE): _Z.HALTED,
})
"""An app's states (§8). A HALTING app whose config is gone is deleted when it has halted."""

_STEP_INTO = {
    _Z.DOWNLOAD_STARTED: AppEvent.DOWNLOAD_START, _Z.VERIFYING: AppEvent.DOWNLOADED, _Z.LOADING: AppEvent.VERIFIED,
    _Z.CREATING_VOLUME: AppEvent.LOADED, _Z.INSTALLED: AppEvent.VOLUME_CREATED, _Z.BOOTING: AppEvent.ACTIVATE,
    _Z.RUNNING: AppEvent.BOOTED,
}
"""The event that moves an app into each stage of :attr:`ZedManager.STAGES`."""


class ZedManager(Agent):
    """zedmanager for one boot: every app's state and stage."""

    __slots__ = ("apps", "_retry_pending", "pinned", "adapters")

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.apps: dict[str, dict[str, Any]] = {}
        self._retry_pending = False  # zedmanager's checkFreedResources (§8)
        self.pinned: dict[str, list[int]] = {}
        """domainmgr's CPU allocator: app -> its pinned CPUs (lost with the boot, like domainmgr)."""
        self.adapters: dict[str, str] = {}
        """AssignableAdapters' UsedByUUID: phylabel -> the app that holds it."""

    @staticmethod
    def move(app: dict[str, Any], event: AppEvent) -> None:
        """Move an app through :data:`APP`."""
        app["state"] = APP.fire(app["state"], event)

    # ------------------------------------------------------------------------------------ apps --
    def apply(self, desired: dict[str, dict[str, Any]], now: float) -> None:
        """zedmanager: create, check resources, walk the states, or halt and delete (§8)."""
        if not self.node.attest.vault_unlocked:
            return  # §5 WaitForVault: no volume, no app until the vault unlocks (Attest._vault_ready)
        for name in sorted(desired):
            if name in self.apps:
                continue
            spec = desired[name]
            self._new_app(name, spec)  # §8: no check here; memory is admitted at activation (_admit)
            self.advance(name, now)
        for name in sorted(self.apps):
            if name in desired:
                continue
            state = self.apps[name]["state"]
            if state == ZSwState.HALTED:
                self._remove(name, now)  # not running (activate false): nothing to halt, deleted at once
            elif state != ZSwState.HALTING:
                self.move(self.apps[name], AppEvent.CONFIG_GONE)
                self._timer(KeyedTimer(TimerFamily.APP, name), now + float(self.rng.uniform(2.0, 10.0)))
        self.node.zedagent.publish(now)

    def _new_app(self, name: str, spec: dict[str, Any]) -> None:
        """A new AppInstanceStatus in INITIAL; one installed before a reboot boots again from its volume."""
        app = {"state": ZSwState.INITIAL, "err": "", "spec": spec, "stage": 0}
        if name in self.persist.apps_installed:
            app["stage"] = self.STAGES.index(ZSwState.BOOTING)
        self.apps[name] = app

    def _admit(self, name: str, app: dict[str, Any], now: float) -> bool:
        """zedmanager's memory check at activation (§8, P:cmd/zedmanager/updatestatus.go `doActivate`).

        Runs when an installed app is about to boot, so its download and volumes are done. The need
        is its memory plus the VMM overhead; what remains is the total less EVE's reservation and
        the apps that are activated or activating (booting, running, or halting until they are
        gone: memorysizemgmt.go `getRemainingMemory`). Short: the app stays INSTALLED with the
        appErr EVE writes and waits for `checkRetry` (on_retry_timer). `memory.apps.ignore.check`
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
                    self.node.zedagent.publish(now)
                return False
        app.update(active=True, missing_memory=False, err="")
        app.pop("severity", None)
        return True

    def app_info(self, name: str) -> dict[str, Any]:
        """What ZInfoApp reports of an app: state, appErr and, when it holds any, its adapters
        (assignedAdapters: the phylabels it holds)."""
        app = self.apps[name]
        info: dict[str, Any] = {"state": app["state"].name, "err": app.get("err", "")}
        if self.adapters:
            held = sorted(label for label, owner in self.adapters.items() if owner == name)
            if held:
                info["adapters"] = held
        return info

    def _place(self, name: str, app: dict[str, Any], now: float) -> bool:
        """domainmgr's ``doActivate`` before the boot (§8, P:cmd/domainmgr/domainmgr.go): pinned CPUs
        (``assignCPUs``), then adapters (``reserveAdapters``, which on a refusal also releases the
        CPUs). A refusal leaves the app INSTALLED with domainmgr's error; an adapter refusal is
        retried on domainmgr's ticker, a CPU refusal is not (no retry flag is set for it)."""
        spec = app["spec"]
        cpus: list[int] = []
        if spec.get("pin_cpus"):
            used = (c for other, held in self.pinned.items() if other != name for c in held)
            cpus, refusal = placement.allocate_cpus(self.p.cores, self.p.eve_max_vcpus, used, int(spec["cpus"]))
            if refusal is not None:
                return self._refused(name, app, refusal, now)
        io = self.p.io
        wanted = [(placement.adapter_type(io, a["name"], a.get("type")), a["name"]) for a in spec.get("adapters", ())]
        if wanted:
            taken, refusal = placement.reserve_adapters(
                io, wanted, name, self.adapters, (p.name for p in self.p.ports),
                lambda other: self.apps.get(other, {}).get("state") == ZSwState.HALTING, self.p.app_uuid,
            )
            if refusal is not None:
                return self._refused(name, app, refusal, now)
            self.adapters.update(taken)
        if cpus:
            self.pinned[name] = cpus
        if app.get("placement_failed"):
            app.update(err="", placement_failed=False)
            app.pop("severity", None)
        return True

    def _refused(self, name: str, app: dict[str, Any], refusal: placement.Refusal, now: float) -> bool:
        """Record domainmgr's refusal as the app's error; an adapter one retries on the ticker."""
        if app["err"] != refusal.error:
            app.update(err=refusal.error, severity=refusal.severity)
            self._note("app_error", app=name, err=refusal.error, severity=refusal.severity)
        app["placement_failed"] = True
        if refusal.retry:
            self._timer(KeyedTimer(TimerFamily.APP, name), now + float(self.rng.uniform(*placement.ADAPTER_RETRY)))
        return False

    def _release(self, name: str) -> None:
        """``doInactivate``: the app's pinned CPUs and adapters are free again."""
        self.pinned.pop(name, None)
        for label in [label for label, owner in self.adapters.items() if owner == name]:
            del self.adapters[label]

    def _freed(self, now: float) -> None:
        """An app stopped being activated: let the next free-resource tick retry (§8,
        P:cmd/zedmanager/zedmanager.go freeResourceChecker 5-10 s; the tick's phase is not
        modelled, a fresh draw stands for it). Only armed when an app waits for memory, so a quiet
        node has no periodic work."""
        if self._retry_pending or not any(a.get("missing_memory") for a in self.apps.values()):
            return
        self._retry_pending = True
        self._timer(Timer.APP_RETRY, now + float(self.rng.uniform(*admission.RETRY_TICK)))

    def on_retry_timer(self, now: float) -> None:
        """`checkRetry` (§8): every app waiting for memory clears its error and tries to activate
        again, in name order (EVE walks a map; the order among them is not defined)."""
        self._retry_pending = False
        for name in sorted(self.apps):
            app = self.apps[name]
            if app.get("missing_memory") and app["state"] == ZSwState.INSTALLED:
                self.advance(name, now)

    STAGES = (
        ZSwState.DOWNLOAD_STARTED,
        ZSwState.VERIFYING,
        ZSwState.LOADING,
        ZSwState.CREATING_VOLUME,
        ZSwState.INSTALLED,
        ZSwState.BOOTING,
        ZSwState.RUNNING,
    )

    def advance(self, name: str, now: float) -> None:
        app = self.apps.get(name)
        if app is None or app["state"] in (ZSwState.ERROR, ZSwState.HALTING, ZSwState.HALTED):
            return
        spec = app["spec"]
        stage = app["stage"]
        if stage >= len(self.STAGES):
            return
        state = self.STAGES[stage]
        if state == ZSwState.CREATING_VOLUME and not self.node.attest.vault_unlocked:
            return  # volumes live in the vault (§5): wait for it
        if state == ZSwState.BOOTING and not spec.get("activate", True):
            self.move(app, AppEvent.NOT_ACTIVATED)
            self.node.zedagent.publish(now)
            return
        if state == ZSwState.BOOTING and not app.get("active") and not self._admit(name, app, now):
            was = app["state"]
            self.move(app, AppEvent.NO_MEMORY)  # after a reboot INITIAL -> INSTALLED: volumes there, doPrepare ran
            if app["state"] != was:
                self.node.zedagent.publish(now)
            return  # waits INSTALLED for memory (§8)
        if state == ZSwState.BOOTING and not app.get("placed"):
            was, err = app["state"], app["err"]
            if not self._place(name, app, now):
                self.move(app, AppEvent.NOT_PLACED)
                if app["state"] != was or app["err"] != err:
                    self.node.zedagent.publish(now)
                return  # INSTALLED with domainmgr's error (§8)
            app["placed"] = True
        self.move(app, _STEP_INTO[state])
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
            self.node.downloader.start(f"app/{name}", int(spec["size"]), now, verify_ok=spec.get("download", "ok") != CORRUPT)
        else:
            self._timer(KeyedTimer(TimerFamily.APP, name), now + durations[state])
        self.node.zedagent.publish(now)

    def resume(self, cfg: dict[str, Any], now: float) -> None:
        """After a reboot, installed apps boot again from their volumes; new ones start over.
        Not before the vault unlocks (§5: volumemgr and domainmgr wait for it at start)."""
        if self.node.zedagent.maintenance or not self.node.attest.vault_unlocked:
            return
        for name, spec in sorted(cfg.get("apps", {}).items()):
            if name in self.apps:
                if self.apps[name]["stage"] and self.apps[name]["state"] != ZSwState.RUNNING:
                    self.advance(name, now)
                continue
            self._new_app(name, spec)
            self.advance(name, now)

    def on_app_timer(self, name: str, now: float) -> None:
        app = self.apps.get(name)
        if app is None:
            return
        if app["state"] == ZSwState.HALTING:
            self._remove(name, now)
            return
        self.advance(name, now)

    def _remove(self, name: str, now: float) -> None:
        """An app whose config is gone and that has halted: its status, download and volume go."""
        app = self.apps.pop(name)
        self._release(name)
        self.node.downloader.downloads.pop(f"app/{name}", None)
        self.persist.apps_installed.discard(name)
        self._note("app_removed", app=name)
        if app.get("active"):
            self._freed(now)  # doInactivateHalt sets checkFreedResources
        self.node.zedagent.publish(now)
