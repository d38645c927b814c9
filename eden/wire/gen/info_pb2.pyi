import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ZInfoTypes(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ZI_NOP: _ClassVar[ZInfoTypes]
    ZI_DEVICE: _ClassVar[ZInfoTypes]
    ZI_APP: _ClassVar[ZInfoTypes]
    ZI_NETWORK_INSTANCE: _ClassVar[ZInfoTypes]
    ZI_VOLUME: _ClassVar[ZInfoTypes]
    ZI_CONTENT_TREE: _ClassVar[ZInfoTypes]
    ZI_BLOB_LIST: _ClassVar[ZInfoTypes]
    ZI_APP_INST_META_DATA: _ClassVar[ZInfoTypes]
    ZI_HARDWARE: _ClassVar[ZInfoTypes]
    ZI_EDGEVIEW: _ClassVar[ZInfoTypes]
    ZI_LOCATION: _ClassVar[ZInfoTypes]
    ZI_PATCH_ENVELOPE: _ClassVar[ZInfoTypes]
    ZI_NTP_SOURCES: _ClassVar[ZInfoTypes]
    ZI_KUBE_CLUSTER: _ClassVar[ZInfoTypes]
    ZI_KUBE_CLUSTER_UPDATE_STATUS: _ClassVar[ZInfoTypes]

class ZSwState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SW_STATE_INVALID: _ClassVar[ZSwState]
    SW_STATE_INITIAL: _ClassVar[ZSwState]
    SW_STATE_DOWNLOAD_STARTED: _ClassVar[ZSwState]
    SW_STATE_DOWNLOADED: _ClassVar[ZSwState]
    SW_STATE_DELIVERED: _ClassVar[ZSwState]
    SW_STATE_INSTALLED: _ClassVar[ZSwState]
    SW_STATE_BOOTING: _ClassVar[ZSwState]
    SW_STATE_RUNNING: _ClassVar[ZSwState]
    SW_STATE_HALTING: _ClassVar[ZSwState]
    SW_STATE_HALTED: _ClassVar[ZSwState]
    SW_STATE_RESTARTING: _ClassVar[ZSwState]
    SW_STATE_PURGING: _ClassVar[ZSwState]
    SW_STATE_RESOLVING_TAG: _ClassVar[ZSwState]
    SW_STATE_RESOLVED_TAG: _ClassVar[ZSwState]
    SW_STATE_CREATING_VOLUME: _ClassVar[ZSwState]
    SW_STATE_CREATED_VOLUME: _ClassVar[ZSwState]
    SW_STATE_VERIFYING: _ClassVar[ZSwState]
    SW_STATE_VERIFIED: _ClassVar[ZSwState]
    SW_STATE_LOADING: _ClassVar[ZSwState]
    SW_STATE_LOADED: _ClassVar[ZSwState]
    SW_STATE_AWAITNETWORKINSTANCE: _ClassVar[ZSwState]
    SW_STATE_ERROR: _ClassVar[ZSwState]
    SW_STATE_START_DELAYED: _ClassVar[ZSwState]
    SW_STATE_PENDING: _ClassVar[ZSwState]
    SW_STATE_SCHEDULING: _ClassVar[ZSwState]

class BootReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BOOT_REASON_UNSPECIFIED: _ClassVar[BootReason]
    BOOT_REASON_FIRST: _ClassVar[BootReason]
    BOOT_REASON_REBOOT_CMD: _ClassVar[BootReason]
    BOOT_REASON_UPDATE: _ClassVar[BootReason]
    BOOT_REASON_FALLBACK: _ClassVar[BootReason]
    BOOT_REASON_DISCONNECT: _ClassVar[BootReason]
    BOOT_REASON_FATAL: _ClassVar[BootReason]
    BOOT_REASON_OOM: _ClassVar[BootReason]
    BOOT_REASON_WATCHDOG_HUNG: _ClassVar[BootReason]
    BOOT_REASON_WATCHDOG_PID: _ClassVar[BootReason]
    BOOT_REASON_KERNEL: _ClassVar[BootReason]
    BOOT_REASON_POWER_FAIL: _ClassVar[BootReason]
    BOOT_REASON_UNKNOWN: _ClassVar[BootReason]
    BOOT_REASON_VAULT_FAILED: _ClassVar[BootReason]
    BOOT_REASON_POWEROFF_CMD: _ClassVar[BootReason]
    BOOT_REASON_KUBE_TRANSITION: _ClassVar[BootReason]
    BOOT_REASON_HW_WATCHDOG: _ClassVar[BootReason]
    BOOT_REASON_PARSE_FAIL: _ClassVar[BootReason]

class ZDeviceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_STATE_UNSPECIFIED: _ClassVar[ZDeviceState]
    DEVICE_STATE_ONLINE: _ClassVar[ZDeviceState]
    DEVICE_STATE_REBOOTING: _ClassVar[ZDeviceState]
    DEVICE_STATE_MAINTENANCE_MODE: _ClassVar[ZDeviceState]
    DEVICE_STATE_BASEOS_UPDATING: _ClassVar[ZDeviceState]
    DEVICE_STATE_BOOTING: _ClassVar[ZDeviceState]
    DEVICE_STATE_PREPARING_POWEROFF: _ClassVar[ZDeviceState]
    DEVICE_STATE_POWERING_OFF: _ClassVar[ZDeviceState]
    DEVICE_STATE_PREPARED_POWEROFF: _ClassVar[ZDeviceState]

class BaseOsStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BASE_OS_STATUS_NONE: _ClassVar[BaseOsStatus]
    BASE_OS_STATUS_DOWNLOADING: _ClassVar[BaseOsStatus]
    BASE_OS_STATUS_DOWNLOAD_DONE: _ClassVar[BaseOsStatus]
    BASE_OS_STATUS_UPDATING: _ClassVar[BaseOsStatus]
    BASE_OS_STATUS_UPDATED: _ClassVar[BaseOsStatus]
    BASE_OS_STATUS_FALLBACK: _ClassVar[BaseOsStatus]
    BASE_OS_STATUS_FAILED: _ClassVar[BaseOsStatus]

class BaseOsSubStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BASE_OS_SUB_STATUS_NONE: _ClassVar[BaseOsSubStatus]
    BASE_OS_SUB_STATUS_DOWNLOAD_INPROGRESS: _ClassVar[BaseOsSubStatus]
    BASE_OS_SUB_STATUS_VERIFY_INPROGRESS: _ClassVar[BaseOsSubStatus]
    BASE_OS_SUB_STATUS_UPDATE_INITIALIZING: _ClassVar[BaseOsSubStatus]
    BASE_OS_SUB_STATUS_UPDATE_REBOOTING: _ClassVar[BaseOsSubStatus]
    BASE_OS_SUB_STATUS_UPDATE_TESTING: _ClassVar[BaseOsSubStatus]
    BASE_OS_SUB_STATUS_UPDATE_NEED_TEST_CONFIRM: _ClassVar[BaseOsSubStatus]
    BASE_OS_SUB_STATUS_UPDATE_DEFERRED: _ClassVar[BaseOsSubStatus]

class MaintenanceModeReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MAINTENANCE_MODE_REASON_NONE: _ClassVar[MaintenanceModeReason]
    MAINTENANCE_MODE_REASON_USER_REQUESTED: _ClassVar[MaintenanceModeReason]
    MAINTENANCE_MODE_REASON_VAULT_LOCKED_UP: _ClassVar[MaintenanceModeReason]
    MAINTENANCE_MODE_REASON_LOW_DISK_SPACE: _ClassVar[MaintenanceModeReason]
    MAINTENANCE_MODE_REASON_TPM_ENCRYPTION_FAILURE: _ClassVar[MaintenanceModeReason]
    MAINTENANCE_MODE_REASON_TPM_QUOTE_FAILURE: _ClassVar[MaintenanceModeReason]
    MAINTENANCE_MODE_REASON_EDGE_NODE_CERTS_REFUSED: _ClassVar[MaintenanceModeReason]

class AttestationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTESTATION_STATE_UNSPECIFIED: _ClassVar[AttestationState]
    ATTESTATION_STATE_NONCE_WAIT: _ClassVar[AttestationState]
    ATTESTATION_STATE_TPM_QUOTE_WAIT: _ClassVar[AttestationState]
    ATTESTATION_STATE_TPM_ESCROW_WAIT: _ClassVar[AttestationState]
    ATTESTATION_STATE_ATTEST_WAIT: _ClassVar[AttestationState]
    ATTESTATION_STATE_ATTEST_ESCROW_WAIT: _ClassVar[AttestationState]
    ATTESTATION_STATE_RESTART_WAIT: _ClassVar[AttestationState]
    ATTESTATION_STATE_COMPLETE: _ClassVar[AttestationState]

class DataSecAtRestStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASEC_AT_REST_UNKNOWN: _ClassVar[DataSecAtRestStatus]
    DATASEC_AT_REST_DISABLED: _ClassVar[DataSecAtRestStatus]
    DATASEC_AT_REST_ENABLED: _ClassVar[DataSecAtRestStatus]
    DATASEC_AT_REST_ERROR: _ClassVar[DataSecAtRestStatus]

class ZNetworkInstanceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ZNETINST_STATE_UNSPECIFIED: _ClassVar[ZNetworkInstanceState]
    ZNETINST_STATE_INIT: _ClassVar[ZNetworkInstanceState]
    ZNETINST_STATE_ONLINE: _ClassVar[ZNetworkInstanceState]
    ZNETINST_STATE_ERROR: _ClassVar[ZNetworkInstanceState]

class NetworkDeviceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NETWORK_DEVICE_TYPE_UNKNOWN: _ClassVar[NetworkDeviceType]
    NETWORK_DEVICE_TYPE_ETHERNET: _ClassVar[NetworkDeviceType]
    NETWORK_DEVICE_TYPE_WIFI: _ClassVar[NetworkDeviceType]
    NETWORK_DEVICE_TYPE_WWAN: _ClassVar[NetworkDeviceType]
ZI_NOP: ZInfoTypes
ZI_DEVICE: ZInfoTypes
ZI_APP: ZInfoTypes
ZI_NETWORK_INSTANCE: ZInfoTypes
ZI_VOLUME: ZInfoTypes
ZI_CONTENT_TREE: ZInfoTypes
ZI_BLOB_LIST: ZInfoTypes
ZI_APP_INST_META_DATA: ZInfoTypes
ZI_HARDWARE: ZInfoTypes
ZI_EDGEVIEW: ZInfoTypes
ZI_LOCATION: ZInfoTypes
ZI_PATCH_ENVELOPE: ZInfoTypes
ZI_NTP_SOURCES: ZInfoTypes
ZI_KUBE_CLUSTER: ZInfoTypes
ZI_KUBE_CLUSTER_UPDATE_STATUS: ZInfoTypes
SW_STATE_INVALID: ZSwState
SW_STATE_INITIAL: ZSwState
SW_STATE_DOWNLOAD_STARTED: ZSwState
SW_STATE_DOWNLOADED: ZSwState
SW_STATE_DELIVERED: ZSwState
SW_STATE_INSTALLED: ZSwState
SW_STATE_BOOTING: ZSwState
SW_STATE_RUNNING: ZSwState
SW_STATE_HALTING: ZSwState
SW_STATE_HALTED: ZSwState
SW_STATE_RESTARTING: ZSwState
SW_STATE_PURGING: ZSwState
SW_STATE_RESOLVING_TAG: ZSwState
SW_STATE_RESOLVED_TAG: ZSwState
SW_STATE_CREATING_VOLUME: ZSwState
SW_STATE_CREATED_VOLUME: ZSwState
SW_STATE_VERIFYING: ZSwState
SW_STATE_VERIFIED: ZSwState
SW_STATE_LOADING: ZSwState
SW_STATE_LOADED: ZSwState
SW_STATE_AWAITNETWORKINSTANCE: ZSwState
SW_STATE_ERROR: ZSwState
SW_STATE_START_DELAYED: ZSwState
SW_STATE_PENDING: ZSwState
SW_STATE_SCHEDULING: ZSwState
BOOT_REASON_UNSPECIFIED: BootReason
BOOT_REASON_FIRST: BootReason
BOOT_REASON_REBOOT_CMD: BootReason
BOOT_REASON_UPDATE: BootReason
BOOT_REASON_FALLBACK: BootReason
BOOT_REASON_DISCONNECT: BootReason
BOOT_REASON_FATAL: BootReason
BOOT_REASON_OOM: BootReason
BOOT_REASON_WATCHDOG_HUNG: BootReason
BOOT_REASON_WATCHDOG_PID: BootReason
BOOT_REASON_KERNEL: BootReason
BOOT_REASON_POWER_FAIL: BootReason
BOOT_REASON_UNKNOWN: BootReason
BOOT_REASON_VAULT_FAILED: BootReason
BOOT_REASON_POWEROFF_CMD: BootReason
BOOT_REASON_KUBE_TRANSITION: BootReason
BOOT_REASON_HW_WATCHDOG: BootReason
BOOT_REASON_PARSE_FAIL: BootReason
DEVICE_STATE_UNSPECIFIED: ZDeviceState
DEVICE_STATE_ONLINE: ZDeviceState
DEVICE_STATE_REBOOTING: ZDeviceState
DEVICE_STATE_MAINTENANCE_MODE: ZDeviceState
DEVICE_STATE_BASEOS_UPDATING: ZDeviceState
DEVICE_STATE_BOOTING: ZDeviceState
DEVICE_STATE_PREPARING_POWEROFF: ZDeviceState
DEVICE_STATE_POWERING_OFF: ZDeviceState
DEVICE_STATE_PREPARED_POWEROFF: ZDeviceState
BASE_OS_STATUS_NONE: BaseOsStatus
BASE_OS_STATUS_DOWNLOADING: BaseOsStatus
BASE_OS_STATUS_DOWNLOAD_DONE: BaseOsStatus
BASE_OS_STATUS_UPDATING: BaseOsStatus
BASE_OS_STATUS_UPDATED: BaseOsStatus
BASE_OS_STATUS_FALLBACK: BaseOsStatus
BASE_OS_STATUS_FAILED: BaseOsStatus
BASE_OS_SUB_STATUS_NONE: BaseOsSubStatus
BASE_OS_SUB_STATUS_DOWNLOAD_INPROGRESS: BaseOsSubStatus
BASE_OS_SUB_STATUS_VERIFY_INPROGRESS: BaseOsSubStatus
BASE_OS_SUB_STATUS_UPDATE_INITIALIZING: BaseOsSubStatus
BASE_OS_SUB_STATUS_UPDATE_REBOOTING: BaseOsSubStatus
BASE_OS_SUB_STATUS_UPDATE_TESTING: BaseOsSubStatus
BASE_OS_SUB_STATUS_UPDATE_NEED_TEST_CONFIRM: BaseOsSubStatus
BASE_OS_SUB_STATUS_UPDATE_DEFERRED: BaseOsSubStatus
MAINTENANCE_MODE_REASON_NONE: MaintenanceModeReason
MAINTENANCE_MODE_REASON_USER_REQUESTED: MaintenanceModeReason
MAINTENANCE_MODE_REASON_VAULT_LOCKED_UP: MaintenanceModeReason
MAINTENANCE_MODE_REASON_LOW_DISK_SPACE: MaintenanceModeReason
MAINTENANCE_MODE_REASON_TPM_ENCRYPTION_FAILURE: MaintenanceModeReason
MAINTENANCE_MODE_REASON_TPM_QUOTE_FAILURE: MaintenanceModeReason
MAINTENANCE_MODE_REASON_EDGE_NODE_CERTS_REFUSED: MaintenanceModeReason
ATTESTATION_STATE_UNSPECIFIED: AttestationState
ATTESTATION_STATE_NONCE_WAIT: AttestationState
ATTESTATION_STATE_TPM_QUOTE_WAIT: AttestationState
ATTESTATION_STATE_TPM_ESCROW_WAIT: AttestationState
ATTESTATION_STATE_ATTEST_WAIT: AttestationState
ATTESTATION_STATE_ATTEST_ESCROW_WAIT: AttestationState
ATTESTATION_STATE_RESTART_WAIT: AttestationState
ATTESTATION_STATE_COMPLETE: AttestationState
DATASEC_AT_REST_UNKNOWN: DataSecAtRestStatus
DATASEC_AT_REST_DISABLED: DataSecAtRestStatus
DATASEC_AT_REST_ENABLED: DataSecAtRestStatus
DATASEC_AT_REST_ERROR: DataSecAtRestStatus
ZNETINST_STATE_UNSPECIFIED: ZNetworkInstanceState
ZNETINST_STATE_INIT: ZNetworkInstanceState
ZNETINST_STATE_ONLINE: ZNetworkInstanceState
ZNETINST_STATE_ERROR: ZNetworkInstanceState
NETWORK_DEVICE_TYPE_UNKNOWN: NetworkDeviceType
NETWORK_DEVICE_TYPE_ETHERNET: NetworkDeviceType
NETWORK_DEVICE_TYPE_WIFI: NetworkDeviceType
NETWORK_DEVICE_TYPE_WWAN: NetworkDeviceType

class ErrorInfo(_message.Message):
    __slots__ = ("description", "timestamp")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    description: str
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, description: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VaultInfo(_message.Message):
    __slots__ = ("name", "status", "vaultErr")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VAULTERR_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: DataSecAtRestStatus
    vaultErr: ErrorInfo
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[DataSecAtRestStatus, str]] = ..., vaultErr: _Optional[_Union[ErrorInfo, _Mapping]] = ...) -> None: ...

