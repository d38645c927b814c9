import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DsType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DsUnknown: _ClassVar[DsType]
    DsHttp: _ClassVar[DsType]
    DsHttps: _ClassVar[DsType]
    DsS3: _ClassVar[DsType]
    DsSFTP: _ClassVar[DsType]
    DsContainerRegistry: _ClassVar[DsType]
    DsAzureBlob: _ClassVar[DsType]
    DsGoogleStorage: _ClassVar[DsType]

class VmMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PV: _ClassVar[VmMode]
    HVM: _ClassVar[VmMode]
    Filler: _ClassVar[VmMode]
    FML: _ClassVar[VmMode]
    NOHYPER: _ClassVar[VmMode]
    LEGACY: _ClassVar[VmMode]
DsUnknown: DsType
DsHttp: DsType
DsHttps: DsType
DsS3: DsType
DsSFTP: DsType
DsContainerRegistry: DsType
DsAzureBlob: DsType
DsGoogleStorage: DsType
PV: VmMode
HVM: VmMode
Filler: VmMode
FML: VmMode
NOHYPER: VmMode
LEGACY: VmMode

class UUIDandVersion(_message.Message):
    __slots__ = ("uuid", "version")
    UUID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    version: str
    def __init__(self, uuid: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ConfigItem(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class DeviceOpsCmd(_message.Message):
    __slots__ = ("counter", "desiredState", "opsTime")
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    DESIREDSTATE_FIELD_NUMBER: _ClassVar[int]
    OPSTIME_FIELD_NUMBER: _ClassVar[int]
    counter: int
    desiredState: bool
    opsTime: str
    def __init__(self, counter: _Optional[int] = ..., desiredState: _Optional[bool] = ..., opsTime: _Optional[str] = ...) -> None: ...

class InstanceOpsCmd(_message.Message):
    __slots__ = ("counter", "opsTime")
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    OPSTIME_FIELD_NUMBER: _ClassVar[int]
    counter: int
    opsTime: str
    def __init__(self, counter: _Optional[int] = ..., opsTime: _Optional[str] = ...) -> None: ...

class DatastoreConfig(_message.Message):
    __slots__ = ("id", "dType", "fqdn", "dpath", "dsCertPEM")
    ID_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    FQDN_FIELD_NUMBER: _ClassVar[int]
    DPATH_FIELD_NUMBER: _ClassVar[int]
    DSCERTPEM_FIELD_NUMBER: _ClassVar[int]
    id: str
    dType: DsType
    fqdn: str
    dpath: str
    dsCertPEM: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, id: _Optional[str] = ..., dType: _Optional[_Union[DsType, str]] = ..., fqdn: _Optional[str] = ..., dpath: _Optional[str] = ..., dsCertPEM: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ContentTree(_message.Message):
    __slots__ = ("uuid", "dsId", "URL", "sha256", "maxSizeBytes", "displayName")
    UUID_FIELD_NUMBER: _ClassVar[int]
    DSID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MAXSIZEBYTES_FIELD_NUMBER: _ClassVar[int]
    DISPLAYNAME_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    dsId: str
    URL: str
    sha256: str
    maxSizeBytes: int
    displayName: str
    def __init__(self, uuid: _Optional[str] = ..., dsId: _Optional[str] = ..., URL: _Optional[str] = ..., sha256: _Optional[str] = ..., maxSizeBytes: _Optional[int] = ..., displayName: _Optional[str] = ...) -> None: ...

class BaseOS(_message.Message):
    __slots__ = ("content_tree_uuid", "retry_update", "activate", "base_os_version")
    CONTENT_TREE_UUID_FIELD_NUMBER: _ClassVar[int]
    RETRY_UPDATE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_FIELD_NUMBER: _ClassVar[int]
    BASE_OS_VERSION_FIELD_NUMBER: _ClassVar[int]
    content_tree_uuid: str
    retry_update: DeviceOpsCmd
    activate: bool
    base_os_version: str
    def __init__(self, content_tree_uuid: _Optional[str] = ..., retry_update: _Optional[_Union[DeviceOpsCmd, _Mapping]] = ..., activate: _Optional[bool] = ..., base_os_version: _Optional[str] = ...) -> None: ...

class VmConfig(_message.Message):
    __slots__ = ("memory", "maxmem", "vcpus", "virtualizationMode")
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    MAXMEM_FIELD_NUMBER: _ClassVar[int]
    VCPUS_FIELD_NUMBER: _ClassVar[int]
    VIRTUALIZATIONMODE_FIELD_NUMBER: _ClassVar[int]
    memory: int
    maxmem: int
    vcpus: int
    virtualizationMode: VmMode
    def __init__(self, memory: _Optional[int] = ..., maxmem: _Optional[int] = ..., vcpus: _Optional[int] = ..., virtualizationMode: _Optional[_Union[VmMode, str]] = ...) -> None: ...

class VolumeRef(_message.Message):
    __slots__ = ("uuid", "generationCount")
    UUID_FIELD_NUMBER: _ClassVar[int]
    GENERATIONCOUNT_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    generationCount: int
    def __init__(self, uuid: _Optional[str] = ..., generationCount: _Optional[int] = ...) -> None: ...

class AppInstanceConfig(_message.Message):
    __slots__ = ("uuidandversion", "displayname", "fixedresources", "activate", "restart", "purge", "volumeRefList", "start_delay_in_seconds")
    UUIDANDVERSION_FIELD_NUMBER: _ClassVar[int]
    DISPLAYNAME_FIELD_NUMBER: _ClassVar[int]
    FIXEDRESOURCES_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    PURGE_FIELD_NUMBER: _ClassVar[int]
    VOLUMEREFLIST_FIELD_NUMBER: _ClassVar[int]
    START_DELAY_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    uuidandversion: UUIDandVersion
    displayname: str
    fixedresources: VmConfig
    activate: bool
    restart: InstanceOpsCmd
    purge: InstanceOpsCmd
    volumeRefList: _containers.RepeatedCompositeFieldContainer[VolumeRef]
    start_delay_in_seconds: int
    def __init__(self, uuidandversion: _Optional[_Union[UUIDandVersion, _Mapping]] = ..., displayname: _Optional[str] = ..., fixedresources: _Optional[_Union[VmConfig, _Mapping]] = ..., activate: _Optional[bool] = ..., restart: _Optional[_Union[InstanceOpsCmd, _Mapping]] = ..., purge: _Optional[_Union[InstanceOpsCmd, _Mapping]] = ..., volumeRefList: _Optional[_Iterable[_Union[VolumeRef, _Mapping]]] = ..., start_delay_in_seconds: _Optional[int] = ...) -> None: ...

class EdgeDevConfig(_message.Message):
    __slots__ = ("id", "apps", "datastores", "reboot", "configItems", "contentInfo", "controllercert_confighash", "maintenance_mode", "controller_epoch", "baseos", "shutdown", "device_name", "config_timestamp")
    ID_FIELD_NUMBER: _ClassVar[int]
    APPS_FIELD_NUMBER: _ClassVar[int]
    DATASTORES_FIELD_NUMBER: _ClassVar[int]
    REBOOT_FIELD_NUMBER: _ClassVar[int]
    CONFIGITEMS_FIELD_NUMBER: _ClassVar[int]
    CONTENTINFO_FIELD_NUMBER: _ClassVar[int]
    CONTROLLERCERT_CONFIGHASH_FIELD_NUMBER: _ClassVar[int]
    MAINTENANCE_MODE_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    BASEOS_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    id: UUIDandVersion
    apps: _containers.RepeatedCompositeFieldContainer[AppInstanceConfig]
    datastores: _containers.RepeatedCompositeFieldContainer[DatastoreConfig]
    reboot: DeviceOpsCmd
    configItems: _containers.RepeatedCompositeFieldContainer[ConfigItem]
    contentInfo: _containers.RepeatedCompositeFieldContainer[ContentTree]
    controllercert_confighash: str
    maintenance_mode: bool
    controller_epoch: int
    baseos: BaseOS
    shutdown: DeviceOpsCmd
    device_name: str
    config_timestamp: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[_Union[UUIDandVersion, _Mapping]] = ..., apps: _Optional[_Iterable[_Union[AppInstanceConfig, _Mapping]]] = ..., datastores: _Optional[_Iterable[_Union[DatastoreConfig, _Mapping]]] = ..., reboot: _Optional[_Union[DeviceOpsCmd, _Mapping]] = ..., configItems: _Optional[_Iterable[_Union[ConfigItem, _Mapping]]] = ..., contentInfo: _Optional[_Iterable[_Union[ContentTree, _Mapping]]] = ..., controllercert_confighash: _Optional[str] = ..., maintenance_mode: _Optional[bool] = ..., controller_epoch: _Optional[int] = ..., baseos: _Optional[_Union[BaseOS, _Mapping]] = ..., shutdown: _Optional[_Union[DeviceOpsCmd, _Mapping]] = ..., device_name: _Optional[str] = ..., config_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConfigRequest(_message.Message):
    __slots__ = ("configHash", "integrity_token")
    CONFIGHASH_FIELD_NUMBER: _ClassVar[int]
    INTEGRITY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    configHash: str
    integrity_token: bytes
    def __init__(self, configHash: _Optional[str] = ..., integrity_token: _Optional[bytes] = ...) -> None: ...

class ConfigResponse(_message.Message):
    __slots__ = ("config", "configHash")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CONFIGHASH_FIELD_NUMBER: _ClassVar[int]
    config: EdgeDevConfig
    configHash: str
    def __init__(self, config: _Optional[_Union[EdgeDevConfig, _Mapping]] = ..., configHash: _Optional[str] = ...) -> None: ...
