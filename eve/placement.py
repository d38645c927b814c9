"""domainmgr's placement of an app instance: pinned CPUs and passed-through I/O adapters (spec §8).

Pure functions the node's zedmanager calls when an app activates, after its memory is admitted
(:mod:`eve.admission`). They follow domainmgr's ``doActivate`` (P:cmd/domainmgr/domainmgr.go):

1. ``assignCPUs``: an app with ``VmConfig.pin_cpu`` gets ``vcpus`` CPUs of its own from the
   CPU allocator (P:cpuallocator/cpuallocator.go), the lowest free ones above the first
   ``eve_max_vcpus`` (kernel argument, 1 by default: eve:pkg/grub/rootfs.cfg), which stay EVE's.
2. ``reserveAdapters``: each ``AppInstanceConfig.adapters`` entry (type + name) is looked up as an
   assignment group, a phylabel or a logical label (P:types/assignableadapters.go
   ``LookupIoBundleAny``); a member of a group brings its whole group: the group is checked and
   reserved as a unit, and one member that is a network port of EVE's (``IsPort``, computed for
   the whole group in ``updatePortAndPciBackIoBundle``) or is used by another app refuses it all.

A refusal is the ErrorDescription domainmgr sets; zedmanager copies it into the app's error and the
app stays INSTALLED (the DomainStatus state before a boot, copied by zedmanager's
updatestatus.go). An adapter refusal is retried on domainmgr's per-app 9-30 s ticker
(``maybeRetryAdapters``); a CPU refusal sets no retry flag and stays until the config changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

EVE_MAX_VCPUS = 1
"""CPUs kept for EVE's services: ``eve_max_vcpus=1`` in GRUB's default kernel arguments, and 1
when the argument is missing (domainmgr ``getReservedCPUsNum``)."""

ADAPTER_RETRY = (9.0, 30.0)
"""domainmgr's per-domain ticker (``runHandler``: a range ticker of 0.3-1.0 × 30 s) that runs
``maybeRetryAdapters`` while an app's adapters failed."""


class PhyIoType(IntEnum):
    """api:proto/evecommon/devmodelcommon.proto ``PhyIoType`` (P:types/assignableadapters.go IoType)."""

    PhyIoNoop = 0
    PhyIoNetEth = 1
    PhyIoUSB = 2
    PhyIoCOM = 3
    PhyIoAudio = 4
    PhyIoNetWLAN = 5
    PhyIoNetWWAN = 6
    PhyIoHDMI = 7  # GPUs and VGA controllers (eve:pkg/debug/spec.sh writes them as type 7)
    PhyIoNVMEStorage = 9
    PhyIoSATAStorage = 10
    PhyIoNetEthPF = 11
    PhyIoNetEthVF = 12
    PhyIoUSBController = 13
    PhyIoUSBDevice = 14
    PhyIoCAN = 15
    PhyIoVCAN = 16
    PhyIoLCAN = 17
    PhyIoOther = 255


class PhyIoMemberUsage(IntEnum):
    """api:proto/evecommon/devmodelcommon.proto ``PhyIoMemberUsage``. domainmgr's admission does
    not read it: what keeps an adapter for EVE is being a port of the DPC (``IsPort``)."""

    PhyIoUsageNone = 0
    PhyIoUsageMgmtAndApps = 1
    PhyIoUsageShared = 2
    PhyIoUsageDedicated = 3
    PhyIoUsageDisabled = 4
    PhyIoUsageMgmtOnly = 5


NET_TYPES = frozenset({PhyIoType.PhyIoNetEth, PhyIoType.PhyIoNetWLAN, PhyIoType.PhyIoNetWWAN, PhyIoType.PhyIoNetEthPF})
"""``IoType.IsNet``: the types whose ``ifname`` can make them a port."""


@dataclass(frozen=True)
class IoMember:
    """One PhysicalIO as domainmgr holds it (an ``IoBundle`` of AssignableAdapters)."""

    ptype: PhyIoType
    phylabel: str
    logicallabel: str
    assigngrp: str = ""
    usage: PhyIoMemberUsage = PhyIoMemberUsage.PhyIoUsageNone
    ifname: str = ""
    pcilong: str = ""


