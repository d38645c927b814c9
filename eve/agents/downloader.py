"""The downloader and verifier for base-OS and app images (spec §3 step 1, §4, §6;
P:cmd/downloader/syncop.go, downloader.go; P:cmd/volumemgr/updatestatus.go; the bookkeeping in
:mod:`eve.download`).

It owns the download timers: completion, stall check and runHandler's retry ticker. Progress
depends on the links and on the cost gate over the current DPC's ports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eve.agents.base import Agent
from eve.download import Download
from eve.enums import (
    ZSwState,
)
from eve.vocab import KeyedTimer, Timer, TimerFamily

if TYPE_CHECKING:
    from eve.node import Node

WAN_RATE = 12.5e6  # bytes/s cap for downloads (a 100 Mbit/s uplink)


class Downloader(Agent):
    """The downloads of one boot, keyed ``bos`` or ``app/<name>`` (volatile, §3 step 1)."""

    __slots__ = ("downloads",)

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.downloads: dict[str, Download] = {}  # key "bos" or "app/<name>" (volatile, §3 step 1)

    def _rate(self) -> float:
        """Bytes/s over the usable ports, or -1 when none passes the cost gate (§4, P:cmd/downloader/
        syncop.go ``handleSyncOp``: ``CountLocalAddrNoLinkLocalWithCost``). A port with its link
        down has no address, so it does not count. Datastores on ``.local`` hosts (exempt from the
        gate) are not modelled."""
        max_cost = self.item("network.download.max.cost")
        dpc = self.node.nim.ports()
        usable = [
            p for p in self.p.ports
            if p.name in dpc and p.mgmt and p.name not in self.node.links_down and p.cost <= max_cost
        ]
        if not usable:
            return -1.0
        return min(max(p.speed for p in usable), WAN_RATE)

    def start(self, key: str, size: int, now: float, *, verify_ok: bool = True) -> None:
        """A new DownloaderConfig: runHandler's retry ticker starts with it, then the first attempt
        (P:cmd/downloader/downloader.go ``runHandler``: ``NewRangeTicker(0.3 x retry, retry)``)."""
        if key in self.downloads:
            return
        # The ticker's range is fixed when runHandler starts; a later timer.download.retry changes
        # only the "since the error" check (maybeRetryDownload reads the current value).
        d = self.downloads[key] = Download(size=size, verify_ok=verify_ok, tick=self.item("timer.download.retry"))
        self._timer(KeyedTimer(TimerFamily.DOWNLOAD_RETRY, key), now + float(self.rng.uniform(0.3, 1.0)) * d.tick)
        self._attempt(key, now)

    def _attempt(self, key: str, now: float) -> None:
        d = self.downloads[key]
        d.start(now, self._rate(), int(self.item("network.download.max.cost")))
        if d.state == "error":
            self._note("download_failed", key=key, err=d.err)
        self._timers(key, now)
        self._report(key, now)

    def _timers(self, key: str, now: float) -> None:
        d = self.downloads[key]
        if d.state != "running":
            return
        if d.finish_at is not None:
            # The base-OS timer keeps its name: the reference image's platform gates on it (eden/agent/platform.py).
            self._timer(Timer.BOS_DOWNLOAD if key == "bos" else KeyedTimer(TimerFamily.DOWNLOAD, key), d.finish_at)
        else:
            self._timer(KeyedTimer(TimerFamily.DOWNLOAD_STALL, key), d.last_progress + self.item("timer.download.stalled"))

    def links_changed(self, now: float) -> None:
        for key in sorted(self.downloads):
            d = self.downloads[key]
            if d.state == "running":
                was = d.rate
                d.set_rate(now, max(self._rate(), 0.0))
                self._timers(key, now)
                if (was > 0) != (d.rate > 0):
                    self._report(key, now)

    def _report(self, key: str, now: float) -> None:
        """Copy progress and error to the owner (ContentTreeStatus -> BaseOsStatus / AppInstanceStatus):
        the error stays set during a retry and clears only on success (``maybeRetryDownload``)."""
        d = self.downloads[key]
        d.advance(now)
        if key == "bos":
            e = self.persist.bos
            if e is not None and e["zsw"] == ZSwState.DOWNLOAD_STARTED:
                e["err"] = d.err
        else:
            app = self.node.zedmanager.apps.get(key[4:])
            if app is not None:
                app["err"] = d.err
        self.node.zedagent.publish(now)

    def on_finished(self, key: str, now: float) -> None:
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
                self._attempt(key, now)
                return
            d.verified(False)
            d.finish_at = None
            d.err = f"computed sha256 of {key} does not match the configured sha256"
            self._note("verify_failed", key=key, retry=None)
            self._report(key, now)
            return
        d.verified(True)
        d.err = ""
        self._report(key, now)
        if key == "bos":
            self.node.baseosmgr.on_downloaded(now)
        else:
            app = self.node.zedmanager.apps.get(key[4:])
            if app is not None and app["state"] == ZSwState.DOWNLOAD_STARTED:
                self.node.zedmanager.advance(key[4:], now)

    def on_stall_timer(self, key: str, now: float) -> None:
        d = self.downloads.get(key)
        if d is None or not d.stalled(now, self.item("timer.download.stalled")):
            return
        d.fail(now, d.stall_error(key, now))  # download.go: "Cancelling due to no progress ..."
        self._note("download_failed", key=key, err=d.err)
        self._report(key, now)

    def on_retry_timer(self, key: str, now: float) -> None:
        d = self.downloads.get(key)
        if d is None or d.state in ("verified", "verify_failed"):
            return  # the ticker ends with the download
        self._timer(KeyedTimer(TimerFamily.DOWNLOAD_RETRY, key), now + float(self.rng.uniform(0.3, 1.0)) * d.tick)
        if d.retry_due(now, self.item("timer.download.retry")):
            d.retries += 1  # maybeRetryDownload: RetryCount++, the original error kept until success
            d.err = f"{d.orig_err}; Retrying; attempt {d.retries}"
            self._attempt(key, now)
