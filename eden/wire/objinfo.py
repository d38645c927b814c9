"""Per-object info kinds <-> ZInfoMsg contents: volumes, content trees, network instances and the
hardware report (spec §2.2; P:cmd/zedagent/handlemetrics.go ``PublishVolumeToZedCloud``,
``PublishContentInfoToZedCloud``, handlenetworkinstance.go, hardwareinfo.go).

EVE queues each of them under its own key (the object's uuid; the device uuid + "hwinfo" for
the hardware report): a newer report of an object replaces the older one. When an object is
gone EVE sends a message holding only its uuid; here that is an object whose ``data`` is None
(decoded without a uuid, the key is "").

An object travels as ``{"kind": ZInfoTypes name, "key": uuid, "data": {...} | None}``:

* ``ZI_VOLUME``: ``name, state (ZSwState), progress (%), max_size, cur_size, err``;
* ``ZI_CONTENT_TREE``: ``name, sha256, state, progress, size, err``;
* ``ZI_NETWORK_INSTANCE``: ``name, version, activated, ports, state (ONLINE...), err``;
* ``ZI_HARDWARE`` (key :data:`HARDWARE_KEY`): ``release, platform, partition, memory, storage,
  cores, tpm, firmware, nics: [{name, kind, speed_mbps}]``.

Malformed input raises ValueError/KeyError/TypeError; the codec's public functions turn those
into CodecError. Decoded texts are cut to :data:`MAX_TEXT` characters and lists to
:data:`MAX_ITEMS` entries: a controller keeps hundreds of these per device.
"""

from __future__ import annotations

from typing import Any, Mapping, TypedDict, cast

from google.protobuf.message import Message

from eden.wire.gen import info_pb2
from eve.enums import ZSwState

HARDWARE_KEY = "hwinfo"
"""The one hardware report of a device (EVE's queue key is the device uuid + "hwinfo")."""

CONTENT_FIELD = {"ZI_NETWORK_INSTANCE": "niinfo", "ZI_VOLUME": "vinfo", "ZI_CONTENT_TREE": "cinfo",
                 "ZI_HARDWARE": "hwinfo"}
"""ZInfoMsg's InfoContent member of each per-object kind."""
KIND_OF_FIELD = {field: kind for kind, field in CONTENT_FIELD.items()}
_NIC_TYPES = {"ethernet": info_pb2.NETWORK_DEVICE_TYPE_ETHERNET, "wifi": info_pb2.NETWORK_DEVICE_TYPE_WIFI,
              "wwan": info_pb2.NETWORK_DEVICE_TYPE_WWAN}
_NIC_KINDS = {v: k for k, v in _NIC_TYPES.items()}
_NI_PREFIX = "ZNETINST_STATE_"
MAX_TEXT = 1024
MAX_ITEMS = 64


class VolumeData(TypedDict):
    """A ZI_VOLUME object's ``data`` (ZInfoVolume)."""

    name: str
    state: str  # ZSwState name
    progress: int  # percent
    max_size: int
    cur_size: int
    err: str


class ContentTreeData(TypedDict):
    """A ZI_CONTENT_TREE object's ``data`` (ZInfoContentTree)."""

    name: str
    sha256: str
    state: str  # ZSwState name
    progress: int  # percent
    size: int
    err: str


class NetworkInstanceData(TypedDict):
    """A ZI_NETWORK_INSTANCE object's ``data`` (ZInfoNetworkInstance)."""

    name: str
    version: str
    activated: bool
    ports: list[str]
    state: str  # ZNetworkInstanceState name without its ZNETINST_STATE_ prefix
    err: str


class Nic(TypedDict, total=False):
    """One network device of the hardware report (``kind`` defaults to ethernet when encoding)."""

    name: str
    kind: str  # "ethernet" | "wifi" | "wwan" ("unknown" when decoded from another type)
    speed_mbps: int


class HardwareData(TypedDict, total=False):
    """The ZI_HARDWARE object's ``data`` (ZInfoHardware). Decoded, every key is there; when
    encoding, a missing one travels as its zero value."""

    release: str
    platform: str
    partition: str
    memory: int
    storage: int
    cores: int
    tpm: bool
    firmware: str
    nics: list[Nic]


ObjectData = VolumeData | ContentTreeData | NetworkInstanceData | HardwareData


