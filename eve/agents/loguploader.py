"""loguploader: the newlog upload timer and its answers (spec §1 log upload;
P:cmd/loguploader/loguploader.go; the schedule and back-off in :mod:`eve.logs`).

It starts with zedagent. The simulator uploads a quiescent node's files in bulk and writes them
back through :meth:`LogUploaderAgent.note_uploads` before the node's next call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eve.agents.base import Agent
from eve.logs import LogUploader
from eve.vocab import Timer

if TYPE_CHECKING:
    from eve.node import Node




class LogUploaderAgent(Agent):
    """loguploader for one boot (:class:`eve.logs.LogUploader` holds the rules)."""

    __slots__ = ("uploader",)

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.uploader: LogUploader | None = None  # loguploader, from zedagent's start (§1)

    # ------------------------------------------------------------------------------ log upload --
    def on_timer(self, now: float) -> None:
        """loguploader's upload timer (§1 newlogs upload timer, P:cmd/loguploader/loguploader.go
        ``Run``/``doFetchSend``): send the oldest file, re-arm after the answer (the send is
        synchronous), or at once when there is no file."""
        up = self.uploader
        if up is None or up.inflight:
            return
        if up.fire(now, self.rng):
            self._send("logs", {"at": now, "files": up.left + 1}, now)
        else:
            self._timer(Timer.LOGS, now + up.interval)

    def on_answer(self, status: int, now: float) -> None:
        """§2.1 POST newlogs: 200/201 only; 503/no answer count towards the outage back-off;
        4xx retries the file (moved aside on the 11th); 429 slows uploads (``sendToCloud``)."""
        up = self.uploader
        if up is None:
            return
        up.answer(status, now)
        self._timer(Timer.LOGS, now + up.interval)

    def stop(self, now: float) -> None:
        if self.uploader is not None:
            self.uploader.stop(now)

    def note_uploads(self, count: int, left: int, interval: int | None = None, sched_at: float | None = None) -> None:
        """Files the simulator's bulk path uploaded for this node while it was quiescent (200/201
        answers, the same rule as :meth:`_logs_response`), and the plain schedule evaluations it
        ran (``logs.plain_at``), written back before its next call."""
        if self.uploader is not None:
            if interval is not None and sched_at is not None:
                self.uploader.evaluated(interval, sched_at)
            self.uploader.sent(count, left)