class DataSecAtRest(_message.Message):
    __slots__ = ("vaultList",)
    VAULTLIST_FIELD_NUMBER: _ClassVar[int]
    vaultList: _containers.RepeatedCompositeFieldContainer[VaultInfo]
    def __init__(self, vaultList: _Optional[_Iterable[_Union[VaultInfo, _Mapping]]] = ...) -> None: ...

class DevicePort(_message.Message):
    __slots__ = ("ifname", "isMgmt", "up", "err", "cost")
    IFNAME_FIELD_NUMBER: _ClassVar[int]
    ISMGMT_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    ifname: str
    isMgmt: bool
    up: bool
    err: ErrorInfo
    cost: int
    def __init__(self, ifname: _Optional[str] = ..., isMgmt: _Optional[bool] = ..., up: _Optional[bool] = ..., err: _Optional[_Union[ErrorInfo, _Mapping]] = ..., cost: _Optional[int] = ...) -> None: ...

class DevicePortStatus(_message.Message):
    __slots__ = ("key", "timePriority", "lastFailed", "lastSucceeded", "ports", "lastError")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TIMEPRIORITY_FIELD_NUMBER: _ClassVar[int]
    LASTFAILED_FIELD_NUMBER: _ClassVar[int]
    LASTSUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    LASTERROR_FIELD_NUMBER: _ClassVar[int]
    key: str
    timePriority: _timestamp_pb2.Timestamp
    lastFailed: _timestamp_pb2.Timestamp
    lastSucceeded: _timestamp_pb2.Timestamp
    ports: _containers.RepeatedCompositeFieldContainer[DevicePort]
    lastError: str
    def __init__(self, key: _Optional[str] = ..., timePriority: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lastFailed: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lastSucceeded: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ports: _Optional[_Iterable[_Union[DevicePort, _Mapping]]] = ..., lastError: _Optional[str] = ...) -> None: ...

