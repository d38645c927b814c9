"""Machine control for the QEMU backend: host checks and the KVM probe, swtpm, and the VM
with QMP power control and events; its console and SSH come from :mod:`eden.runtime`.

The backend ties these together; see docs/qemu.md.
"""

from eden.runtime.console import Console, ConsoleMatch, ExpectTimeout
from eden.qemu.hostcheck import HostTools, check_host, probe_accel
from eden.qemu.machine import Disk, Machine, MachineConfig, MachineEvent
from eden.qemu.swtpm import Swtpm

__all__ = [
    "Console", "ConsoleMatch", "Disk", "ExpectTimeout", "HostTools", "Machine", "MachineConfig", "MachineEvent",
    "Swtpm", "check_host", "probe_accel",
]
