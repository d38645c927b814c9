"""A place's drivers, built from its lab-file entry (:mod:`eden.lab.model`).

The models are the file format; the drivers (:mod:`eden.lab.power`, :mod:`eden.lab.consoles`,
:mod:`eden.lab.shell`) take plain arguments. This is the one place that joins them, so the board
backend and ``eden lab`` build a place's power and console the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from eden.errors import InfrastructureError

if TYPE_CHECKING:
    from eden.lab.consoles import ReattachingConsole
    from eden.runtime.console import ByteSource
    from eden.lab.load import LoadedLab
    from eden.lab.model import Place
    from eden.lab.power import PowerDriver


def power_for(name: str, place: Place) -> PowerDriver:
    """The place's power switch; a place without one cannot be powered by eden."""
    from eden.lab.power import CommandPower, ManualPower, PduDaemonPower

    p = place.power
    if p is None:
        raise InfrastructureError(f"place {name}: no power driver in the lab file")
    if p.pdudaemon is not None:
        return PduDaemonPower(p.pdudaemon.url, p.pdudaemon.hostname, p.pdudaemon.port, place=name)
    if p.command is not None:
        return CommandPower(p.command.on, p.command.off, p.command.cycle, timeout=p.command.timeout, place=name)
    assert p.manual is not None
    return ManualPower(p.manual.prompt, place=name)


def console_for(name: str, place: Place, lab: LoadedLab, log_dir: Path, *,
                on_line: Callable[[str], None] | None = None,
                on_event: Callable[[str, dict[str, object]], None] | None = None) -> ReattachingConsole:
    """The place's serial console (local tty or a serial server), re-attached for ``reattach`` s."""
    from eden.lab.consoles import LocalSerialSource, NetworkSerialSource, ReattachingConsole

    c = place.console
    if c is None:
        raise InfrastructureError(f"place {name}: no console in the lab file; the board backend watches every board "
                                  "through its serial console")
    source: ByteSource
    if c.serial is not None:
        source = LocalSerialSource(str(lab.resolve(c.serial.device)), c.serial.baud)
    else:
        assert c.network is not None
        source = NetworkSerialSource(c.network.url)
    return ReattachingConsole(source, log_dir, place=name, reattach=c.reattach, on_line=on_line, on_event=on_event)