class SystemAdapterInfo(_message.Message):
    __slots__ = ("currentIndex", "status")
    CURRENTINDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    currentIndex: int
    status: _containers.RepeatedCompositeFieldContainer[DevicePortStatus]
    def __init__(self, currentIndex: _Optional[int] = ..., status: _Optional[_Iterable[_Union[DevicePortStatus, _Mapping]]] = ...) -> None: ...

class AttestationInfo(_message.Message):
    __slots__ = ("state", "error")
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    state: AttestationState
    error: ErrorInfo
    def __init__(self, state: _Optional[_Union[AttestationState, str]] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ...) -> None: ...

class ZInfoConfigItem(_message.Message):
    __slots__ = ("value", "error")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    value: str
    error: str
    def __init__(self, value: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ZInfoConfigItemStatus(_message.Message):
    __slots__ = ("configItems", "unknownConfigItems")
    class ConfigItemsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ZInfoConfigItem
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ZInfoConfigItem, _Mapping]] = ...) -> None: ...
    class UnknownConfigItemsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ZInfoConfigItem
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ZInfoConfigItem, _Mapping]] = ...) -> None: ...
    CONFIGITEMS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWNCONFIGITEMS_FIELD_NUMBER: _ClassVar[int]
    configItems: _containers.MessageMap[str, ZInfoConfigItem]
    unknownConfigItems: _containers.MessageMap[str, ZInfoConfigItem]
    def __init__(self, configItems: _Optional[_Mapping[str, ZInfoConfigItem]] = ..., unknownConfigItems: _Optional[_Mapping[str, ZInfoConfigItem]] = ...) -> None: ...