class InfoObject(TypedDict):
    """One per-object info message: ``data`` None says the object is gone."""

    kind: str  # a key of CONTENT_FIELD
    key: str  # the object's uuid (HARDWARE_KEY for the hardware report)
    data: ObjectData | None


def _cut(text: str) -> str:
    return text[:MAX_TEXT]


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {value!r}")
    return value


def _uint(value: object, what: str, bits: int = 64) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**bits:
        raise ValueError(f"{what} must be an unsigned {bits}-bit integer, got {value!r}")
    return value


def _percent(value: object, what: str) -> int:
    percent = _uint(value, what, 32)
    if percent > 100:
        raise ValueError(f"{what} must be a percentage, got {value!r}")
    return int(percent)


def _sw_state(name: object) -> info_pb2.ZSwState:
    try:
        return cast(info_pb2.ZSwState, int(ZSwState[str(name)].value))  # values equal the proto's
    except KeyError:
        raise ValueError(f"{name!r} is not a ZSwState") from None


def _sw_state_in(value: int) -> str:
    try:
        return ZSwState(value).name
    except ValueError:
        raise ValueError(f"{value} is not a valid ZSwState value") from None


def content(obj: Mapping[str, Any]) -> tuple[str, Message]:
    """One object -> (InfoContent member name, message) for ZInfoMsg."""
    kind = obj["kind"]
    if kind not in CONTENT_FIELD:
        raise ValueError(f"{kind!r} is not a per-object info kind ({', '.join(CONTENT_FIELD)})")
    key = _str(obj["key"], f"{kind} key")
    data = obj.get("data")
    if kind == "ZI_HARDWARE":
        if data is None:
            raise ValueError("the hardware report has no delete message")
        return "hwinfo", _hardware(data)
    if not key:
        raise ValueError(f"{kind} needs a uuid")
    if kind == "ZI_VOLUME":
        v = info_pb2.ZInfoVolume(uuid=key)
        if data is not None:
            v.displayName = _str(data.get("name", ""), "volume name")
            v.state = _sw_state(data["state"])
            v.progressPercentage = _percent(data.get("progress", 0), "volume progress")
            v.resources.maxSizeBytes = _uint(data.get("max_size", 0), "volume max_size")
            v.resources.curSizeBytes = _uint(data.get("cur_size", 0), "volume cur_size")
            if data.get("err"):
                v.volumeErr.description = _str(data["err"], "volume err")
        return "vinfo", v
    if kind == "ZI_CONTENT_TREE":
        c = info_pb2.ZInfoContentTree(uuid=key)
        if data is not None:
            c.displayName = _str(data.get("name", ""), "content tree name")
            c.sha256 = _str(data.get("sha256", ""), "content tree sha256")
            c.state = _sw_state(data["state"])
            c.progressPercentage = _percent(data.get("progress", 0), "content tree progress")
            c.resources.curSizeBytes = _uint(data.get("size", 0), "content tree size")
            if data.get("err"):
                c.err.description = _str(data["err"], "content tree err")
        return "cinfo", c
    n = info_pb2.ZInfoNetworkInstance(networkID=key)
    if data is not None:
        n.displayname = _str(data.get("name", ""), "network instance name")
        n.networkVersion = _str(data.get("version", ""), "network instance version")
        n.activated = bool(data.get("activated", False))
        n.ports.extend(_str(p, "network instance port") for p in data.get("ports") or [])
        n.state = info_pb2.ZNetworkInstanceState.Value(_NI_PREFIX + _str(data.get("state", "UNSPECIFIED"), "state"))
        if data.get("err"):
            n.networkErr.add(description=_str(data["err"], "network instance err"))
    return "niinfo", n