@dataclass(frozen=True)
class Refusal:
    """Why domainmgr did not start an app: the ErrorDescription text and severity; ``retry`` when
    domainmgr tries again on its ticker (adapters), not when it does not (CPUs)."""

    error: str
    severity: str
    retry: bool


def lookup_any(io: Sequence[IoMember], name: str) -> list[IoMember]:
    """``LookupIoBundleAny``: the members of the group ``name`` (case-insensitive), else the one
    member with that phylabel or logical label and, if it has a group, the whole group."""
    group = [m for m in io if m.assigngrp and m.assigngrp.lower() == name.lower()]
    if group:
        return group
    one = next((m for m in io if m.phylabel.lower() == name.lower()), None)
    one = one or next((m for m in io if m.logicallabel.lower() == name.lower()), None)
    if one is None:
        return []
    if not one.assigngrp:
        return [one]
    return [m for m in io if m.assigngrp.lower() == one.assigngrp.lower()]


def is_port_group(members: Iterable[IoMember], ports: Iterable[str]) -> bool:
    """``updatePortAndPciBackIoBundle``: a group is a port when one of its network members' ifname
    is a port of the device's network status; then every member is."""
    names = {p.lower() for p in ports}
    return any(m.ptype in NET_TYPES and m.ifname.lower() in names for m in members)


def adapter_type(io: Sequence[IoMember], name: str, given: int | None) -> int:
    """The ``Adapter.type`` of a config entry: as given, else what a controller writes from the
    model: the type of the PhysicalIO with that phylabel or logical label, else of the group's
    first member (PhyIoNoop for a name the model lacks)."""
    if given is not None:
        return given
    low = name.lower()
    named = next((m for m in io if low in (m.phylabel.lower(), m.logicallabel.lower())), None)
    found = [named] if named is not None else lookup_any(io, name)
    return int(found[0].ptype) if found else int(PhyIoType.PhyIoNoop)


def reserve_adapters(
    io: Sequence[IoMember],
    adapters: Sequence[tuple[int, str]],
    app: str,
    used_by: Mapping[str, str],
    ports: Iterable[str],
    halting: Callable[[str], bool],
    uuid_of: Callable[[str], str],
) -> tuple[dict[str, str], Refusal | None]:
    """``reserveAdapters`` for ``app``: the phylabels it reserves (phylabel -> app), or the first
    refusal, in config order and member order. ``used_by`` maps a reserved phylabel to its app;
    ``ports`` are the device's network ports. On a refusal nothing is reserved (domainmgr releases
    what this call reserved). ``uuid_of`` names an app as EVE's error does, by its UUID."""
    port_names = list(ports)
    taken: dict[str, str] = {}
    for kind, name in adapters:
        members = lookup_any(io, name)
        if not members:
            return {}, Refusal(f"unknown adapter {kind} {name}", "ERROR", True)
        in_port = is_port_group(members, port_names)
        for m in members:
            if not m.assigngrp:
                return {}, Refusal(f"adapter {kind} {name} phylabel {m.phylabel} is not assignable", "ERROR", True)
            owner = used_by.get(m.phylabel)
            if owner is not None and owner != app:
                extra, severity = ("(which is halting)", "NOTICE") if halting(owner) else ("", "WARNING")
                return {}, Refusal(f"adapter {kind} {name} used by {uuid_of(owner)} {extra}", severity, True)
            if in_port:
                return {}, Refusal(f"adapter {kind} {name} phylabel {m.phylabel} is (part of) a zedrouter port", "ERROR", True)
        taken.update((m.phylabel, app) for m in members)
    return taken, None


def allocate_cpus(total: int, reserved: int, used: Iterable[int], wanted: int) -> tuple[list[int], Refusal | None]:
    """``CPUAllocator.Allocate`` / ``getFree``: the lowest ``wanted`` CPUs from ``reserved`` up
    that no app holds, or EVE's error (with nothing allocated)."""
    held = set(used)
    free = [cpu for cpu in range(reserved, total) if cpu not in held][:wanted]
    if len(free) < wanted:
        text = f"looking for {wanted} CPUs only found {len(free)} reserved for EVE {reserved} total {total}"
        return [], Refusal(text, "ERROR", False)
    return free, None
