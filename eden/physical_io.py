"""A hardware profile's I/O inventory as EVE's device model expresses it (api:proto/config/devmodel.proto
``PhysicalIO``), and its conversion to the members domainmgr assigns (:mod:`eve.placement`).

The profile's ``nics`` are the device's network ports (SystemAdapters, which name their PhysicalIO
by ``lowerLayerName``); each must name, by its ``ifname``, a PhysicalIO of the matching network
type. Everything else about the hardware (PCI address, assignment group, usage) is written once,
in ``physical_io``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Callable, Protocol, Sequence, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from eden.errors import HintedValueError, Problem, did_you_mean
from eve.placement import IoMember, PhyIoMemberUsage, PhyIoType

E = TypeVar("E", bound=IntEnum)


def _by_name(enum: type[E]) -> Callable[[object], object]:
    """Accept an enum member or its exact proto name (``PhyIoUSB``)."""

    def parse(value: object) -> object:
        if isinstance(value, enum):
            return value
        if isinstance(value, str) and value in enum.__members__:
            return enum[value]
        raise HintedValueError(
            f"'{value}' is not a {enum.__name__} name", did_you_mean(str(value), enum.__members__, f"{enum.__name__} names")
        )

    return parse


def _name(value: IntEnum) -> str:
    return value.name


IoType = Annotated[
    PhyIoType,
    BeforeValidator(_by_name(PhyIoType)),
    PlainSerializer(_name, return_type=str),
    WithJsonSchema({"enum": list(PhyIoType.__members__)}),
]
IoUsage = Annotated[
    PhyIoMemberUsage,
    BeforeValidator(_by_name(PhyIoMemberUsage)),
    PlainSerializer(_name, return_type=str),
    WithJsonSchema({"enum": list(PhyIoMemberUsage.__members__)}),
]


class PhyAddrs(BaseModel):
    """``PhysicalIO.phyaddrs``: the bus addresses, keyed as EVE reads them (case-insensitive there)."""

    model_config = ConfigDict(extra="forbid")

    pcilong: str | None = None
    """``pcilong``: a PCI address such as 0000:02:00.0."""
    ifname: str | None = None
    """``ifname``: the network interface; every PhyIoNet* entry has one."""
    serial: str | None = None
    """``serial``: a serial port such as /dev/ttyS0."""
    irq: str | None = None
    """``irq``: a number, list or range."""
    ioports: str | None = None
    """``ioports``: an I/O port range such as 3f8-3ff."""
    usbaddr: str | None = None
    """``usbaddr``: a USB address such as 1:2.3."""


class PhysicalIO(BaseModel):
    """One ``PhysicalIO`` of the device model (api:proto/config/devmodel.proto)."""

    model_config = ConfigDict(extra="forbid")

    ptype: IoType
    """``ptype`` (PhyIoType name, api:proto/evecommon/devmodelcommon.proto). GPUs are PhyIoHDMI,
    as EVE's model script writes them (eve:pkg/debug/spec.sh)."""
    phylabel: str = Field(min_length=1)
    """``phylabel``: the label printed on the box (eth0, USB, COM1)."""
    logicallabel: str | None = None
    """``logicallabel``: the name SystemAdapters and apps may use; default: the phylabel."""
    assigngrp: str = ""
    """``assigngrp``: the assignment group, assigned to one app as a unit; empty: not assignable."""
    usage: IoUsage = Field(PhyIoMemberUsage.PhyIoUsageNone, json_schema_extra={"default": "PhyIoUsageNone"})
    """``usage`` (PhyIoMemberUsage name). EVE carries it; domainmgr's admission does not read it."""
    phyaddrs: PhyAddrs = Field(default_factory=PhyAddrs)
    """``phyaddrs``."""

    @property
    def label(self) -> str:
        return self.logicallabel or self.phylabel

    def member(self) -> IoMember:
        a = self.phyaddrs
        return IoMember(self.ptype, self.phylabel, self.label, self.assigngrp, self.usage, a.ifname or "", a.pcilong or "")


NIC_TYPES = {"ethernet": PhyIoType.PhyIoNetEth, "wifi": PhyIoType.PhyIoNetWLAN, "wwan": PhyIoType.PhyIoNetWWAN}
"""The PhysicalIO type a NIC of each ``kind`` must have."""


class _NicLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...


def inventory_problems(nics: Sequence[_NicLike], io: Sequence[PhysicalIO]) -> list[Problem]:
    """Each NIC must be the ifname of a PhysicalIO of its network type; phylabels are unique."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, entry in enumerate(io):
        if entry.phylabel in seen:
            problems.append(Problem(("physical_io", i, "phylabel"), f"phylabel '{entry.phylabel}' is used more than once"))
        seen.add(entry.phylabel)
        if entry.ptype in NIC_TYPES.values() and not entry.phyaddrs.ifname:
            problems.append(Problem(("physical_io", i, "ptype"), f"{entry.ptype.name} '{entry.phylabel}' has no phyaddrs.ifname",
                                    "EVE needs an ifname for every network PhysicalIO"))
    by_ifname = {e.phyaddrs.ifname: e for e in io if e.phyaddrs.ifname}
    for i, nic in enumerate(nics):
        want = NIC_TYPES[nic.kind]
        found = by_ifname.get(nic.name)
        if found is None:
            problems.append(Problem(
                ("nics", i, "name"), f"NIC '{nic.name}' has no PhysicalIO with phyaddrs.ifname '{nic.name}'",
                f"add a physical_io entry with ptype: {want.name} and phyaddrs: {{ifname: {nic.name}}}",
            ))
        elif found.ptype != want:
            problems.append(Problem(
                ("nics", i, "kind"), f"NIC '{nic.name}' is {nic.kind} but its PhysicalIO '{found.phylabel}' is {found.ptype.name}",
                f"a {nic.kind} NIC needs ptype {want.name}",
            ))
    return problems


def with_nic_entries(nics: Sequence[_NicLike], io: Sequence[PhysicalIO]) -> list[PhysicalIO]:
    """``io`` plus a PhysicalIO for each NIC it lacks (its network type, its ifname, no group: not
    assignable): what a profile override that adds a NIC, and no inventory, stands for."""
    have = {e.phyaddrs.ifname for e in io if e.phyaddrs.ifname}
    added = [PhysicalIO(ptype=NIC_TYPES[n.kind], phylabel=n.name, usage=PhyIoMemberUsage.PhyIoUsageNone, phyaddrs=PhyAddrs(ifname=n.name))
             for n in nics if n.name not in have and not any(e.phylabel == n.name for e in io)]
    return [*io, *added]