def _hardware(data: HardwareData) -> info_pb2.ZInfoHardware:
    hw = info_pb2.ZInfoHardware(eve_release=_str(data.get("release", ""), "eve release"),
                                eve_platform=_str(data.get("platform", ""), "platform"),
                                partition=_str(data.get("partition", ""), "partition"))
    inv = hw.inventory
    inv.total_memory_bytes = _uint(data.get("memory", 0), "memory")
    inv.total_storage_bytes = _uint(data.get("storage", 0), "storage")
    inv.cpu_info.cpus.extend(info_pb2.CPU(id=n) for n in range(_uint(data.get("cores", 0), "cores", 16)))
    inv.tpm.present = bool(data.get("tpm", False))
    if inv.tpm.present:
        inv.tpm.spec_version = "2.0"
    inv.bios.version = _str(data.get("firmware", ""), "firmware version")
    for nic in data.get("nics") or []:
        kind = nic.get("kind", "ethernet")
        if kind not in _NIC_TYPES:
            raise ValueError(f"nic kind must be one of {sorted(_NIC_TYPES)}, got {kind!r}")
        inv.network_devices.add(ifname=_str(nic["name"], "nic name"), type=_NIC_TYPES[kind],
                                speed_mbps=_uint(nic.get("speed_mbps", 0), "nic speed", 32))
    return hw


_GONE_FIELDS = {
    "ZI_VOLUME": frozenset({"uuid"}),
    "ZI_CONTENT_TREE": frozenset({"uuid"}),
    # a deleted network instance keeps its version beside its id
    # (prepareAndPublishNetworkInstanceInfoMsg, P:cmd/zedagent/handlenetworkinstance.go; spec §2.2)
    "ZI_NETWORK_INSTANCE": frozenset({"networkID", "networkVersion"}),
}
"""The fields of the message EVE sends when the object is deleted: nothing else is set."""


def decode(msg: info_pb2.ZInfoMsg, kind: str, field: str) -> InfoObject:
    """ZInfoMsg with a per-object content -> ``{"kind", "key", "data"}`` (``data`` None: gone)."""
    if KIND_OF_FIELD.get(field) != kind:
        raise ValueError(f"info type {kind} with content {field!r} is not supported")
    if kind == "ZI_HARDWARE":
        hw = msg.hwinfo
        inv = hw.inventory
        return {"kind": kind, "key": HARDWARE_KEY, "data": {
            "release": _cut(hw.eve_release), "platform": _cut(hw.eve_platform), "partition": _cut(hw.partition),
            "memory": inv.total_memory_bytes, "storage": inv.total_storage_bytes, "cores": len(inv.cpu_info.cpus),
            "tpm": inv.tpm.present, "firmware": _cut(inv.bios.version),
            "nics": [{"name": _cut(d.ifname), "kind": _NIC_KINDS.get(d.type, "unknown"), "speed_mbps": d.speed_mbps}
                     for d in inv.network_devices[:MAX_ITEMS]]}}
    body: info_pb2.ZInfoVolume | info_pb2.ZInfoContentTree | info_pb2.ZInfoNetworkInstance
    body = msg.vinfo if kind == "ZI_VOLUME" else msg.cinfo if kind == "ZI_CONTENT_TREE" else msg.niinfo
    key = _cut(body.networkID if isinstance(body, info_pb2.ZInfoNetworkInstance) else body.uuid)
    if not key:  # not an object EVE would send; counted by the controller, not kept
        return {"kind": kind, "key": "", "data": None}
    if {f.name for f, _ in body.ListFields()} <= _GONE_FIELDS[kind]:
        return {"kind": kind, "key": key, "data": None}  # the object is gone
    data: ObjectData
    if isinstance(body, info_pb2.ZInfoVolume):
        data = {"name": _cut(body.displayName), "state": _sw_state_in(body.state),
                "progress": body.progressPercentage, "max_size": body.resources.maxSizeBytes,
                "cur_size": body.resources.curSizeBytes, "err": _cut(body.volumeErr.description)}
    elif isinstance(body, info_pb2.ZInfoContentTree):
        data = {"name": _cut(body.displayName), "sha256": _cut(body.sha256), "state": _sw_state_in(body.state),
                "progress": body.progressPercentage, "size": body.resources.curSizeBytes,
                "err": _cut(body.err.description)}
    else:
        state = info_pb2.ZNetworkInstanceState.Name(body.state) if body.state in info_pb2.ZNetworkInstanceState.values() else None
        if state is None:
            raise ValueError(f"{body.state} is not a valid ZNetworkInstanceState value")
        data = {"name": _cut(body.displayname), "version": _cut(body.networkVersion), "activated": body.activated,
                "ports": [_cut(p) for p in body.ports[:MAX_ITEMS]], "state": state.removeprefix(_NI_PREFIX),
                "err": _cut("; ".join(e.description for e in body.networkErr[:MAX_ITEMS]))}
    return {"kind": kind, "key": key, "data": data}
