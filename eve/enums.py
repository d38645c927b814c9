"""EVE-OS enumerations with wire-compatible values.

Names and values follow /work/shared/reference/eve-behaviour.md (the
"spec"). Go-style CamelCase names from the spec (e.g. ``FailWithIPAndDNS``)
are spelled in UPPER_SNAKE here; :func:`enum_by_name` accepts both forms.

Where the spec lists no zero value for a proto3 enum, a zero member is added
so that a decoded default (absent field) still maps to a member; such
members are marked "proto3 zero value, not in spec".
"""

from __future__ import annotations

import enum
from typing import TypeVar

__all__ = [
    "BootReason",
    "ZDeviceState",
    "BaseOsStatus",
    "BaseOsSubStatus",
    "ZSwState",
    "AttestState",
    "AttestReqType",
    "AttestRespType",
    "QuoteResponseCode",
    "StoreKeysResponse",
    "MaintenanceModeReason",
    "ConfigGetStatus",
    "DPCState",
    "PartitionState",
    "ZInfoType",
    "BOOT_REASONS_CRASH",
    "enum_by_name",
]


class BootReason(enum.IntEnum):
    """Reason for the last boot (spec §7 BootReason table)."""

    UNSPECIFIED = 0
    FIRST = 1
    REBOOT_CMD = 2
    UPDATE = 3
    FALLBACK = 4
    DISCONNECT = 5
    FATAL = 6
    OOM = 7
    WATCHDOG_HUNG = 8
    WATCHDOG_PID = 9
    KERNEL = 10
    POWER_FAIL = 11
    UNKNOWN = 12
    VAULT_FAILED = 13
    POWEROFF_CMD = 14
    # Emitted by pillar but have no name in the proto (spec §7, §10).
    KUBE_TRANSITION = 15
    HW_WATCHDOG = 16
    PARSE_FAIL = 255


class ZDeviceState(enum.IntEnum):
    """ZInfoDevice.state (spec §7)."""

    UNSPECIFIED = 0
    ONLINE = 1
    REBOOTING = 2
    MAINTENANCE_MODE = 3
    BASEOS_UPDATING = 4
    BOOTING = 5
    PREPARING_POWEROFF = 6
    POWERING_OFF = 7
    PREPARED_POWEROFF = 8


class BaseOsStatus(enum.IntEnum):
    """User-facing baseOS status in ZInfoDevSW.userStatus (spec §3)."""

    NONE = 0
    DOWNLOADING = 1
    DOWNLOAD_DONE = 2
    UPDATING = 3
    UPDATED = 4
    FALLBACK = 5
    FAILED = 6


class BaseOsSubStatus(enum.IntEnum):
    """ZInfoDevSW.subStatus (spec §3)."""

    NONE = 0
    DOWNLOAD_INPROGRESS = 1
    VERIFY_INPROGRESS = 2
    UPDATE_INITIALIZING = 3
    UPDATE_REBOOTING = 4
    UPDATE_TESTING = 5
    UPDATE_NEED_TEST_CONFIRM = 6  # unused by EVE (spec §3)
    UPDATE_DEFERRED = 7


class ZSwState(enum.IntEnum):
    """Software/app state on the wire (spec §8 table)."""

    INVALID = 0
    INITIAL = 1
    DOWNLOAD_STARTED = 2
    DOWNLOADED = 3
    DELIVERED = 4
    INSTALLED = 5
    BOOTING = 6
    RUNNING = 7
    HALTING = 8
    HALTED = 9
    RESTARTING = 10  # never sent by EVE (spec §8)
    PURGING = 11  # never sent by EVE (spec §8)
    RESOLVING_TAG = 12
    RESOLVED_TAG = 13
    CREATING_VOLUME = 14
    CREATED_VOLUME = 15
    VERIFYING = 16
    VERIFIED = 17
    LOADING = 18
    LOADED = 19
    AWAITNETWORKINSTANCE = 20
    ERROR = 21
    START_DELAYED = 22
    PENDING = 23
    SCHEDULING = 24