class ZInfoDevSW(_message.Message):
    __slots__ = ("activated", "partitionLabel", "partitionDevice", "partitionState", "status", "shortVersion", "longVersion", "swErr", "downloadProgress", "userStatus", "subStatusStr", "subStatus", "subStatusProgress")
    ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    PARTITIONLABEL_FIELD_NUMBER: _ClassVar[int]
    PARTITIONDEVICE_FIELD_NUMBER: _ClassVar[int]
    PARTITIONSTATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SHORTVERSION_FIELD_NUMBER: _ClassVar[int]
    LONGVERSION_FIELD_NUMBER: _ClassVar[int]
    SWERR_FIELD_NUMBER: _ClassVar[int]
    DOWNLOADPROGRESS_FIELD_NUMBER: _ClassVar[int]
    USERSTATUS_FIELD_NUMBER: _ClassVar[int]
    SUBSTATUSSTR_FIELD_NUMBER: _ClassVar[int]
    SUBSTATUS_FIELD_NUMBER: _ClassVar[int]
    SUBSTATUSPROGRESS_FIELD_NUMBER: _ClassVar[int]
    activated: bool
    partitionLabel: str
    partitionDevice: str
    partitionState: str
    status: ZSwState
    shortVersion: str
    longVersion: str
    swErr: ErrorInfo
    downloadProgress: int
    userStatus: BaseOsStatus
    subStatusStr: str
    subStatus: BaseOsSubStatus
    subStatusProgress: int
    def __init__(self, activated: _Optional[bool] = ..., partitionLabel: _Optional[str] = ..., partitionDevice: _Optional[str] = ..., partitionState: _Optional[str] = ..., status: _Optional[_Union[ZSwState, str]] = ..., shortVersion: _Optional[str] = ..., longVersion: _Optional[str] = ..., swErr: _Optional[_Union[ErrorInfo, _Mapping]] = ..., downloadProgress: _Optional[int] = ..., userStatus: _Optional[_Union[BaseOsStatus, str]] = ..., subStatusStr: _Optional[str] = ..., subStatus: _Optional[_Union[BaseOsSubStatus, str]] = ..., subStatusProgress: _Optional[int] = ...) -> None: ...

