"""The watchdog daemon (eve:pkg/watchdog, spec §7): it checks every second that each agent's pid
is alive and that its touch file changed in the last 300 s, and resets the device when one is not.
It records its reason only where no agent recorded one first (watchdog-report.sh).

The node calls it for the agent faults a scenario injects: a hang, a process that dies, the OOM
killer, an agent's log.Fatal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eve.agents.base import Agent
from eve.enums import (
    BootReason,
)
from eve.vocab import Phase, Timer

if TYPE_CHECKING:
    from eve.node import Node




WATCHDOG_CHANGE = 300.0  # §7 touch file unchanged 300 s -> reboot
WATCHDOG_INTERVAL = 1.0  # §7 the watchdog daemon checks the pid files every second


class Watchdog(Agent):
    """The watchdog daemon's view of one boot: which agents hung or died."""

    __slots__ = ("hung", "dead_agent", "oom_agent")

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.hung: set[str] = set()  # agents that stopped touching their watchdog file (§7)
        self.dead_agent = ""  # an agent whose process died (agent_exit)
        self.oom_agent = ""  # the process the OOM killer reaped this boot: dmesg has oom_reaper (§7)

    def reason(self, reason: BootReason) -> BootReason:
        """watchdog-report.sh: an OOM line in dmesg makes any watchdog reboot OOM (spec §7)."""
        return BootReason.OOM if self.oom_agent else reason

    def oom_text(self) -> str:
        return f"; dmesg: oom_reaper: reaped process ({self.oom_agent})" if self.oom_agent else ""

    def hang(self, agent: str, now: float) -> None:
        """One agent stops (and stops touching /run/<agent>.touch); the watchdog reboots the
        device 300 s later with WATCHDOG_HUNG (§7, eve:pkg/watchdog). The other agents go on:
        nodeagent keeps ticking, so a test window that already started commits when it expires,
        and its copy of the config status stays what zedagent last published (no fallback from a
        hung zedagent's silence). A hung zedagent polls, reports and attests no more; a hung
        nodeagent no longer runs its timers or a reboot in progress."""
        if agent in self.hung:
            return
        first = not self.hung
        self.hung.add(agent)
        self._note("hang", agent=agent)
        if agent == "zedagent":
            self.node.zedagent.stop()
        if first:
            self._timer(Timer.WATCHDOG, now + WATCHDOG_CHANGE)

    def pid_gone(self, agent: str, now: float) -> None:
        """An agent's process dies: the watchdog finds /run/<agent>.pid dead at its next 1 s check
        and reboots with WATCHDOG_PID (§7, eve:pkg/watchdog). The first recorded reason wins."""
        self._note("agent_exit", agent=agent)
        self._timer(Timer.WATCHDOG_PID, now + WATCHDOG_INTERVAL)
        self.dead_agent = agent

    def oom(self, agent: str, now: float) -> None:
        """The kernel's OOM killer reaps an agent's process (spec §7): the watchdog finds its pid
        dead at the next 1 s check, and its report script (eve:pkg/watchdog/watchdog-report.sh),
        finding ``oom_reaper`` in dmesg, records OOM instead of WATCHDOG_PID; like every watchdog
        reason it does not replace a recorded one, and it names the running partition in
        /persist/reboot-image."""
        self.oom_agent = agent
        self._note("oom", agent=agent)
        self.pid_gone(agent, now)

    def fatal(self, agent: str, now: float) -> None:
        """An agent calls log.Fatal (spec §7): agentlog's FatalHook (P:agentlog/agentlog.go
        ``FatalHook.Fire``, ``RebootReason``) writes the reason, /persist/reboot-image = the running
        partition and, only if no boot-reason file exists yet, FATAL. The process then exits, so the
        watchdog reboots at its next 1 s pid check; its WATCHDOG_PID does not replace the FATAL."""
        ps = self.persist
        cur = self.zboot.current
        text = (
            f"Reboot from agent {agent} in partition {cur} at EVE version {self.node.running_version}: "
            f"fatal: agent {agent}: log.Fatal"
        )
        if ps.reboot_record is None:
            ps.reboot_record = (BootReason.FATAL, text)
        ps.reboot_image = cur
        self._note("fatal", agent=agent)
        self.pid_gone(agent, now)

    def on_timer(self, name: Timer, now: float) -> None:
        """A check found a stale touch file (a hung agent, or a boot that never started the agents)
        or a dead pid: reset (the node's phase says which checks can fire)."""
        phase = self.node.phase
        if name == Timer.WATCHDOG and (phase == Phase.BOOTING or (phase == Phase.RUNNING and self.hung)):
            agent = ",".join(sorted(self.hung)) or "boot"
            text = f"watchdog: /run/{agent}.touch unchanged for 300 s" + self.oom_text()
            self.node.hard_reset(now, self.reason(BootReason.WATCHDOG_HUNG), text)
        elif name == Timer.WATCHDOG_PID and phase == Phase.RUNNING:
            text = f"watchdog: /run/{self.dead_agent}.pid: process gone" + self.oom_text()
            self.node.hard_reset(now, self.reason(BootReason.WATCHDOG_PID), text)