class AttestState(enum.IntEnum):
    """AttestationState in ZInfoDevice.attestation_info (spec §5)."""

    UNSPECIFIED = 0
    NONCE_WAIT = 1
    TPM_QUOTE_WAIT = 2
    TPM_ESCROW_WAIT = 3
    ATTEST_WAIT = 4
    ATTEST_ESCROW_WAIT = 5
    RESTART_WAIT = 6
    COMPLETE = 7


class AttestReqType(enum.IntEnum):
    """ZAttestReq.reqType (spec §2)."""

    NONE = 0  # proto3 zero value, not in spec
    CERT = 1
    NONCE = 2
    QUOTE = 3
    STORE_KEYS = 4


class AttestRespType(enum.IntEnum):
    """ZAttestResponse.respType (spec §2)."""

    NONE = 0  # proto3 zero value, not in spec
    CERT = 1
    NONCE = 2
    QUOTE_RESP = 3
    STORE_KEYS = 4


class QuoteResponseCode(enum.IntEnum):
    """ZAttestResponse.quoteResp.response (spec §2)."""

    INVALID = 0  # proto3 zero value, not in spec
    SUCCESS = 1
    NONCE_MISMATCH = 2
    NO_CERT_FOUND = 3
    QUOTE_FAILED = 4


class StoreKeysResponse(enum.IntEnum):
    """ZAttestResponse.storage_keys_resp (spec §2)."""

    INVALID = 0  # proto3 zero value, not in spec
    SUCCESS = 1
    ITOKEN_MISMATCH = 2


class MaintenanceModeReason(enum.IntEnum):
    """ZInfoDevice.maintenance_mode_reasons (spec §7)."""

    NONE = 0
    USER_REQUESTED = 1
    VAULT_LOCKED_UP = 2
    LOW_DISK_SPACE = 3
    TPM_ENCRYPTION_FAILURE = 4
    TPM_QUOTE_FAILURE = 5
    EDGE_NODE_CERTS_REFUSED = 6


class ConfigGetStatus(enum.IntEnum):
    """Outcome of a config fetch (spec §1, P:types/zedagenttypes.go)."""

    SUCCESS = 1
    FAIL = 2
    TEMPORARY_FAIL = 3  # only while a baseOS update is in progress (spec §1)
    READ_SAVED = 4


class DPCState(enum.IntEnum):
    """Device port config state (spec §4, P:types/dpc.go)."""

    NONE = 0
    FAIL = 1
    FAIL_WITH_IP_AND_DNS = 2
    SUCCESS = 3
    IPDNS_WAIT = 4
    PCI_WAIT = 5
    INTF_WAIT = 6
    REMOTE_WAIT = 7
    ASYNC_WAIT = 8
    WWAN_WAIT = 9


class PartitionState(str, enum.Enum):
    """zboot partition state string (spec §3 GPT attribute table)."""

    ACTIVE = "active"
    UPDATING = "updating"
    INPROGRESS = "inprogress"
    UNUSED = "unused"


class ZInfoType(enum.IntEnum):
    """ZInfoMsg.ztype (spec §2 ZInfoTypes)."""

    ZI_NOP = 0  # proto3 zero value, not in spec
    ZI_DEVICE = 1
    ZI_APP = 3
    ZI_NETWORK_INSTANCE = 6
    ZI_VOLUME = 7
    ZI_CONTENT_TREE = 8
    ZI_BLOB_LIST = 9
    ZI_APP_INST_META_DATA = 10
    ZI_HARDWARE = 11
    ZI_EDGEVIEW = 12
    ZI_LOCATION = 13
    ZI_PATCH_ENVELOPE = 14
    ZI_NTP_SOURCES = 16
    ZI_KUBE_CLUSTER = 17
    ZI_KUBE_CLUSTER_UPDATE_STATUS = 18