class ZInfoDevice(_message.Message):
    __slots__ = ("bootTime", "swList", "lastRebootReason", "lastRebootTime", "systemAdapter", "restartCounter", "dataSecAtRestInfo", "configItemStatus", "rebootConfigCounter", "last_boot_reason", "maintenance_mode", "baseos_update_counter", "state", "maintenance_mode_reasons", "shutdown_config_counter", "attestation_info")
    BOOTTIME_FIELD_NUMBER: _ClassVar[int]
    SWLIST_FIELD_NUMBER: _ClassVar[int]
    LASTREBOOTREASON_FIELD_NUMBER: _ClassVar[int]
    LASTREBOOTTIME_FIELD_NUMBER: _ClassVar[int]
    SYSTEMADAPTER_FIELD_NUMBER: _ClassVar[int]
    RESTARTCOUNTER_FIELD_NUMBER: _ClassVar[int]
    DATASECATRESTINFO_FIELD_NUMBER: _ClassVar[int]
    CONFIGITEMSTATUS_FIELD_NUMBER: _ClassVar[int]
    REBOOTCONFIGCOUNTER_FIELD_NUMBER: _ClassVar[int]
    LAST_BOOT_REASON_FIELD_NUMBER: _ClassVar[int]
    MAINTENANCE_MODE_FIELD_NUMBER: _ClassVar[int]
    BASEOS_UPDATE_COUNTER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MAINTENANCE_MODE_REASONS_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_CONFIG_COUNTER_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_INFO_FIELD_NUMBER: _ClassVar[int]
    bootTime: _timestamp_pb2.Timestamp
    swList: _containers.RepeatedCompositeFieldContainer[ZInfoDevSW]
    lastRebootReason: str
    lastRebootTime: _timestamp_pb2.Timestamp
    systemAdapter: SystemAdapterInfo
    restartCounter: int
    dataSecAtRestInfo: DataSecAtRest
    configItemStatus: ZInfoConfigItemStatus
    rebootConfigCounter: int
    last_boot_reason: BootReason
    maintenance_mode: bool
    baseos_update_counter: int
    state: ZDeviceState
    maintenance_mode_reasons: _containers.RepeatedScalarFieldContainer[MaintenanceModeReason]
    shutdown_config_counter: int
    attestation_info: AttestationInfo
    def __init__(self, bootTime: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., swList: _Optional[_Iterable[_Union[ZInfoDevSW, _Mapping]]] = ..., lastRebootReason: _Optional[str] = ..., lastRebootTime: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., systemAdapter: _Optional[_Union[SystemAdapterInfo, _Mapping]] = ..., restartCounter: _Optional[int] = ..., dataSecAtRestInfo: _Optional[_Union[DataSecAtRest, _Mapping]] = ..., configItemStatus: _Optional[_Union[ZInfoConfigItemStatus, _Mapping]] = ..., rebootConfigCounter: _Optional[int] = ..., last_boot_reason: _Optional[_Union[BootReason, str]] = ..., maintenance_mode: _Optional[bool] = ..., baseos_update_counter: _Optional[int] = ..., state: _Optional[_Union[ZDeviceState, str]] = ..., maintenance_mode_reasons: _Optional[_Iterable[_Union[MaintenanceModeReason, str]]] = ..., shutdown_config_counter: _Optional[int] = ..., attestation_info: _Optional[_Union[AttestationInfo, _Mapping]] = ...) -> None: ...

