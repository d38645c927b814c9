"""The node model's request/response bodies <-> EVE API v2 protobuf payloads (spec §2, §5).

The EVE rules (``eve.node.Node`` on the device side, ``eve.controller.Controller``
on the controller side) speak small dicts. This module is the one place where those dicts become
the protobuf messages that go on the wire, and back:

* device side (``eden agent``): :func:`request_path`, :func:`encode_request`, then
  :func:`decode_response`;
* controller side (``eden controller serve``): :func:`decode_request` (+ :func:`merge_info` for
  info), then :func:`encode_response`.

The payloads returned here are the *inner* serialized messages; signing them into an
AuthContainer is :mod:`eden.wire.signing`'s job. ``CodecError`` means "malformed or semantically
invalid body": the controller answers it with 400/422, never 500. No other exception type leaves
the public functions.

Conventions
-----------
* ``encode_request`` returns a *list* of payloads: one for every kind except ``info``, which is
  split into one ``ZInfoMsg{dinfo}``, one ``ZInfoMsg{ainfo}`` per app (sorted by name), then one
  message per entry of the report's ``objects`` (volumes, content trees, network instances, the
  hardware report: :mod:`eden.wire.objinfo`), in their order.
  GET kinds (certs, ping) give ``[b""]``: one request without a body.
* ``merge_info``: a device message starts a new report (its ``apps`` are emptied); each app
  message that follows adds its app. Feed the messages in the order ``encode_request`` made them.
  Per-object messages decode to ``{"part": "object", "kind", "key", "data", "at"}``; the controller
  keeps them per object, not in the report.
* Times are float seconds <-> ``google.protobuf.Timestamp``, rounded to the nearest nanosecond
  and read back with one correct rounding: exact for epoch-sized times (|t| >= 2**23 s, where a
  float's step is coarser than 1 ns) and for times on the ns grid; otherwise within 0.5 ns.
* Enums travel by name through :mod:`eve.enums` (values equal the proto's).
* Images are named on the wire by :func:`image_uuid` (uuid5 of the name); the device side maps
  them back with ``decode_response(..., images={uuid: name})`` (see :func:`image_names`). An
  unknown uuid is handed to the node as the image name.
* A config ``shutdown`` (the controller's shutdown counter) travels as EdgeDevConfig.shutdown
  (DeviceOpsCmd, field 34) ``counter``, present even with counter 0; absent (and not decoded)
  when the config has none (spec §1).
* Apps are named by :func:`app_uuid`; ``AppInstanceConfig.displayname`` carries the name.
* A config ``baseos`` may carry ``content: {sha256, size, url}`` (where the image is downloaded
  from, ``url`` relative to the controller): it travels as an EdgeDevConfig.contentInfo
  ContentTree named by the baseos content_tree_uuid (sha256, maxSizeBytes = size, URL = the
  url's last segment, displayName = image) plus a DatastoreConfig (DsHttps, dpath = the url's
  directory, id = :func:`datastore_uuid`). Absent content, neither is sent (spec §2, §3 step 1).

Where report fields go (ZInfoDevice, spec §2)
---------------------------------------------
state -> state; boot_reason -> last_boot_reason; reboot_reason_text -> lastRebootReason;
boot_time -> bootTime; restart_counter -> restartCounter; sw partitions -> swList[0..1]
(partitionLabel, shortVersion, partitionState, swErr, activated for the current one);
baseos -> the entry of the partition its version is bound to, else one more swList entry
without partitionLabel (shortVersion, userStatus, subStatus, swErr; absent when the device has
no baseOS config), as EVE writes them (:mod:`eden.wire.swlist`, spec §2.2); attestation -> attestation_info.state;
maintenance -> maintenance_mode_reasons (+ maintenance_mode); vault -> dataSecAtRestInfo
(ENABLED = unlocked, ERROR = locked); dpc_index -> systemAdapter.currentIndex; reboot_counter ->
rebootConfigCounter; config_items_status -> configItemStatus.configItems (key -> {value, error}:
every item of the last config, accepted ones with an empty error, as zedagent's
createConfigItemStatus fills it, P:cmd/zedagent/reportinfo.go, spec §6) and config_items_errors
-> the keys there with an error (a key listed in config_items_errors alone travels with a
generic error); shutdown_counter -> shutdown_config_counter (field 49, the shutdown counter
last processed; plain uint32: None and 0 both decode as 0); baseos_update_counter -> baseos_update_counter (plain uint32 as upstream:
None and 0 both travel as absent and decode as 0, as EVE's do, spec §2.2); apps -> ZInfoApp{AppID, AppName, state, appErr}.

Lossy fields (no place in the proto; dropped, decoded as shown)
---------------------------------------------------------------
* info ``sw[].image`` and ``baseos.image``: ZInfoDevSW has no image field; decoded as None
  unless the controller passes ``decode_request(..., image_of_version={version: image})``.
* info ``config_items_status`` and ``config_items_errors``: configItemStatus is a map, so the
  order of the items is not kept: both decode sorted by key (``Node.report()`` sorts them too).
* info ``dpc_state`` and ``dpc_ports`` (the current DPC's state and management ports, spec §4):
  DevicePortStatus has no state and no systemAdapter.status list is encoded; absent after decoding
  (so the ``dpc`` condition's ``state`` and ``ports`` are refused on the backends that decode).
* config app spec ``size``: the size lives in EVE's Volume messages (and the app's
  ContentTree), which eden does not send for apps; the device side gets ``APP_SIZE_DEFAULT`` (the scenario model's default, 100 MiB) or ``app_size=``.
* config app spec ``memory``: carried in KiB (VmConfig.memory), rounded up to a whole KiB.
* config app ``kind``: VmConfig.virtualizationMode (HVM = "vm", NOHYPER = "container"; other
  modes decode as "vm").
* config items: values travel as strings and are parsed back per ``eve.config_items``
  (ints, booleans, enum strings); an unknown key or unparsable value stays a string.
* config ``ver`` travels in ``EdgeDevConfig.id.version``.
* attest QUOTE_FAILED ``mismatch`` (the PCR indices): no field in ZAttestQuoteResp; decoded as [].
* attest QUOTE ``tpm``: not a field; a quote with PCR values or a signature means a TPM (spec §5:
  a device without TPM sends a quote with no PCRs, only the nonce in attestData). A TPM quote's
  ``attest`` (TPMS_ATTEST) and ``signature`` (DER) are bytes; the controller decodes them to
  ``attest``/``signature``/``pcr_values`` [(index, hash algo, value)] and checks them itself
  (:mod:`eden.controller.quote`).
* attest CERT ``certs``: [{type: DEVICE_RESTRICTED_SIGNING|DEVICE_ECDH_EXCHANGE|..., pem}].
* certs: ``Controller.answer`` returns ``{}``; the real controller must fill
  ``{"certs": [{"type": "CONTROLLER_SIGNING", "pem": ...}]}`` itself.
* register: the node's placeholder ``cert`` is replaced by ``device_cert_pem`` when given.
"""

