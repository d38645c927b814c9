"""baseosmgr: the base-OS entry from download to the A/B partitions, retries and forced fallback
(spec §3; P:cmd/baseosmgr/handlebaseos.go, forcefallback.go).

The entry's ZSwState goes INITIAL -> DOWNLOAD_STARTED -> DELIVERED -> LOADING -> INSTALLED; the
partition states are :class:`eve.zboot.Zboot`'s. A reboot loses download and write progress.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from eve.agents.base import Agent
from eve.enums import (
    BaseOsStatus,
    BaseOsSubStatus,
    BootReason,
    PartitionState,
    ZSwState,
)
from eve.fsm import STAY, Transitions
from eve.vocab import Timer
from eve.zboot import REFUSE_TOO_EARLY

if TYPE_CHECKING:
    from eve.node import Node




class EntryEvent(StrEnum):
    """What moves the base-OS entry's ZSwState (§3 steps 1-2)."""

    DOWNLOAD_START = "download starts"
    DOWNLOADED = "downloaded and verified"
    WRITE_START = "write into the other partition starts"
    WRITTEN = "written"  # read back and checked: good, or a mismatch that fails the update
    SETTLED = "settled"  # the version runs, sits failed in the other partition, is retried or committed
    REBOOT = "reboot"  # download and write progress die with the boot; baseosmgr starts that step again


_Z = ZSwState
_ENTRY_STATES = (_Z.INITIAL, _Z.DOWNLOAD_STARTED, _Z.DELIVERED, _Z.LOADING, _Z.INSTALLED)
ENTRY: Transitions[ZSwState, EntryEvent] = Transitions("base-OS entry", {
    (_Z.INITIAL, EntryEvent.DOWNLOAD_START): _Z.DOWNLOAD_STARTED,
    (_Z.DOWNLOAD_STARTED, EntryEvent.DOWNLOAD_START): STAY,  # a new DownloaderConfig for the same entry
    (_Z.DOWNLOAD_STARTED, EntryEvent.DOWNLOADED): _Z.DELIVERED,
    (_Z.DELIVERED, EntryEvent.WRITE_START): _Z.LOADING,
    (_Z.LOADING, EntryEvent.WRITTEN): _Z.INSTALLED,
    **{(z, EntryEvent.SETTLED): _Z.INSTALLED for z in _ENTRY_STATES},
    (_Z.DOWNLOAD_STARTED, EntryEvent.REBOOT): _Z.INITIAL,
    (_Z.LOADING, EntryEvent.REBOOT): _Z.DELIVERED,
    **{(z, EntryEvent.REBOOT): STAY for z in (_Z.INITIAL, _Z.DELIVERED, _Z.INSTALLED)},
})
"""The base-OS entry (BaseOsStatus.State, P:cmd/baseosmgr/handlebaseos.go). A new version in the
config is a new entry in INITIAL; VERIFYING is folded into the download (the verifier's time is
part of it)."""