class ZInfoApp(_message.Message):
    __slots__ = ("AppID", "appVersion", "AppName", "bootTime", "appErr", "state", "volumeRefs")
    APPID_FIELD_NUMBER: _ClassVar[int]
    APPVERSION_FIELD_NUMBER: _ClassVar[int]
    APPNAME_FIELD_NUMBER: _ClassVar[int]
    BOOTTIME_FIELD_NUMBER: _ClassVar[int]
    APPERR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VOLUMEREFS_FIELD_NUMBER: _ClassVar[int]
    AppID: str
    appVersion: str
    AppName: str
    bootTime: _timestamp_pb2.Timestamp
    appErr: _containers.RepeatedCompositeFieldContainer[ErrorInfo]
    state: ZSwState
    volumeRefs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, AppID: _Optional[str] = ..., appVersion: _Optional[str] = ..., AppName: _Optional[str] = ..., bootTime: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., appErr: _Optional[_Iterable[_Union[ErrorInfo, _Mapping]]] = ..., state: _Optional[_Union[ZSwState, str]] = ..., volumeRefs: _Optional[_Iterable[str]] = ...) -> None: ...

class ZInfoNetworkInstance(_message.Message):
    __slots__ = ("networkID", "networkVersion", "displayname", "activated", "ports", "networkErr", "state")
    NETWORKID_FIELD_NUMBER: _ClassVar[int]
    NETWORKVERSION_FIELD_NUMBER: _ClassVar[int]
    DISPLAYNAME_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    NETWORKERR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    networkID: str
    networkVersion: str
    displayname: str
    activated: bool
    ports: _containers.RepeatedScalarFieldContainer[str]
    networkErr: _containers.RepeatedCompositeFieldContainer[ErrorInfo]
    state: ZNetworkInstanceState
    def __init__(self, networkID: _Optional[str] = ..., networkVersion: _Optional[str] = ..., displayname: _Optional[str] = ..., activated: _Optional[bool] = ..., ports: _Optional[_Iterable[str]] = ..., networkErr: _Optional[_Iterable[_Union[ErrorInfo, _Mapping]]] = ..., state: _Optional[_Union[ZNetworkInstanceState, str]] = ...) -> None: ...