from __future__ import annotations

import base64
import binascii
import enum
import gzip
import json
import math
import uuid as uuidlib
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping, NotRequired, ParamSpec, Sequence, Required, TypedDict, TypeVar

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.unknown_fields import UnknownFieldSet

from eden.wire import objinfo, swlist
from eden.wire.gen import attest_pb2, certs_pb2, config_pb2, info_pb2, metrics_pb2, register_pb2, uuid_pb2
from eve.config_items import BOOL_FALSE, BOOL_TRUE, spec_of
from eve.enums import (
    AttestReqType,
    AttestRespType,
    AttestState,
    BaseOsStatus,
    BaseOsSubStatus,
    BootReason,
    MaintenanceModeReason,
    PartitionState,
    QuoteResponseCode,
    StoreKeysResponse,
    ZDeviceState,
    ZInfoType,
    ZSwState,
)

API_PREFIX = "/api/v2/edgedevice"

KINDS = ("certs", "ping", "register", "uuid", "config", "info", "metrics", "attest", "logs")
INFO_KINDS = tuple(t.name for t in ZInfoType if t is not ZInfoType.ZI_NOP)
"""The ZInfoTypes names a device may send (spec §2.2)."""
_GET_KINDS = ("certs", "ping")
_ROOT_POST = ("register", "uuid")
_DEVICE_POST = ("config", "info", "metrics", "attest", "logs")

# Fixed namespaces for the uuid5 names of images and apps (chosen for eden; any constant works
# as long as both ends use the same one).
IMAGE_NAMESPACE = uuidlib.UUID("5c0f6d1e-8b4e-4d8a-9a57-2f1e6b0c7d31")
APP_NAMESPACE = uuidlib.UUID("a4b1c2d3-6e5f-4a7b-8c9d-0e1f2a3b4c5d")
APP_SIZE_DEFAULT = 100 * 2**20  # eden.scenario.model's default app image size
VAULT_NAME = "Application Data Store"  # EVE's name for the app vault

_PARTITION_STATES = frozenset(s.value for s in PartitionState)
_PARTITION_STATES_IN = _PARTITION_STATES | {""}  # EVE sends "" until baseosmgr knows (spec §2.2)
_TS_MIN = -62135596800  # 0001-01-01T00:00:00Z
_TS_MAX = 253402300799  # 9999-12-31T23:59:59Z

E = TypeVar("E", bound=enum.Enum)
M = TypeVar("M", bound=Message)
P = ParamSpec("P")
R = TypeVar("R")

ItemValue = int | bool | str
"""A config item's value as decoded (:func:`_item_in`): per ``eve.config_items``, else the text."""


class Content(TypedDict):
    """A config ``baseos.content``: where the base OS image is downloaded from."""

    sha256: str
    size: int
    url: str


class BaseosConfig(TypedDict, total=False):
    """A config ``baseos`` as decoded (``content`` only when the config carries one)."""

    image: Required[str]
    version: Required[str]
    activate: Required[bool]
    retry: Required[int]
    content: Content


class AppSpec(TypedDict):
    """A config app spec as decoded (``size`` is not on the wire: see the module docstring)."""

    kind: str  # "vm" | "container"
    cpus: int
    memory: int  # bytes (a whole number of KiB)
    size: int
    activate: bool


class Config(TypedDict):
    """A config response's ``config`` as decoded."""

    items: dict[str, ItemValue]
    baseos: BaseosConfig | None
    reboot: int
    shutdown: NotRequired[int]  # only when the config carries EdgeDevConfig.shutdown
    apps: dict[str, AppSpec]
    maintenance: bool
    hash: str


class AppReport(TypedDict):
    """One app of a report (``apps`` maps the app name to it)."""

    state: str  # ZSwState name
    err: str


class ConfigItemReport(TypedDict):
    """One entry of configItemStatus (ZInfoConfigItem): the value in use, the error or ""."""

    value: str
    error: str


class DeviceReport(TypedDict):
    """A device info message decoded: ``Node.report()``'s shape, less what the wire does not carry
    (``dpc_state``, ``dpc_ports``; ``apps`` stays empty until :func:`merge_info` adds them)."""

    at: float
    state: str  # ZDeviceState name
    boot_reason: str  # BootReason name
    reboot_reason_text: str
    boot_time: float | None
    restart_counter: int
    sw: list[swlist.SwPartition]
    baseos: swlist.BaseosReport
    attestation: str  # AttestState name
    maintenance: list[str]  # MaintenanceModeReason names
    vault: str | None  # "locked" | "unlocked" | None (no vault reported)
    dpc_index: int
    reboot_counter: int
    shutdown_counter: int
    baseos_update_counter: int
    apps: dict[str, AppReport]
    config_items_errors: list[str]
    config_items_status: dict[str, ConfigItemReport]


class CodecError(ValueError):
    """A payload that does not decode, or decodes to something the API does not allow."""


