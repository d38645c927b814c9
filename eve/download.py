"""One download as EVE's downloader and verifier run it (spec §3 step 1, §4, §6).

Plain bookkeeping, no timers and no clock: :class:`~eve.agents.downloader.Downloader` owns the timers and
calls these methods with ``now``. The rules (P:cmd/downloader/syncop.go ``handleSyncOp``,
downloader.go ``runHandler`` / ``maybeRetryDownload``, download.go, P:cmd/volumemgr/updatestatus.go):

* **Cost gate**: an attempt needs an up management port with cost <= ``network.download.max.cost``;
  otherwise it fails at once with "No IP management port addresses with cost <= N".
* **Progress** runs at the rate of the usable ports; with none of them up it makes no progress.
* **Stall**: no progress for longer than ``timer.download.stalled`` cancels the attempt.
* **Retry**: a failed download is retried on a ticker of U[0.3, 1] x ``timer.download.retry``, once at
  least ``timer.download.retry`` has passed since the error; the error stays until a success.
* **Verify**: a verify failure re-downloads at once, at most ``blob.download.max.retries`` times.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from eve.fsm import Transitions


def cost_error(max_cost: int) -> str:
    """The downloader's text when no usable port passes the cost gate (P:cmd/downloader/syncop.go)."""
    return f"No IP management port addresses with cost <= {max_cost}"


class DownloadState(StrEnum):
    """``error``: the download failed (``Download.err`` says why) and waits for the retry ticker;
    ``verify_failed``: the sha256 did not match after the last verify retry, a final state."""

    IDLE = "idle"
    RUNNING = "running"
    ERROR = "error"
    VERIFIED = "verified"
    VERIFY_FAILED = "verify_failed"


class DownloadEvent(StrEnum):
    ATTEMPT = "attempt"  # from byte 0: the first, a retry after an error, or again after a verify failure
    FAILED = "failed"  # no port passes the cost gate, or no progress for timer.download.stalled
    VERIFIED = "verified"
    VERIFY_FAILED = "verify failed"  # the last verify retry failed too


_D = DownloadState
DOWNLOAD: Transitions[DownloadState, DownloadEvent] = Transitions("download", {
    (_D.IDLE, DownloadEvent.ATTEMPT): _D.RUNNING,
    (_D.ERROR, DownloadEvent.ATTEMPT): _D.RUNNING,
    (_D.RUNNING, DownloadEvent.ATTEMPT): _D.RUNNING,  # a verify failure downloads again at once
    (_D.RUNNING, DownloadEvent.FAILED): _D.ERROR,
    (_D.RUNNING, DownloadEvent.VERIFIED): _D.VERIFIED,
    (_D.RUNNING, DownloadEvent.VERIFY_FAILED): _D.VERIFY_FAILED,
})
"""One download's states (P:cmd/downloader/downloader.go, P:cmd/volumemgr/updatestatus.go)."""


@dataclass
class Download:
    """Bytes done, the current rate and the error state of one blob's download."""

    size: int
    verify_ok: bool = True
    tick: float = 600.0
    """timer.download.retry when the download was created: runHandler's ticker range (0.3-1 x tick)."""
    state: DownloadState = DownloadState.IDLE
    done: float = 0.0
    rate: float = 0.0
    since: float = 0.0
    last_progress: float = 0.0
    finish_at: float | None = None
    err: str = ""
    orig_err: str = ""
    error_at: float | None = None
    retries: int = 0
    """Download retries after an error (DownloaderStatus.RetryCount)."""
    verify_retries: int = 0
    """Re-downloads after a verify failure (BlobStatus.RetryCount)."""

    @property
    def progress(self) -> int:
        """Percent done (ContentTreeStatus.Progress = 100 * current / total)."""
        return int(100 * min(self.done, self.size) // self.size) if self.size > 0 else 100

    def progress_at(self, now: float) -> int:
        """Percent done at ``now``, counting the bytes received since the last rate change."""
        done = self.done
        if self.state == "running" and self.rate > 0 and now > self.since:
            done = min(float(self.size), done + self.rate * (now - self.since))
        return int(100 * done // self.size) if self.size > 0 else 100

    def advance(self, now: float) -> None:
        """Account the bytes received since the last rate change."""
        if self.state == "running" and self.rate > 0 and now > self.since:
            self.done = min(float(self.size), self.done + self.rate * (now - self.since))
            self.last_progress = now
        self.since = now

    def start(self, now: float, rate: float, max_cost: int) -> None:
        """A new attempt from byte 0: the cost gate first (``rate`` < 0 means no port passes it)."""
        self.state = DOWNLOAD.fire(self.state, DownloadEvent.ATTEMPT)
        self.done = 0.0
        self.since = self.last_progress = now
        self.finish_at = None
        if rate < 0:
            self.fail(now, cost_error(max_cost))
            return
        self.set_rate(now, rate)

    def set_rate(self, now: float, rate: float) -> None:
        """The usable links changed: progress so far is kept, the rest runs at ``rate`` (0 = none)."""
        self.advance(now)
        self.rate = max(rate, 0.0)
        self.finish_at = now + (self.size - self.done) / self.rate if self.rate > 0 else None

    def fail(self, now: float, err: str) -> None:
        """HandleDownloadFail: the error and its time; the first error is kept as the original."""
        self.state = DOWNLOAD.fire(self.state, DownloadEvent.FAILED)
        self.rate = 0.0
        self.finish_at = None
        self.error_at = now
        if not self.orig_err:
            self.orig_err = err
        self.err = err if self.retries == 0 else f"{self.orig_err}; Retrying; attempt {self.retries}"

    def verified(self, ok: bool) -> None:
        """The verifier's verdict on the finished download (``ok``), or the last verify retry failed."""
        self.state = DOWNLOAD.fire(self.state, DownloadEvent.VERIFIED if ok else DownloadEvent.VERIFY_FAILED)

    def stalled(self, now: float, stall_time: float) -> bool:
        """download.go: no progress for more than ``timer.download.stalled``."""
        return self.state == "running" and self.rate == 0 and now - self.last_progress >= stall_time

    def stall_error(self, name: str, now: float) -> str:
        return (
            f"Cancelling due to no progress for {name} in {now - self.last_progress:.0f}s; "
            f"size {int(self.done)}/{self.size}"
        )

    def retry_due(self, now: float, retry_time: float) -> bool:
        """maybeRetryDownload: only an errored download, and only ``retry_time`` after the error."""
        return self.state == "error" and self.error_at is not None and now - self.error_at >= retry_time