class VolumeResources(_message.Message):
    __slots__ = ("maxSizeBytes", "curSizeBytes")
    MAXSIZEBYTES_FIELD_NUMBER: _ClassVar[int]
    CURSIZEBYTES_FIELD_NUMBER: _ClassVar[int]
    maxSizeBytes: int
    curSizeBytes: int
    def __init__(self, maxSizeBytes: _Optional[int] = ..., curSizeBytes: _Optional[int] = ...) -> None: ...

class ZInfoVolume(_message.Message):
    __slots__ = ("uuid", "displayName", "resources", "state", "progressPercentage", "volumeErr")
    UUID_FIELD_NUMBER: _ClassVar[int]
    DISPLAYNAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESSPERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    VOLUMEERR_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    displayName: str
    resources: VolumeResources
    state: ZSwState
    progressPercentage: int
    volumeErr: ErrorInfo
    def __init__(self, uuid: _Optional[str] = ..., displayName: _Optional[str] = ..., resources: _Optional[_Union[VolumeResources, _Mapping]] = ..., state: _Optional[_Union[ZSwState, str]] = ..., progressPercentage: _Optional[int] = ..., volumeErr: _Optional[_Union[ErrorInfo, _Mapping]] = ...) -> None: ...

class ContentResources(_message.Message):
    __slots__ = ("curSizeBytes",)
    CURSIZEBYTES_FIELD_NUMBER: _ClassVar[int]
    curSizeBytes: int
    def __init__(self, curSizeBytes: _Optional[int] = ...) -> None: ...

class ZInfoContentTree(_message.Message):
    __slots__ = ("uuid", "displayName", "sha256", "resources", "state", "progressPercentage", "err")
    UUID_FIELD_NUMBER: _ClassVar[int]
    DISPLAYNAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESSPERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    displayName: str
    sha256: str
    resources: ContentResources
    state: ZSwState
    progressPercentage: int
    err: ErrorInfo
    def __init__(self, uuid: _Optional[str] = ..., displayName: _Optional[str] = ..., sha256: _Optional[str] = ..., resources: _Optional[_Union[ContentResources, _Mapping]] = ..., state: _Optional[_Union[ZSwState, str]] = ..., progressPercentage: _Optional[int] = ..., err: _Optional[_Union[ErrorInfo, _Mapping]] = ...) -> None: ...