# ------------------------------------------------------------------------------------ naming --
def request_path(kind: str, device_uuid: str | None) -> tuple[str, str]:
    """(HTTP method, path) for a request kind (certs, register, uuid, config, info, metrics,
    attest, logs, ping), spec §2."""
    if kind in _GET_KINDS:
        return "GET", f"{API_PREFIX}/{kind}"
    if kind in _ROOT_POST:
        return "POST", f"{API_PREFIX}/{kind}"
    if kind in _DEVICE_POST:
        if not device_uuid or "/" in device_uuid:
            raise CodecError(f"request kind {kind!r} needs the device uuid, got {device_uuid!r}")
        action = "newlogs" if kind == "logs" else kind  # EVE's loguploader posts newlogs (§2)
        return "POST", f"{API_PREFIX}/id/{device_uuid}/{action}"
    raise CodecError(f"unknown request kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def image_uuid(image_name: str) -> str:
    """The content-tree UUID that names an image on the wire (uuid5 of the image name)."""
    return str(uuidlib.uuid5(IMAGE_NAMESPACE, image_name))


def image_names(names: Iterable[str]) -> dict[str, str]:
    """The ``images`` mapping for :func:`decode_response`: content-tree uuid -> image name."""
    return {image_uuid(n): n for n in names}


def app_uuid(app_name: str) -> str:
    """The app instance UUID that names an app on the wire (uuid5 of the app name)."""
    return str(uuidlib.uuid5(APP_NAMESPACE, app_name))


def app_volume_uuid(app_name: str) -> str:
    """The uuid of an app's volume: eden's config sends no Volume, so both ends derive it."""
    return str(uuidlib.uuid5(APP_NAMESPACE, f"volume:{app_name}"))


def app_content_uuid(app_name: str) -> str:
    """The uuid of an app's image content tree (as :func:`app_volume_uuid`)."""
    return str(uuidlib.uuid5(APP_NAMESPACE, f"contenttree:{app_name}"))


# ----------------------------------------------------------------------------------- helpers --
def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise CodecError(f"unknown request kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def _parse(cls: type[M], payload: object) -> M:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise CodecError(f"payload must be bytes, got {type(payload).__name__}")
    msg = cls()
    try:
        msg.ParseFromString(bytes(payload))
    except (DecodeError, RuntimeWarning, ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"{cls.DESCRIPTOR.name} does not parse: {exc}") from None
    return msg


def _ser(msg: Message) -> bytes:
    return msg.SerializeToString(deterministic=True)


def _enum_out(enum_cls: type[E], name: object) -> int:
    """Enum member name (as the node writes it) -> wire value."""
    try:
        return int(enum_cls[str(name)].value)
    except KeyError:
        raise CodecError(f"{name!r} is not a {enum_cls.__name__}") from None


def _enum_in(enum_cls: type[E], value: int) -> str:
    """Wire value -> enum member name; unknown values (proto3 keeps them) are an error."""
    try:
        return enum_cls(value).name
    except ValueError:
        raise CodecError(f"{value} is not a valid {enum_cls.__name__} value") from None


def _set_time(ts: Timestamp, t: object) -> None:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        raise CodecError(f"time must be a finite number of seconds, got {t!r}")
    exact = Fraction(t)
    seconds = math.floor(exact)
    nanos = round((exact - seconds) * 1_000_000_000)
    if nanos == 1_000_000_000:
        seconds, nanos = seconds + 1, 0
    if not _TS_MIN <= seconds <= _TS_MAX:
        raise CodecError(f"time {t!r} is outside the Timestamp range")
    ts.seconds, ts.nanos = seconds, nanos


def _get_time(ts: Timestamp) -> float:
    if not 0 <= ts.nanos < 1_000_000_000 or not _TS_MIN <= ts.seconds <= _TS_MAX:
        raise CodecError(f"invalid Timestamp seconds={ts.seconds} nanos={ts.nanos}")
    return float(Fraction(ts.seconds) + Fraction(ts.nanos, 1_000_000_000))


def _opt_time(msg: Message, field: str) -> float | None:
    return _get_time(getattr(msg, field)) if msg.HasField(field) else None


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise CodecError(f"{what} must be a string, got {value!r}")
    return value


def _opt_bytes(value: object, what: str) -> bytes:
    """None -> b""; str -> UTF-8; bytes as is."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise CodecError(f"{what} must be a string, got {value!r}")


def _bytes_text(value: bytes, what: str) -> str | None:
    """b"" -> None, else the UTF-8 text."""
    if not value:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise CodecError(f"{what} is not UTF-8 text") from None


def _uint(value: object, what: str, bits: int = 32) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**bits:
        raise CodecError(f"{what} must be an unsigned {bits}-bit integer, got {value!r}")
    return value


def _body(body: object) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise CodecError(f"body must be a mapping, got {type(body).__name__}")
    return body


def _guard(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn any stray exception from a malformed body into CodecError (the public contract)."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CodecError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError) as exc:
            raise CodecError(f"{fn.__name__}: {type(exc).__name__}: {exc}") from None

    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__doc__ = fn.__doc__
    return wrapper


# ----------------------------------------------------------------------------- config items --
def _item_out(key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise CodecError(f"config item {key!r} has a value of type {type(value).__name__}: {value!r}")


def _item_in(key: str, text: str) -> ItemValue:
    """Wire string -> the value the controller set, per the item's kind (spec §6)."""
    spec = spec_of(key)
    if spec is None:
        return text
    if spec.kind == "int":
        return int(text) if text.isascii() and text.isdigit() else text
    if spec.kind == "bool":  # Go's strconv.ParseBool spellings, nothing trimmed (spec §6.1)
        return True if text in BOOL_TRUE else False if text in BOOL_FALSE else text
    return text


# ---------------------------------------------------------------------------------- requests --
@_guard
def encode_request(
    kind: str,
    body: Mapping[str, Any],
    *,
    device_uuid: str | None = None,
    device_cert_pem: bytes | str | None = None,
) -> list[bytes]:
    """Device side: a node request body -> serialized protobuf payload(s).

    ``info`` gives ``[device message, app message...]``; every other kind gives one payload
    (``b""`` for the GET kinds). ``device_cert_pem`` replaces the node's placeholder cert on
    register; ``device_uuid`` fills ZInfoMsg.devId / ZMetricMsg.devID.
    """
    _check_kind(kind)
    body = _body(body)
    dev = device_uuid or ""
    if kind in _GET_KINDS:
        return [b""]
    if kind == "register":
        pem = device_cert_pem if device_cert_pem is not None else _text(body.get("cert"), "register cert")
        pem_bytes = pem.encode() if isinstance(pem, str) else bytes(pem)
        return [_ser(register_pb2.ZRegisterMsg(pemCert=base64.b64encode(pem_bytes), serial=_text(body.get("serial"), "serial"),
                                               softSerial=_text(body.get("soft_serial", ""), "soft serial")))]
    if kind == "uuid":
        return [_ser(uuid_pb2.UuidRequest())]
    if kind == "config":
        return [_ser(config_pb2.ConfigRequest(configHash=_text(body.get("hash", ""), "config hash"), integrity_token=_opt_bytes(body.get("token"), "token")))]
    if kind == "info":
        return _encode_info(body, dev)
    if kind == "metrics":
        msg = metrics_pb2.ZMetricMsg(devID=dev, dm=metrics_pb2.deviceMetric())
        _set_time(msg.atTimeStamp, body.get("at"))
        return [_ser(msg)]
    if kind == "attest":
        return [_ser(_attest_req(body))]
    if kind == "logs":
        return [_newlogs(body, dev)]
    raise CodecError(f"request kind {kind!r} has no body eden encodes (the node never sends it)")


def _newlogs(body: Mapping[str, Any], dev: str) -> bytes:
    """One newlogd file (§1: gzip of JSON LogEntry lines, <= 64 KiB): eden's node model has no log
    lines, so the file holds one entry saying which upload it stands for."""
    at = body.get("at")
    entry = {"severity": "info", "source": "eden-agent", "content": f"log file of device {dev}",
             "timestamp": {"seconds": int(at) if isinstance(at, (int, float)) and math.isfinite(at) else 0}}
    return gzip.compress((json.dumps(entry) + "\n").encode(), mtime=0)


def _attest_req(body: Mapping[str, Any]) -> attest_pb2.ZAttestReq:
    req = body.get("type")
    if req == "NONCE":
        return attest_pb2.ZAttestReq(reqType=AttestReqType.NONCE)
    if req == "CERT":
        msg = attest_pb2.ZAttestReq(reqType=AttestReqType.CERT)
        for c in body.get("certs") or []:
            msg.certs.add(type=_cert_type_out(c.get("type")), cert=_opt_bytes(c.get("pem"), "certificate"))
        return msg
    if req == "QUOTE":
        msg = attest_pb2.ZAttestReq(reqType=AttestReqType.QUOTE)
        # A TPM's quote: the binary TPMS_ATTEST + DER signature; without a TPM only the nonce.
        msg.quote.attestData = _opt_bytes(body.get("attest", body.get("nonce")), "attestData")
        msg.quote.signature = _opt_bytes(body.get("signature"), "signature")
        pcrs = body.get("pcrs") or {}
        if not isinstance(pcrs, Mapping):
            raise CodecError("pcrs must map PCR index -> hex digest")
        if pcrs and not body.get("tpm", True):
            raise CodecError("a quote without TPM carries no PCR values")
        for index in sorted(pcrs, key=int):
            msg.quote.pcr_values.add(index=_uint(int(index), "PCR index"), hash_algo=attest_pb2.TPM_HASH_ALGO_SHA256, value=bytes.fromhex(pcrs[index]))
        return msg
    if req == "STORE_KEYS":
        msg = attest_pb2.ZAttestReq(reqType=AttestReqType.STORE_KEYS)
        msg.storage_keys.integrity_token = _opt_bytes(body.get("token"), "token")
        key = body.get("key")
        if key is not None:
            msg.storage_keys.keys.add(key_type=attest_pb2.ATTEST_VOLUME_KEY_TYPE_VSK, key=_opt_bytes(key, "key"))
        return msg
    raise CodecError(f"unknown attest request type {req!r}")


# ZCertType numbers of the certs a device posts (api:proto/certs/certs.proto); kept here by number so
# that they do not depend on which names eden's proto declares.
POSTED_CERT_TYPES = {10: "DEVICE_ONBOARDING", 11: "DEVICE_RESTRICTED_SIGNING", 12: "DEVICE_ENDORSEMENT_RSA",
                     13: "DEVICE_ECDH_EXCHANGE"}
MAX_POSTED_CERTS = 8


def _cert_type_out(name: object) -> int:
    for number, known in POSTED_CERT_TYPES.items():
        if name == known:
            return number
    raise CodecError(f"{name!r} is not a certificate type a device posts")


def _cert_type_in(number: int) -> str:
    if number not in POSTED_CERT_TYPES:
        raise CodecError(f"certificate type {number} is not one a device posts")
    return POSTED_CERT_TYPES[number]


CONFIG_ITEM_REJECTED = "rejected by the device"
"""The error sent for a key of ``config_items_errors`` that ``config_items_status`` does not list."""


def _encode_config_items(d: info_pb2.ZInfoDevice, report: Mapping[str, object]) -> None:
    """ZInfoDevice.configItemStatus (31) from the report (spec §6): zedagent lists every item of
    the last config in configItems and leaves unknownConfigItems empty, an unknown key included
    (P:cmd/zedagent/reportinfo.go createConfigItemStatus, P:cmd/zedagent/parseconfig.go
    parseConfigItems). Present, empty, when the config carried no item, as EVE's."""
    status = report.get("config_items_status") or {}
    errors = report.get("config_items_errors") or []
    if not isinstance(status, Mapping) or not isinstance(errors, list):
        raise CodecError("config_items_status must map key -> {value, error}; config_items_errors must be a list")
    d.configItemStatus.SetInParent()
    items = d.configItemStatus.configItems
    for key, item in status.items():
        if not isinstance(item, Mapping):
            raise CodecError(f"config item status {key!r} must be {{value, error}}, got {item!r}")
        entry = items[_text(key, "config item key")]
        entry.value = _text(item.get("value", ""), "config item value")
        entry.error = _text(item.get("error", ""), "config item error")
    for key in errors:
        if _text(key, "config item key") not in status:
            items[key].error = CONFIG_ITEM_REJECTED


def _decode_config_items(d: info_pb2.ZInfoDevice) -> dict[str, ConfigItemReport]:
    """configItemStatus back to key -> {value, error}, sorted by key; a real device's
    unknownConfigItems (never filled by zedagent) are read too, configItems winning."""
    s = d.configItemStatus
    out: dict[str, ConfigItemReport] = {}
    for entries in (s.unknownConfigItems, s.configItems):
        for key, item in entries.items():
            out[key] = {"value": item.value, "error": item.error}
    return dict(sorted(out.items()))


def _encode_info(report: Mapping[str, Any], dev: str) -> list[bytes]:
    at = report.get("at")
    d = info_pb2.ZInfoDevice()
    d.state = _enum_out(ZDeviceState, report["state"])
    d.last_boot_reason = _enum_out(BootReason, report["boot_reason"])
    d.lastRebootReason = _text(report.get("reboot_reason_text", ""), "reboot_reason_text")
    if report.get("boot_time") is not None:
        _set_time(d.bootTime, report["boot_time"])
    d.restartCounter = _uint(report.get("restart_counter", 0), "restart_counter")
    bos: swlist.BaseosReport = {}  # no base OS configured
    if report.get("baseos"):
        bos = report["baseos"]
    swlist.encode(d, report.get("sw") or [], bos, text=_text, enum_out=_enum_out,
                  partition_states=_PARTITION_STATES, error=CodecError)
    d.attestation_info.state = _enum_out(AttestState, report.get("attestation", "UNSPECIFIED"))
    reasons = report.get("maintenance") or []
    d.maintenance_mode_reasons.extend(_enum_out(MaintenanceModeReason, r) for r in reasons)
    d.maintenance_mode = bool(reasons)
    vault = report.get("vault")
    if vault is not None:
        if vault not in ("locked", "unlocked"):
            raise CodecError(f"vault must be 'locked' or 'unlocked', got {vault!r}")
        v = d.dataSecAtRestInfo.vaultList.add(name=VAULT_NAME)
        if vault == "unlocked":
            v.status = info_pb2.DATASEC_AT_REST_ENABLED
        else:
            v.status = info_pb2.DATASEC_AT_REST_ERROR
            v.vaultErr.description = "vault is locked"
    d.systemAdapter.currentIndex = _uint(report.get("dpc_index", 0), "dpc_index")
    if report.get("reboot_counter") is not None:
        d.rebootConfigCounter = _uint(report["reboot_counter"], "reboot_counter")
    if report.get("shutdown_counter") is not None:
        d.shutdown_config_counter = _uint(report["shutdown_counter"], "shutdown_counter")
    if report.get("baseos_update_counter") is not None:
        d.baseos_update_counter = _uint(report["baseos_update_counter"], "baseos_update_counter")
    _encode_config_items(d, report)
    out = [_info_msg(ZInfoType.ZI_DEVICE, dev, at, dinfo=d)]
    apps = report.get("apps") or {}
    if not isinstance(apps, Mapping):
        raise CodecError("apps must map app name -> {state, err}")
    for name in sorted(apps):
        app = apps[name]
        a = info_pb2.ZInfoApp(AppID=app_uuid(_text(name, "app name")), AppName=name, state=_enum_out(ZSwState, app["state"]))
        if app.get("err"):
            a.appErr.add(description=_text(app["err"], "app err"))
        out.append(_info_msg(ZInfoType.ZI_APP, dev, at, ainfo=a))
    for obj in report.get("objects") or []:
        if not isinstance(obj, Mapping):
            raise CodecError(f"an info object must be a mapping, got {obj!r}")
        field, content = objinfo.content(obj)
        out.append(_info_msg(ZInfoType[obj["kind"]], dev, at, **{field: content}))
    return out


def _info_msg(ztype: ZInfoType, dev: str, at: object, **content: Message) -> bytes:
    msg = info_pb2.ZInfoMsg(ztype=int(ztype), devId=dev, **content)
    _set_time(msg.atTimeStamp, at)
    return _ser(msg)


@_guard
def decode_request(kind: str, payload: bytes, *, image_of_version: Mapping[str, str] | None = None,
                   baseos_version: str | None = None) -> dict[str, Any]:
    """Controller side: a request payload -> the body dict Controller.answer expects.

    ``info`` payloads decode to a *partial* report (``{"part": "device", ...}`` or
    ``{"part": "app", "name": ..., "app": {...}}``); fold them with :func:`merge_info`.
    ``image_of_version`` (baseOS version -> image name) restores the report's image names,
    which ZInfoDevSW does not carry; without it they decode as None. ``baseos_version`` (the
    configured base OS) picks the swList entry whose status is ``baseos`` (:mod:`eden.wire.swlist`).
    """
    _check_kind(kind)
    if kind in _GET_KINDS:
        return {}
    if kind == "register":
        msg = _parse(register_pb2.ZRegisterMsg, payload)
        try:
            pem = base64.b64decode(msg.pemCert, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise CodecError("register pemCert is not base64 of a text PEM") from None
        if not pem or not msg.serial:
            raise CodecError("register needs a serial and a device certificate")
        return {"serial": msg.serial, "cert": pem}
    if kind == "uuid":
        _parse(uuid_pb2.UuidRequest, payload)
        return {}
    if kind == "config":
        msg = _parse(config_pb2.ConfigRequest, payload)
        return {"hash": msg.configHash, "token": _bytes_text(msg.integrity_token, "integrity token")}
    if kind == "info":
        return _decode_info(_parse(info_pb2.ZInfoMsg, payload), image_of_version or {}, baseos_version)
    if kind == "metrics":
        msg = _parse(metrics_pb2.ZMetricMsg, payload)
        if not msg.HasField("atTimeStamp"):
            raise CodecError("metrics without atTimeStamp")
        return {"at": _get_time(msg.atTimeStamp)}
    if kind == "attest":
        return _decode_attest_req(_parse(attest_pb2.ZAttestReq, payload))
    raise CodecError(f"request kind {kind!r} is not decoded by eden")


def _decode_attest_req(msg: attest_pb2.ZAttestReq) -> dict[str, Any]:
    """Controller side. QUOTE and STORE_KEYS bytes stay bytes: a TPM's attestData and an
    encrypted vault key are binary (spec §2.2); the controller's quote checks judge them."""
    req = _enum_in(AttestReqType, msg.reqType)
    if req == "NONCE":
        return {"type": "NONCE"}
    if req == "CERT":
        if len(msg.certs) > MAX_POSTED_CERTS:
            raise CodecError(f"more than {MAX_POSTED_CERTS} certificates posted")
        return {"type": "CERT", "certs": [{"type": _cert_type_in(c.type), "pem": bytes(c.cert)} for c in msg.certs]}
    if req == "QUOTE":
        q = msg.quote
        pcrs = [(p.index, p.hash_algo, bytes(p.value)) for p in q.pcr_values]
        return {"type": "QUOTE", "attest": bytes(q.attestData), "signature": bytes(q.signature),
                "pcr_values": pcrs, "tpm": bool(pcrs or q.signature)}
    if req == "STORE_KEYS":
        keys = msg.storage_keys.keys
        if len(keys) > 1:
            raise CodecError("eden escrows one vault key")
        key = bytes(keys[0].key) if keys else None
        return {"type": "STORE_KEYS", "token": _bytes_text(msg.storage_keys.integrity_token, "integrity token"), "key": key}
    raise CodecError(f"attest request type {req} is not supported")


def _decode_info(msg: info_pb2.ZInfoMsg, image_of: Mapping[str, str], baseos_version: str | None = None) -> dict[str, Any]:
    ztype = _enum_in(ZInfoType, msg.ztype)
    content = msg.WhichOneof("InfoContent")
    if not msg.HasField("atTimeStamp"):
        raise CodecError("info without atTimeStamp")
    at = _get_time(msg.atTimeStamp)
    if ztype == "ZI_DEVICE" and content == "dinfo":
        return {"part": "device", "report": _decode_dinfo(msg.dinfo, at, image_of, baseos_version),
                "app_instances": _app_instances(msg.dinfo)}
    if ztype == "ZI_APP" and content == "ainfo":
        a = msg.ainfo
        if not a.AppName:
            # PublishAppInfoToZedCloud with no AppInstanceStatus: the app was deleted and the
            # message holds its AppID alone (P:cmd/zedagent/handlemetrics.go; spec §2.2)
            if not a.AppID:
                raise CodecError("app info without AppName or AppID")
            return {"part": "app_gone", "at": at, "uuid": a.AppID}
        return {"part": "app", "at": at, "name": a.AppName, "app": {"state": _enum_in(ZSwState, a.state), "err": "; ".join(e.description for e in a.appErr)}}
    if content in objinfo.KIND_OF_FIELD:
        return {"part": "object", "at": at, "content_field": msg.DESCRIPTOR.fields_by_name[content].number,
                **objinfo.decode(msg, ztype, content)}
    if ztype not in ("ZI_NOP", "ZI_DEVICE", "ZI_APP") and content is None:
        # Every other kind EVE sends (spec §2.2) is valid: its content (binfo = 15 ... 25) is
        # not modelled and stays an unknown field; the controller keeps the last one per kind.
        fields = sorted({f.field_number for f in UnknownFieldSet(msg)} - {1, 2, 6})
        return {"part": "other", "kind": ztype, "at": at, "content_fields": fields}
    raise CodecError(f"info type {ztype} with content {content!r} is not supported")


def _app_instances(d: info_pb2.ZInfoDevice) -> list[str] | None:
    """The names in ZInfoDevice.appInstances (32, ZInfoAppInstance{uuid=1, name=2}), which EVE
    fills with every app it runs (createAppInstances, P:cmd/zedagent/reportinfo.go); None when
    the field is absent. Not in eden's proto: read from the unknown fields (name = field 2, the
    same number and wire type as ZInfoApp.appVersion)."""
    raw = [f.data for f in UnknownFieldSet(d) if f.field_number == 32 and f.wire_type == 2]
    if not raw:
        return None
    try:
        return [info_pb2.ZInfoApp.FromString(bytes(b)).appVersion for b in raw]
    except DecodeError as exc:
        raise CodecError(f"appInstances does not parse: {exc}") from None


def _decode_dinfo(d: info_pb2.ZInfoDevice, at: float, image_of: Mapping[str, str],
                  baseos_version: str | None = None) -> DeviceReport:
    sw: list[swlist.SwPartition] = []
    bos: swlist.BaseosReport = {"version": None, "image": None, "status": "NONE", "sub_status": "NONE", "err": "", "progress": 0}
    for e in d.swList:
        if not e.partitionLabel and not e.shortVersion and e.status == info_pb2.SW_STATE_INITIAL:
            continue  # early boot: a partition not known yet ("" label and state, spec §2.2)
        if e.partitionLabel:
            if e.partitionState not in _PARTITION_STATES_IN:
                raise CodecError(f"partition {e.partitionLabel} has an unknown state {e.partitionState!r}")
            version = e.shortVersion or None
            sw.append({"partition": e.partitionLabel, "version": version, "image": image_of.get(version or ""), "state": e.partitionState, "err": e.swErr.description})
    found = swlist.find_baseos(d.swList, baseos_version)  # unlabelled or labelled entry, spec §2.2
    if found is not None:
        bos = {
            "version": found.shortVersion,
            "image": image_of.get(found.shortVersion),
            "status": _enum_in(BaseOsStatus, found.userStatus),
            "sub_status": _enum_in(BaseOsSubStatus, found.subStatus),
            "err": found.swErr.description,
            "progress": found.downloadProgress,
        }
    items = _decode_config_items(d)
    vault = None
    for v in d.dataSecAtRestInfo.vaultList:
        if v.name == VAULT_NAME:
            vault = "unlocked" if v.status == info_pb2.DATASEC_AT_REST_ENABLED else "locked"
    return {
        "at": at,
        "state": _enum_in(ZDeviceState, d.state),
        "boot_reason": _enum_in(BootReason, d.last_boot_reason),
        "reboot_reason_text": d.lastRebootReason,
        "boot_time": _opt_time(d, "bootTime"),
        "restart_counter": d.restartCounter,
        "sw": sw,
        "baseos": bos,
        "attestation": _enum_in(AttestState, d.attestation_info.state),
        "maintenance": sorted(_enum_in(MaintenanceModeReason, r) for r in d.maintenance_mode_reasons),
        "vault": vault,
        "dpc_index": d.systemAdapter.currentIndex,
        "reboot_counter": d.rebootConfigCounter,
        "shutdown_counter": d.shutdown_config_counter,
        "baseos_update_counter": d.baseos_update_counter,
        "apps": {},
        "config_items_errors": [key for key, item in items.items() if item["error"]],
        "config_items_status": items,
    }


@_guard
def merge_info(previous: Mapping[str, Any] | None, partial: Mapping[str, Any]) -> dict[str, Any]:
    """Controller side: fold one decoded info message (device or one app) into the device's
    latest report, which then has the shape ``Node.report()`` produced on the device.

    A device message replaces the report (apps emptied; the app messages of the same info
    cycle follow it). An app message before any device message raises CodecError.
    """
    if not isinstance(partial, Mapping) or (previous is not None and not isinstance(previous, Mapping)):
        raise CodecError("merge_info takes mappings")
    part = partial.get("part")
    before = dict((previous or {}).get("apps") or {})
    if part == "device":
        # EVE sends an app's info only when it changes, and before the device info of the same
        # queue pass (getDeferredPriorityFunctions, P:cmd/zedagent/zedagent.go); its device info
        # lists the apps it runs (appInstances): those keep their last state. Without that list
        # (no apps, or eden's emulator, which sends every app after each device message) the
        # apps are emptied.
        names = partial.get("app_instances") or ()
        return {**partial["report"], "apps": {n: a for n, a in before.items() if n in names}}
    if part == "app":
        # may come before any device info (see above): the report then holds the apps alone
        before[partial["name"]] = dict(partial["app"])
        return {**(previous or {}), "apps": dict(sorted(before.items()))}
    if part == "app_gone":
        apps = {n: a for n, a in before.items() if app_uuid(n) != partial["uuid"]}
        return {**(previous or {}), "apps": apps}
    raise CodecError(f"not a decoded info message: {partial!r}")


# --------------------------------------------------------------------------------- responses --
@_guard
def encode_response(kind: str, status: int, body: Mapping[str, Any], *, device_uuid: str | None = None,
                    datastore_fqdn: str = "", datastore_certs: Sequence[bytes] = ()) -> bytes:
    """Controller side: Controller.answer's (status, body) -> serialized response payload.

    Anything but a 2xx answer, and kinds without a response message, give ``b""``.
    ``datastore_fqdn`` goes into DatastoreConfig.fqdn of a base OS with ``content`` (e.g.
    ``https://controller:8443``) for a real EVE; eden's decoder ignores it (urls stay relative).
    ``datastore_certs`` (PEM) go into its dsCertPEM: the CA a real EVE's downloader must trust
    for the datastore's TLS, since without them it trusts only the system pool.
    """
    _check_kind(kind)
    body = _body(body)
    if status not in (200, 201) or not body:
        return b""
    if kind == "certs":
        msg = certs_pb2.ZControllerCert()
        for c in body.get("certs") or []:
            msg.certs.add(type=_cert_type(c["type"]), cert=_opt_bytes(c["pem"], "cert pem"))
        return _ser(msg)
    if kind == "uuid":
        return _ser(uuid_pb2.UuidResponse(uuid=_text(body["uuid"], "uuid"),
                                          manufacturer=_text(body.get("manufacturer", ""), "manufacturer"),
                                          product_name=_text(body.get("product_name", ""), "product_name")))
    if kind == "config":
        if status != 200:
            return b""
        return _ser(_config_response(body, device_uuid or "", datastore_fqdn, datastore_certs))
    if kind == "attest":
        return _ser(_attest_resp(body))
    return b""


def _cert_type(name: object) -> int:
    try:
        return certs_pb2.ZCertType.Value(f"CERT_TYPE_{name}")
    except ValueError:
        raise CodecError(f"unknown certificate type {name!r}") from None


def _config_response(body: Mapping[str, Any], dev: str, fqdn: str = "",
                     ds_certs: Sequence[bytes] = ()) -> config_pb2.ConfigResponse:
    cfg = body["config"]
    resp = config_pb2.ConfigResponse(configHash=_text(cfg.get("hash", ""), "config hash"))
    c = resp.config
    c.id.uuid = dev
    if body.get("ver") is not None:
        c.id.version = str(_uint(body["ver"], "config ver", 63))
    for key in sorted(cfg.get("items") or {}):
        c.configItems.add(key=_text(key, "config item key"), value=_item_out(key, cfg["items"][key]))
    bos = cfg.get("baseos")
    if bos is not None:
        c.baseos.content_tree_uuid = image_uuid(_text(bos["image"], "baseos image"))
        c.baseos.base_os_version = _text(bos["version"], "baseos version")
        c.baseos.activate = bool(bos.get("activate", True))
        c.baseos.retry_update.counter = _uint(bos.get("retry", 0), "baseos retry")
        if bos.get("content") is not None:
            _content_out(c, c.baseos.content_tree_uuid, bos["image"], bos["content"], fqdn, ds_certs)
    c.reboot.counter = _uint(cfg.get("reboot", 0), "reboot counter")
    if cfg.get("shutdown") is not None:
        c.shutdown.SetInParent()  # present with counter 0 too: the first value is only stored (§1)
        c.shutdown.counter = _uint(cfg["shutdown"], "shutdown counter")
    for name in sorted(cfg.get("apps") or {}):
        spec = cfg["apps"][name]
        a = c.apps.add(displayname=_text(name, "app name"), activate=bool(spec.get("activate", True)))
        a.uuidandversion.uuid = app_uuid(name)
        memory = _uint(spec["memory"], "app memory", 63)
        a.fixedresources.memory = _uint(-(-memory // 1024), "app memory KiB")
        a.fixedresources.vcpus = _uint(spec["cpus"], "app cpus")
        kind = spec.get("kind", "container")
        if kind not in ("vm", "container"):
            raise CodecError(f"app kind must be 'vm' or 'container', got {kind!r}")
        a.fixedresources.virtualizationMode = config_pb2.HVM if kind == "vm" else config_pb2.NOHYPER
    c.maintenance_mode = bool(cfg.get("maintenance", False))
    return resp


def datastore_uuid(dpath: str) -> str:
    """The DatastoreConfig id eden gives the datastore serving under ``dpath`` (uuid5)."""
    return str(uuidlib.uuid5(IMAGE_NAMESPACE, "datastore:" + dpath))


def _content_out(c: config_pb2.EdgeDevConfig, tree_uuid: str, image: str, content: object, fqdn: str,
                 ds_certs: Sequence[bytes] = ()) -> None:
    """baseos ``content`` {sha256, size, url} -> one ContentTree (+ its DatastoreConfig).

    The url's directory becomes the datastore's dpath and its last segment the ContentTree URL,
    the way EVE joins them (eve-api config/storage.proto)."""
    if not isinstance(content, Mapping):
        raise CodecError(f"baseos content must be a mapping, got {content!r}")
    sha = _text(content.get("sha256"), "content sha256").lower()
    if len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
        raise CodecError(f"content sha256 must be 64 hex digits, got {sha!r}")
    size = _uint(content.get("size"), "content size", 63)
    url = _text(content.get("url"), "content url")
    dpath, _, name = url.rpartition("/")
    if not url.startswith("/") or not name:
        raise CodecError(f"content url must be an absolute path to a file, got {url!r}")
    dpath = dpath.lstrip("/")
    ds_id = datastore_uuid(dpath)
    if not any(d.id == ds_id for d in c.datastores):
        c.datastores.add(id=ds_id, dType=config_pb2.DsHttps, fqdn=fqdn, dpath=dpath, dsCertPEM=list(ds_certs))
    c.contentInfo.add(uuid=tree_uuid, dsId=ds_id, URL=name, sha256=sha, maxSizeBytes=size, displayName=image)


def _content_in(c: config_pb2.EdgeDevConfig, tree_uuid: str) -> Content | None:
    """The ContentTree ``tree_uuid`` as baseos ``content``; None when the config has none."""
    trees = [t for t in c.contentInfo if t.uuid == tree_uuid]
    if not trees:
        return None
    if len(trees) > 1:
        raise CodecError(f"content tree {tree_uuid} appears twice")
    tree = trees[0]
    stores = [d for d in c.datastores if d.id == tree.dsId]
    if len(stores) != 1:
        raise CodecError(f"content tree {tree_uuid} names datastore {tree.dsId!r}, which the config does not hold once")
    sha = tree.sha256.lower()
    if len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha) or not tree.URL:
        raise CodecError(f"content tree {tree_uuid} needs a sha256 and a URL")
    dpath = stores[0].dpath.strip("/")
    return {"sha256": sha, "size": tree.maxSizeBytes, "url": f"/{dpath}/{tree.URL}" if dpath else f"/{tree.URL}"}


def _attest_resp(body: Mapping[str, Any]) -> attest_pb2.ZAttestResponse:
    resp = body.get("type")
    if resp == "CERT":
        return attest_pb2.ZAttestResponse(respType=AttestRespType.CERT)
    if resp == "NONCE":
        msg = attest_pb2.ZAttestResponse(respType=AttestRespType.NONCE)
        msg.nonce.nonce = _opt_bytes(body.get("nonce"), "nonce")
        return msg
    if resp == "QUOTE":
        msg = attest_pb2.ZAttestResponse(respType=AttestRespType.QUOTE_RESP)
        msg.quoteResp.response = _enum_out(QuoteResponseCode, body.get("code"))
        msg.quoteResp.integrity_token = _opt_bytes(body.get("token"), "integrity token")
        if body.get("key") is not None:
            msg.quoteResp.keys.add(key_type=attest_pb2.ATTEST_VOLUME_KEY_TYPE_VSK, key=_opt_bytes(body["key"], "escrowed key"))
        return msg
    if resp == "STORE_KEYS":
        msg = attest_pb2.ZAttestResponse(respType=AttestRespType.STORE_KEYS)
        msg.storage_keys_resp.response = _enum_out(StoreKeysResponse, body.get("code"))
        return msg
    raise CodecError(f"unknown attest response type {resp!r}")


@_guard
def decode_response(
    kind: str,
    status: int,
    payload: bytes,
    *,
    images: Mapping[str, str] | None = None,
    app_size: int = APP_SIZE_DEFAULT,
) -> dict[str, Any]:
    """Device side: a response payload -> the body dict the node expects.

    ``images`` maps content-tree uuid -> image name (:func:`image_names`); ``app_size`` stands in
    for the app image size, which eden's proto does not carry. Non-2xx answers, 304 and kinds
    without a response message decode to ``{}``.
    """
    _check_kind(kind)
    if status not in (200, 201):
        return {}
    if kind == "certs":
        msg = _parse(certs_pb2.ZControllerCert, payload)
        certs = []
        for c in msg.certs:
            name = certs_pb2.ZCertType.Name(c.type) if c.type in certs_pb2.ZCertType.values() else None
            if name is None or c.type == certs_pb2.CERT_TYPE_NONE:
                raise CodecError(f"certificate type {c.type} is not valid")
            certs.append({"type": name.removeprefix("CERT_TYPE_"), "pem": _bytes_text(c.cert, "certificate") or ""})
        return {"certs": certs} if certs else {}
    if kind == "uuid":
        msg = _parse(uuid_pb2.UuidResponse, payload)
        if not msg.uuid:
            raise CodecError("uuid response without a uuid")
        out = {"uuid": msg.uuid}
        if msg.manufacturer and msg.product_name:  # EVE uses them only as a pair (spec §2)
            out.update(manufacturer=msg.manufacturer, product_name=msg.product_name)
        return out
    if kind == "config":
        if status != 200:
            return {}
        return _decode_config(_parse(config_pb2.ConfigResponse, payload), images or {}, app_size)
    if kind == "attest":
        return _decode_attest_resp(_parse(attest_pb2.ZAttestResponse, payload))
    return {}


def _decode_config(resp: config_pb2.ConfigResponse, images: Mapping[str, str], app_size: int) -> dict[str, Any]:
    if not resp.HasField("config"):
        raise CodecError("config response without config")
    c = resp.config
    items: dict[str, ItemValue] = {}
    for it in c.configItems:
        if it.key in items:
            raise CodecError(f"config item {it.key!r} appears twice")
        items[it.key] = _item_in(it.key, it.value)
    baseos: BaseosConfig | None = None
    if c.HasField("baseos"):
        b = c.baseos
        if not b.content_tree_uuid or not b.base_os_version:
            raise CodecError("baseos needs a content tree uuid and a version")
        baseos = {"image": images.get(b.content_tree_uuid, b.content_tree_uuid), "version": b.base_os_version, "activate": b.activate, "retry": b.retry_update.counter}
        content = _content_in(c, b.content_tree_uuid)
        if content is not None:
            baseos["content"] = content
    apps: dict[str, AppSpec] = {}
    for a in c.apps:
        if not a.displayname or a.displayname in apps:
            raise CodecError(f"app name {a.displayname!r} is empty or repeated")
        vm = a.fixedresources
        apps[a.displayname] = {
            "kind": "container" if vm.virtualizationMode == config_pb2.NOHYPER else "vm",
            "cpus": vm.vcpus,
            "memory": vm.memory * 1024,
            "size": app_size,
            "activate": a.activate,
        }
    cfg: Config = {"items": items, "baseos": baseos, "reboot": c.reboot.counter, "apps": apps, "maintenance": c.maintenance_mode, "hash": resp.configHash}
    if c.HasField("shutdown"):
        cfg["shutdown"] = c.shutdown.counter
    out: dict[str, Any] = {"config": cfg}
    if c.id.version:
        if not c.id.version.isdigit():
            raise CodecError(f"config version {c.id.version!r} is not a number")
        out["ver"] = int(c.id.version)
    return out


def _decode_attest_resp(msg: attest_pb2.ZAttestResponse) -> dict[str, Any]:
    resp = _enum_in(AttestRespType, msg.respType)
    if resp == "CERT":
        return {"type": "CERT"}
    if resp == "NONCE":
        nonce = _bytes_text(msg.nonce.nonce, "nonce")
        if nonce is None:
            raise CodecError("nonce response without a nonce")
        return {"type": "NONCE", "nonce": nonce}
    if resp == "QUOTE_RESP":
        code = _enum_in(QuoteResponseCode, msg.quoteResp.response)
        if code == "INVALID":
            raise CodecError("quote response without a response code")
        out: dict[str, Any] = {"type": "QUOTE", "code": code}
        if code == "SUCCESS":
            keys = msg.quoteResp.keys
            if len(keys) > 1:
                raise CodecError("eden escrows one vault key")
            out["token"] = _bytes_text(msg.quoteResp.integrity_token, "integrity token")
            out["key"] = _bytes_text(keys[0].key, "escrowed key") if keys else None
        elif code == "QUOTE_FAILED":
            out["mismatch"] = []
        return out
    if resp == "STORE_KEYS":
        code = _enum_in(StoreKeysResponse, msg.storage_keys_resp.response)
        if code == "INVALID":
            raise CodecError("store-keys response without a response code")
        return {"type": "STORE_KEYS", "code": code}
    raise CodecError(f"attest response type {resp} is not supported")