# Boot reasons after which EVE applies lastconfig.bak instead of lastconfig
# (spec §1: Fallback, Fatal, OOM, Watchdog*, VaultFailure, HWWatchdog).
BOOT_REASONS_CRASH: frozenset[BootReason] = frozenset(
    {
        BootReason.FALLBACK,
        BootReason.FATAL,
        BootReason.OOM,
        BootReason.WATCHDOG_HUNG,
        BootReason.WATCHDOG_PID,
        BootReason.VAULT_FAILED,
        BootReason.HW_WATCHDOG,
    }
)

# Prefixes used by EVE's Go constants / proto names, compared after
# normalisation (upper case, no "_" or "-"). E.g. "BOOT_REASON_FALLBACK"
# (proto) and "BootReasonFallback" (Go) both reduce to "BOOTREASON"+"FALLBACK".
_PREFIXES: dict[type[enum.Enum], tuple[str, ...]] = {
    BootReason: ("BOOTREASON",),
    ZDeviceState: ("ZDEVICESTATE", "DEVICESTATE"),
    BaseOsStatus: ("BASEOSSTATUS",),
    BaseOsSubStatus: ("BASEOSSUBSTATUS",),
    ZSwState: ("ZSWSTATE", "SWSTATE"),
    AttestState: ("ATTESTATIONSTATE", "ATTESTSTATE", "STATE"),
    AttestReqType: ("ATTESTREQTYPE", "ATTESTREQ"),
    AttestRespType: ("ATTESTRESPTYPE", "ATTESTRESP"),
    QuoteResponseCode: ("ZATTESTRESPONSECODE", "ATTESTRESPONSECODE", "QUOTERESPONSECODE"),
    StoreKeysResponse: ("ATTESTSTOREKEYSRESPONSECODE", "STOREKEYSRESPONSE", "STOREKEYS"),
    MaintenanceModeReason: ("MAINTENANCEMODEREASON",),
    ConfigGetStatus: ("CONFIGGETSTATUS", "CONFIGGET"),
    DPCState: ("DPCSTATE",),
    PartitionState: ("PARTITIONSTATE",),
    ZInfoType: ("ZINFOTYPES", "ZINFOTYPE", "ZI"),
}

E = TypeVar("E", bound=enum.Enum)


def _norm(text: str) -> str:
    return text.strip().upper().replace("_", "").replace("-", "").replace(" ", "")


def _strip(text: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:  # longest/most specific prefixes are listed first
        if text.startswith(prefix) and len(text) > len(prefix):
            return text[len(prefix):]
    return text


def enum_by_name(enum_cls: type[E], name: str) -> E:
    """Look up a member of ``enum_cls`` by name, tolerant of EVE spellings.

    Accepts the member name case-insensitively, Go CamelCase spellings
    (``FailWithIPAndDNS``), EVE prefixed forms (``BOOT_REASON_FALLBACK``,
    ``BootReasonFallback``, ``ZDEVICE_STATE_ONLINE``), the value of a ``str``
    enum (``"inprogress"``) and a decimal value for int enums (``"4"``).
    Raises ``ValueError`` listing the valid names otherwise.
    """
    if isinstance(name, enum_cls):
        return name
    raw = str(name)
    members = list(enum_cls)
    prefixes = _PREFIXES.get(enum_cls, ())
    wanted = _norm(raw)
    candidates = {wanted, _strip(wanted, prefixes)}
    for member in members:
        key = _norm(member.name)
        if key in candidates or _strip(key, prefixes) in candidates:
            return member
        if isinstance(member.value, str) and _norm(member.value) in candidates:
            return member
    if issubclass(enum_cls, int):
        stripped = raw.strip()
        if stripped.lstrip("-").isdigit():
            try:
                return enum_cls(int(stripped))
            except ValueError:
                pass
    valid = ", ".join(m.name for m in members)
    raise ValueError(f"unknown {enum_cls.__name__} {raw!r}; valid names: {valid}")
