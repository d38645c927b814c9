"""The node's power cycle as a table (:mod:`eve.fsm`): what the hardware does, under every agent."""

from __future__ import annotations

from enum import StrEnum

from eve.fsm import STAY, Transitions
from eve.vocab import Phase


class PowerEvent(StrEnum):
    """What moves a node through its power cycle (:class:`eve.vocab.Phase`)."""

    POWER_ON = "power on"
    NO_BOOTABLE = "no bootable partition"  # GRUB finds no partition to boot (§1)
    AGENTS_STARTED = "agents started"  # kernel and services up: nodeagent starts (§3)
    PANIC = "kernel panic"  # every agent stops; the kernel resets after its panic timeout (§7)
    RESET = "reset"  # a reboot, the watchdog, a crash: the hardware resets
    POWER_CUT = "power cut"
    POWERED_OFF = "powered off"  # nodeagent's power-off command ends (§7)


_P = Phase
_ON = (_P.BOOTING, _P.RUNNING, _P.REBOOTING, _P.BRICKED)
POWER: Transitions[Phase, PowerEvent] = Transitions("power", {
    (_P.OFF, PowerEvent.POWER_ON): _P.BOOTING,
    **{(on, PowerEvent.POWER_ON): STAY for on in _ON},  # already on
    (_P.BOOTING, PowerEvent.NO_BOOTABLE): _P.BRICKED,
    (_P.BOOTING, PowerEvent.AGENTS_STARTED): _P.RUNNING,
    (_P.RUNNING, PowerEvent.PANIC): _P.REBOOTING,  # the machine runs, nothing of EVE does, until the reset
    **{(on, PowerEvent.RESET): _P.OFF for on in (_P.BOOTING, _P.RUNNING, _P.REBOOTING)},
    (_P.OFF, PowerEvent.POWER_CUT): STAY,
    **{(on, PowerEvent.POWER_CUT): _P.OFF for on in _ON},
    (_P.RUNNING, PowerEvent.POWERED_OFF): _P.OFF,
})
"""The node's power cycle. A bricked node stays bricked until its power is cut."""
