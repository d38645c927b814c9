"""ZInfoDevice.swList as EVE writes it, and reading the base-OS status back from it (spec §2.2).

EVE (P:cmd/zedagent/reportinfo.go ``getSwInfo``, ``addUserSwInfo``) lists the current partition,
the other partition, then every BaseOsStatus not bound to a partition. A base-OS version is
bound to a partition once its content is loaded and the update is not too early
(P:cmd/baseosmgr ``validateAndAssignPartition``): from then on its status travels in that
**labelled** entry (the other partition while it is written and rebooted into, the current one
while it is tested, the failed other one after a fallback) and the unlabelled entry is gone.
Every labelled entry also gets a userStatus of its own (the running image shows UPDATED, the
old one FALLBACK during a test), so a reader must pick the entry of the *configured* version.

Node report side: ``sw`` = [current, other] partitions, ``baseos`` = the configured version's
status. Bound = a partition that holds that version and is not ``unused`` (the node model's own
rule, ``BaseOsMgr._partition_with``).
"""

from __future__ import annotations

import enum
from typing import Callable, Sequence, TypedDict

from eden.wire.gen import info_pb2
from eve.enums import BaseOsStatus, BaseOsSubStatus, ZSwState

Text = Callable[[object, str], str]
"""The codec's checked text converter: (value, what) -> the value if it is a string."""
EnumOut = Callable[[type[enum.Enum], object], int]
"""The codec's enum converter: (enum class, member name) -> wire value."""


class SwPartition(TypedDict):
    """One entry of the node report's ``sw``: a partition (current first, then the other)."""

    partition: str
    version: str | None
    image: str | None
    state: str  # a PartitionState value ("active", "unused", "updating", "inprogress")
    err: str


class BaseosReport(TypedDict, total=False):
    """The node report's ``baseos``: the configured version's status (names of the eve.enums).
    The node and the decoder give every key; the encoder also takes ``{}`` (no base OS)."""

    version: str | None
    image: str | None
    status: str  # BaseOsStatus name
    sub_status: str  # BaseOsSubStatus name
    err: str
    progress: int


def bound_index(sw: Sequence[SwPartition], version: str | None) -> int | None:
    """Index in ``sw`` of the partition the base-OS version is bound to, else None.

    Both partitions holding it (a re-install of the running version): the other one when it is
    being updated or tested, else the current one."""
    if not version:
        return None
    hits = [n for n, part in enumerate(sw) if part.get("version") == version and part.get("state") != "unused"]
    if len(hits) > 1:
        return next((n for n in hits if n > 0 and sw[n].get("state") in ("updating", "inprogress")), hits[0])
    return hits[0] if hits else None


def partition_user_status(state: str, version: str, activated: bool) -> tuple[int, int]:
    """EVE's ``addUserSwInfo`` for a labelled entry that no BaseOsStatus is bound to: zboot says
    INSTALLED when the partition has a version, else INITIAL (userStatus NONE)."""
    if not version:
        return BaseOsStatus.NONE, BaseOsSubStatus.NONE
    if state == "active":
        return (BaseOsStatus.UPDATED if activated else BaseOsStatus.FALLBACK), BaseOsSubStatus.NONE
    if state == "updating":
        return BaseOsStatus.UPDATING, BaseOsSubStatus.UPDATE_REBOOTING
    if state == "inprogress":
        if activated:
            return BaseOsStatus.UPDATING, BaseOsSubStatus.UPDATE_TESTING
        return BaseOsStatus.FAILED, BaseOsSubStatus.NONE
    return BaseOsStatus.NONE, BaseOsSubStatus.NONE


def bos_sw_state(status: BaseOsStatus, sub: BaseOsSubStatus, labelled: bool) -> ZSwState:
    """The ZSwState behind a node userStatus, per the §3 reporting table read backwards
    (**INFERRED** where the table is not one-to-one: an unlabelled FAILED entry says INITIAL)."""
    if labelled:
        return ZSwState.INSTALLED if status != BaseOsStatus.DOWNLOAD_DONE else ZSwState.DELIVERED
    if status == BaseOsStatus.DOWNLOADING:
        return ZSwState.DOWNLOAD_STARTED
    if status == BaseOsStatus.UPDATING and sub == BaseOsSubStatus.UPDATE_INITIALIZING:
        return ZSwState.INITIAL
    if status == BaseOsStatus.FAILED:
        return ZSwState.INITIAL
    return ZSwState.DELIVERED


def encode(d: info_pb2.ZInfoDevice, sw: Sequence[SwPartition], bos: BaseosReport, *,
           text: Text, enum_out: EnumOut, partition_states: frozenset[str], error: type[Exception]) -> None:
    """Fill ``d.swList`` from the node report's ``sw`` and ``baseos`` (see the module docstring);
    ``text``/``enum_out`` are the codec's checked converters, ``error`` its exception."""
    version = bos.get("version")
    status, sub = BaseOsStatus.NONE, BaseOsSubStatus.NONE
    if version is not None:
        text(version, "baseos version")
        status = BaseOsStatus(enum_out(BaseOsStatus, bos.get("status", "NONE")))
        sub = BaseOsSubStatus(enum_out(BaseOsSubStatus, bos.get("sub_status", "NONE")))
    bound = bound_index(sw, version)
    for n, part in enumerate(sw):
        e = d.swList.add(
            activated=n == 0,
            partitionLabel=text(part["partition"], "partition"),
            shortVersion=text(part.get("version") or "", "version"),
            partitionState=text(part["state"], "partition state"),
        )
        if not e.partitionLabel or e.partitionState not in partition_states:
            raise error(f"bad partition entry {part!r}")
        err = part.get("err") or ""
        if n == bound:
            e.status = bos_sw_state(status, sub, labelled=True)
            e.userStatus, e.subStatus = status, sub
            e.downloadProgress = int(bos.get("progress") or 0)  # ZInfoDevSW.downloadProgress (spec §3)
            err = bos.get("err") or err
        else:
            e.status = ZSwState.INSTALLED if e.shortVersion else ZSwState.INITIAL
            e.userStatus, e.subStatus = partition_user_status(e.partitionState, e.shortVersion, e.activated)
        if err:
            e.swErr.description = text(err, "partition err")
            e.userStatus = BaseOsStatus.FAILED  # addUserSwInfo: any swErr is FAILED
    if version is not None and bound is None:
        e = d.swList.add(shortVersion=version, status=bos_sw_state(status, sub, labelled=False),
                         userStatus=status, subStatus=sub, downloadProgress=int(bos.get("progress") or 0))
        if bos.get("err"):
            e.swErr.description = text(bos["err"], "baseos err")


def find_baseos(entries: Sequence[info_pb2.ZInfoDevSW], version: str | None) -> info_pb2.ZInfoDevSW | None:
    """The entry carrying the configured base OS ``version``: an unlabelled one first (download
    and verify), else the labelled one that holds it (spec §2.2). Without a version (the
    controller configured none): the last unlabelled entry that names a version, if any."""
    unlabelled = [e for e in entries if not e.partitionLabel and e.shortVersion]
    if version is None:
        return unlabelled[-1] if unlabelled else None
    for e in unlabelled:
        if e.shortVersion == version:
            return e
    labelled = [e for e in entries if e.partitionLabel and e.shortVersion == version]
    live = [e for e in labelled if e.partitionState != "unused"]
    if len(live) > 1:
        return next((e for e in live if not e.activated and e.partitionState in ("updating", "inprogress")), live[0])
    if live:
        return live[0]
    return unlabelled[-1] if unlabelled else None
