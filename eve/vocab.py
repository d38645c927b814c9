"""The node's names: its timers, its phases, and the periodic timers' rules (spec §1, §4, §6).

A fixed timer is a :class:`Timer` (a str enum); a timer that exists once per object (a download,
an app, a request in flight, a DPC verification) is a :class:`KeyedTimer`, a family and its key.
Both hash and compare by value, so drivers key their bookkeeping by either; ``str()`` gives the
name a journal shows (``dl:app1``). :data:`PERIODIC` is read by the node and by the engine's bulk path, which
must draw the same intervals the node would.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class Timer(StrEnum):
    """A fixed-name timer of the node (families with a key, e.g. ``dl:<key>``, are in :class:`TimerFamily`)."""

    WATCHDOG = "watchdog"
    WATCHDOG_PID = "watchdog_pid"
    CRASH = "crash"
    BOOTED = "booted"
    CONFIG = "config"
    NODEAGENT = "nodeagent"
    REBOOT = "reboot"
    NODEOP = "nodeop"
    METRICS = "metrics"
    DEVICEINFO = "deviceinfo"
    PORTTEST = "porttest"
    PORTBETTER = "portbetter"
    LOGS = "logs"
    ONBOARD = "onboard"
    ONBOARD_FAST = "onboard_fast"
    ATTEST = "attest"
    QUOTE = "quote"
    INFO = "info"
    BOS_DOWNLOAD = "bos_download"
    BOS_WRITE = "bos_write"
    HANG = "hang"
    APP_RETRY = "app_retry"
    EDGE_CERTS = "edge_certs"


class TimerFamily(StrEnum):
    """A family of keyed timers; its value is the prefix of their journal names."""

    DOWNLOAD = "dl:"
    DOWNLOAD_STALL = "dlstall:"
    DOWNLOAD_RETRY = "dlretry:"
    APP = "app:"
    DPC_VERIFY = "dpcverify:"
    NET_FAIL = "netfail:"


class KeyedTimer(NamedTuple):
    """One timer of a family per key: two downloads (or apps) have two timers that run side by side."""

    family: TimerFamily
    key: str | int | tuple[int, int, float]
    """A download's key or an app's name (str), a request id (int), a DPC verification's
    (generation, DPC index, start time)."""

    def __str__(self) -> str:
        key = ":".join(map(str, self.key)) if isinstance(self.key, tuple) else str(self.key)
        return f"{self.family.value}{key}"


TimerName = Timer | KeyedTimer
"""What :class:`eve.node.SetTimer` names and :meth:`eve.node.Node.on_timer` receives."""


class Phase(StrEnum):
    """Where the node is in its power cycle."""

    OFF = "off"
    BOOTING = "booting"
    RUNNING = "running"
    REBOOTING = "rebooting"
    BRICKED = "bricked"


@dataclass(frozen=True)
class Periodic:
    """A timer that re-arms itself: next = now + U[jitter] x the interval item (spec §6)."""

    request: str  # the request kind each firing sends
    jitter: tuple[float, float]
    interval_item: str | None = None  # None: the schedule is the timer's own (logs, spec §1)


PERIODIC: dict[Timer, Periodic] = {
    Timer.CONFIG: Periodic("config", (0.3, 1.0), "timer.config.interval"),
    Timer.METRICS: Periodic("metrics", (0.3, 1.0), "timer.metric.interval"),
    Timer.DEVICEINFO: Periodic("info", (0.8, 1.2), "timer.deviceinfo.interval"),
    Timer.PORTTEST: Periodic("ping", (1.0, 1.0), "timer.port.testinterval"),
    Timer.LOGS: Periodic("logs", (1.0, 1.0)),
}