class BaseOsMgr(Agent):
    """baseosmgr: the newest base-OS entry (in ``persist.bos``) and the partitions it writes."""

    __slots__ = ()

    def __init__(self, node: Node) -> None:
        super().__init__(node)

    @staticmethod
    def move(entry: dict[str, Any], event: EntryEvent) -> None:
        """Move the entry through :data:`ENTRY`."""
        entry["zsw"] = ENTRY.fire(entry["zsw"], event)

    def restart(self) -> None:
        """baseosmgr starts again after a reboot: a download or a write in progress starts over."""
        if self.persist.bos is not None:
            self.move(self.persist.bos, EntryEvent.REBOOT)

    # ---------------------------------------------------------------------------------- reports --
    def user_status(self) -> tuple[BaseOsStatus, BaseOsSubStatus, str]:
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

    def progress(self, now: float) -> int:
        """downloadProgress of the base-OS entry: live while DOWNLOAD_STARTED, 100 once delivered (§3)."""
        e = self.persist.bos
        if not e:
            return 0
        if e["zsw"] != ZSwState.DOWNLOAD_STARTED:
            return 0 if e["zsw"] == ZSwState.INITIAL else 100
        d = self.node.downloader.downloads.get("bos")
        return d.progress_at(now) if d is not None else 0

    def _partition_with(self, version: str) -> Any:
        for label in ("IMGA", "IMGB"):
            part = self.zboot[label]
            if part.version == version and part.state != PartitionState.UNUSED:
                return part
        return None

    def update_reboot_text(self) -> str:
        """nodeagent's reboot for any other=updating partition, an update, a retry or a forced
        fallback alike (P:cmd/nodeagent/handlebaseos.go ``doZbootBaseOsInstallationComplete``)."""
        other = self.zboot.other_partition
        return f"NORMAL: baseos-update({other.label}) to EVE version {other.version or '(unknown)'} reboot"

    def force_fallback(self, now: float) -> bool:
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
        if ff == ps.force_fallback_seen or not self.zboot.can_force_fallback() or self.node.nodeagent.rebooting is not None:
            return False
        ps.force_fallback_seen = ff
        self.zboot.set_updating(self.zboot.other_partition.label)
        self.node.nodeagent.reboot(now, BootReason.UPDATE, self.update_reboot_text())
        self.node.zedagent.publish(now)
        return True

    # -------------------------------------------------------------------------------- base OS --
    def apply(self, bos: dict[str, Any] | None, now: float) -> bool:
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
            self.node.downloader.downloads.pop("bos", None)  # the old version's DownloaderConfig goes away (§3 step 1)
            self._note("baseos_config", version=version, activate=activate)
        entry["activate"] = activate
        zb = self.zboot
        cur, other = zb.current_partition, zb.other_partition
        if cur.version == version:
            self.move(entry, EntryEvent.SETTLED)
            entry["err"] = ""
            return False
        if other.version == version and other.state == PartitionState.INPROGRESS:
            if retry_changed and activate and zb.can_retry(version):
                zb.set_updating(other.label)  # §3 retry: other=updating -> reboot
                ps.failed.pop(version, None)
                self.move(entry, EntryEvent.SETTLED)
                entry["err"] = ""
                self._note("baseos_retry", version=version)
                self.node.nodeagent.reboot(now, BootReason.UPDATE, self.update_reboot_text())
                return True
            self.move(entry, EntryEvent.SETTLED)
            # validatePartition quotes the failed boot's error, which is none when reboot-image
            # names the running partition (P:cmd/baseosmgr/handlebaseos.go handleOtherPartRebootReason).
            entry["err"] = ps.failed.get(version, "")
            return False  # EVE does not retry a failed version (§3)
        if other.version == version and other.state == PartitionState.UPDATING:
            return True
        if self.node.nodeagent.rebooting is not None:
            return True
        startable = entry["zsw"] in (ZSwState.INITIAL, ZSwState.DOWNLOAD_STARTED) and "bos" not in self.node.downloader.downloads
        if startable and self.node.attest.vault_unlocked:
            # §3 step 1: download and verify first; a TooEarly refusal only blocks the install.
            # A download cut by a reboot starts again from byte 0 (the downloader's state is volatile).
            self.move(entry, EntryEvent.DOWNLOAD_START)
            info = self.p.images.get(image)
            size = info.size if info is not None else 300 * 2**20
            self._note("baseos_download", version=version)
            self.node.downloader.start("bos", size, now, verify_ok=info.verify_ok if info is not None else True)
        elif entry["zsw"] == ZSwState.DELIVERED and activate:
            self._install(now)
        return activate and not entry.get("too_early")

    def _install(self, now: float) -> None:
        """Write the delivered image into the other partition unless baseosmgr refuses (§3 step 2)."""
        e = self.persist.bos
        assert e is not None
        refuse = self.zboot.refuse_reason(e["version"])
        e["too_early"] = refuse == REFUSE_TOO_EARLY
        if refuse is None:
            self._write(now)

    def on_downloaded(self, now: float) -> None:
        e = self.persist.bos
        if not e or e["zsw"] != ZSwState.DOWNLOAD_STARTED:
            return
        self.move(e, EntryEvent.DOWNLOADED)
        if e["activate"]:
            self._install(now)
        self.node.zedagent.publish(now)

    def _write(self, now: float) -> None:
        e = self.persist.bos
        assert e is not None
        size = self.p.images[e["image"]].size if e["image"] in self.p.images else 300 * 2**20
        self.move(e, EntryEvent.WRITE_START)
        self._timer(Timer.BOS_WRITE, now + size / self.p.write_speed)

    def on_written(self, now: float) -> None:
        e = self.persist.bos
        if not e or e["zsw"] != ZSwState.LOADING:
            return
        zb = self.zboot
        if self.p.write_error and self.luck.random() < self.p.write_error:
            # Read-back mismatch: the partition is left unused and the update fails (§3 step 2).
            zb.write_other(None)
            self.move(e, EntryEvent.WRITTEN)
            e["err"] = "version read back from the partition does not match"
            self.node.zedagent.publish(now)
            return
        zb.write_other(e["version"], e["image"])
        zb.set_updating(zb.other_partition.label)
        self.move(e, EntryEvent.WRITTEN)
        self._note("baseos_installed", version=e["version"], partition=zb.other_partition.label)
        self.node.nodeagent.reboot(now, BootReason.UPDATE, self.update_reboot_text())
        self.node.zedagent.publish(now)
