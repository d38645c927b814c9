from eden.wire.gen import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ZCertType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CERT_TYPE_NONE: _ClassVar[ZCertType]
    CERT_TYPE_CONTROLLER_SIGNING: _ClassVar[ZCertType]
    CERT_TYPE_CONTROLLER_INTERMEDIATE: _ClassVar[ZCertType]
    CERT_TYPE_CONTROLLER_ECDH_EXCHANGE: _ClassVar[ZCertType]
    CERT_TYPE_DEVICE_ONBOARDING: _ClassVar[ZCertType]
    CERT_TYPE_DEVICE_RESTRICTED_SIGNING: _ClassVar[ZCertType]
    CERT_TYPE_DEVICE_ENDORSEMENT: _ClassVar[ZCertType]
    CERT_TYPE_DEVICE_ECDH_EXCHANGE: _ClassVar[ZCertType]

class ZCertMetaDataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Z_CERT_META_DATA_TYPE_INVALID: _ClassVar[ZCertMetaDataType]
    Z_CERT_META_DATA_TYPE_TPM2_PUBLIC: _ClassVar[ZCertMetaDataType]
CERT_TYPE_NONE: ZCertType
CERT_TYPE_CONTROLLER_SIGNING: ZCertType
CERT_TYPE_CONTROLLER_INTERMEDIATE: ZCertType
CERT_TYPE_CONTROLLER_ECDH_EXCHANGE: ZCertType
CERT_TYPE_DEVICE_ONBOARDING: ZCertType
CERT_TYPE_DEVICE_RESTRICTED_SIGNING: ZCertType
CERT_TYPE_DEVICE_ENDORSEMENT: ZCertType
CERT_TYPE_DEVICE_ECDH_EXCHANGE: ZCertType
Z_CERT_META_DATA_TYPE_INVALID: ZCertMetaDataType
Z_CERT_META_DATA_TYPE_TPM2_PUBLIC: ZCertMetaDataType

class ZCertMetaData(_message.Message):
    __slots__ = ("type", "meta_data")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    META_DATA_FIELD_NUMBER: _ClassVar[int]
    type: ZCertMetaDataType
    meta_data: bytes
    def __init__(self, type: _Optional[_Union[ZCertMetaDataType, str]] = ..., meta_data: _Optional[bytes] = ...) -> None: ...

class ZCertAttr(_message.Message):
    __slots__ = ("is_mutable", "is_tpm")
    IS_MUTABLE_FIELD_NUMBER: _ClassVar[int]
    IS_TPM_FIELD_NUMBER: _ClassVar[int]
    is_mutable: bool
    is_tpm: bool
    def __init__(self, is_mutable: _Optional[bool] = ..., is_tpm: _Optional[bool] = ...) -> None: ...

class ZCert(_message.Message):
    __slots__ = ("hashAlgo", "certHash", "type", "cert", "attributes", "meta_data_items")
    HASHALGO_FIELD_NUMBER: _ClassVar[int]
    CERTHASH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CERT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    META_DATA_ITEMS_FIELD_NUMBER: _ClassVar[int]
    hashAlgo: _common_pb2.HashAlgorithm
    certHash: bytes
    type: ZCertType
    cert: bytes
    attributes: ZCertAttr
    meta_data_items: _containers.RepeatedCompositeFieldContainer[ZCertMetaData]
    def __init__(self, hashAlgo: _Optional[_Union[_common_pb2.HashAlgorithm, str]] = ..., certHash: _Optional[bytes] = ..., type: _Optional[_Union[ZCertType, str]] = ..., cert: _Optional[bytes] = ..., attributes: _Optional[_Union[ZCertAttr, _Mapping]] = ..., meta_data_items: _Optional[_Iterable[_Union[ZCertMetaData, _Mapping]]] = ...) -> None: ...

class ZControllerCert(_message.Message):
    __slots__ = ("certs",)
    CERTS_FIELD_NUMBER: _ClassVar[int]
    certs: _containers.RepeatedCompositeFieldContainer[ZCert]
    def __init__(self, certs: _Optional[_Iterable[_Union[ZCert, _Mapping]]] = ...) -> None: ...