class NetworkDevice(_message.Message):
    __slots__ = ("ifname", "type", "speed_mbps")
    IFNAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SPEED_MBPS_FIELD_NUMBER: _ClassVar[int]
    ifname: str
    type: NetworkDeviceType
    speed_mbps: int
    def __init__(self, ifname: _Optional[str] = ..., type: _Optional[_Union[NetworkDeviceType, str]] = ..., speed_mbps: _Optional[int] = ...) -> None: ...

class BIOS(_message.Message):
    __slots__ = ("vendor", "version")
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    vendor: str
    version: str
    def __init__(self, vendor: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class CPU(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class CPUInfo(_message.Message):
    __slots__ = ("cpus",)
    CPUS_FIELD_NUMBER: _ClassVar[int]
    cpus: _containers.RepeatedCompositeFieldContainer[CPU]
    def __init__(self, cpus: _Optional[_Iterable[_Union[CPU, _Mapping]]] = ...) -> None: ...

class TPM(_message.Message):
    __slots__ = ("present", "spec_version")
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    present: bool
    spec_version: str
    def __init__(self, present: _Optional[bool] = ..., spec_version: _Optional[str] = ...) -> None: ...

class HardwareInventory(_message.Message):
    __slots__ = ("network_devices", "bios", "cpu_info", "total_memory_bytes", "total_storage_bytes", "tpm")
    NETWORK_DEVICES_FIELD_NUMBER: _ClassVar[int]
    BIOS_FIELD_NUMBER: _ClassVar[int]
    CPU_INFO_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STORAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TPM_FIELD_NUMBER: _ClassVar[int]
    network_devices: _containers.RepeatedCompositeFieldContainer[NetworkDevice]
    bios: BIOS
    cpu_info: CPUInfo
    total_memory_bytes: int
    total_storage_bytes: int
    tpm: TPM
    def __init__(self, network_devices: _Optional[_Iterable[_Union[NetworkDevice, _Mapping]]] = ..., bios: _Optional[_Union[BIOS, _Mapping]] = ..., cpu_info: _Optional[_Union[CPUInfo, _Mapping]] = ..., total_memory_bytes: _Optional[int] = ..., total_storage_bytes: _Optional[int] = ..., tpm: _Optional[_Union[TPM, _Mapping]] = ...) -> None: ...

class ZInfoHardware(_message.Message):
    __slots__ = ("eve_release", "inventory", "eve_platform", "partition")
    EVE_RELEASE_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    EVE_PLATFORM_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    eve_release: str
    inventory: HardwareInventory
    eve_platform: str
    partition: str
    def __init__(self, eve_release: _Optional[str] = ..., inventory: _Optional[_Union[HardwareInventory, _Mapping]] = ..., eve_platform: _Optional[str] = ..., partition: _Optional[str] = ...) -> None: ...

class ZInfoMsg(_message.Message):
    __slots__ = ("ztype", "devId", "dinfo", "ainfo", "niinfo", "vinfo", "cinfo", "hwinfo", "atTimeStamp")
    ZTYPE_FIELD_NUMBER: _ClassVar[int]
    DEVID_FIELD_NUMBER: _ClassVar[int]
    DINFO_FIELD_NUMBER: _ClassVar[int]
    AINFO_FIELD_NUMBER: _ClassVar[int]
    NIINFO_FIELD_NUMBER: _ClassVar[int]
    VINFO_FIELD_NUMBER: _ClassVar[int]
    CINFO_FIELD_NUMBER: _ClassVar[int]
    HWINFO_FIELD_NUMBER: _ClassVar[int]
    ATTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ztype: ZInfoTypes
    devId: str
    dinfo: ZInfoDevice
    ainfo: ZInfoApp
    niinfo: ZInfoNetworkInstance
    vinfo: ZInfoVolume
    cinfo: ZInfoContentTree
    hwinfo: ZInfoHardware
    atTimeStamp: _timestamp_pb2.Timestamp
    def __init__(self, ztype: _Optional[_Union[ZInfoTypes, str]] = ..., devId: _Optional[str] = ..., dinfo: _Optional[_Union[ZInfoDevice, _Mapping]] = ..., ainfo: _Optional[_Union[ZInfoApp, _Mapping]] = ..., niinfo: _Optional[_Union[ZInfoNetworkInstance, _Mapping]] = ..., vinfo: _Optional[_Union[ZInfoVolume, _Mapping]] = ..., cinfo: _Optional[_Union[ZInfoContentTree, _Mapping]] = ..., hwinfo: _Optional[_Union[ZInfoHardware, _Mapping]] = ..., atTimeStamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
