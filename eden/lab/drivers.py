"""A place's drivers, built from its lab-file entry (:mod:`eden.lab.model`).

The models are the file format; the drivers (:mod:`eden.lab.power`, :mod:`eden.lab.consoles`,
:mod:`eden.lab.shell`) take plain arguments. This is the one place that joins them, so the board
backend and ``eden lab`` build a place's power and console the same way.

A labgrid place (``labgrid:`` in the lab file) has no power or console block: its drivers are built
from the resources of the acquired labgrid place (:mod:`eden.lab.labgrid`), passed as ``resources``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from eden.errors import InfrastructureError

if TYPE_CHECKING:
    from eden.lab.consoles import ReattachingConsole
    from eden.runtime.console import ByteSource
    from eden.lab.labgrid import LabgridResources
    from eden.lab.load import LoadedLab
    from eden.lab.model import Place
    from eden.lab.power import PowerDriver


def _labgrid_resources(name: str, place: Place, resources: LabgridResources | None) -> LabgridResources:
    assert place.labgrid is not None
    if resources is None:
        raise InfrastructureError(f"place {name}: a labgrid place's drivers come from its acquired labgrid place "
                                  f"'{place.labgrid.place}': acquire it first (eden.lab.labgrid.LabgridLease)")
    return resources


def power_for(name: str, place: Place, resources: LabgridResources | None = None) -> PowerDriver:
    """The place's power switch; a place without one cannot be powered by eden. A labgrid place's
    comes from its exported PDUDaemonPort (``resources``, read after acquiring it)."""
    from eden.lab.power import CommandPower, ManualPower, PduDaemonPower

    if place.labgrid is not None:
        res = _labgrid_resources(name, place, resources)
        if res.power is None:
            others = f" (it exports: {', '.join(res.others)})" if res.others else ""
            raise InfrastructureError(f"place {name}: labgrid place '{place.labgrid.place}' exports no PDUDaemonPort"
                                      f"{others}; eden switches a labgrid place's power through PDUDaemon")
        return PduDaemonPower(res.power.url, res.power.hostname, res.power.port, place=name)
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
                on_event: Callable[[str, dict[str, object]], None] | None = None,
                resources: LabgridResources | None = None) -> ReattachingConsole:
    """The place's serial console (local tty or a serial server), re-attached for ``reattach`` s.
    A labgrid place's is its exported NetworkSerialPort (``resources``), with the console defaults."""
    from eden.lab.consoles import LocalSerialSource, NetworkSerialSource, ReattachingConsole
    from eden.lab.model import Console, NetworkConsole

    c = place.console
    if place.labgrid is not None:
        res = _labgrid_resources(name, place, resources)
        if res.console_url is None:
            raise InfrastructureError(f"place {name}: labgrid place '{place.labgrid.place}' exports no "
                                      "NetworkSerialPort; the board backend watches every board through its console")
        c = Console(network=NetworkConsole(url=res.console_url))
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
