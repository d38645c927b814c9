"""The node's names: its timers, its phases, and the periodic timers' rules (spec §1, §4, §6).

Both are str-valued, so a name that travels (a journal, a SimPy token, a note) is the same
string it always was. :data:`PERIODIC` is read by the node and by the engine's bulk path, which
must draw the same intervals the node would.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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


class TimerFamily(StrEnum):
    """A prefix of keyed timers: the timer's name is the prefix followed by its key."""

    DOWNLOAD = "dl:"
    DOWNLOAD_STALL = "dlstall:"
    DOWNLOAD_RETRY = "dlretry:"
    APP = "app:"
    DPC_VERIFY = "dpcverify:"
    NET_FAIL = "netfail:"


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
