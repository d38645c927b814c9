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
    CERT_TYPE_DEVICE_RESTRICTED_SIGNING: _ClassVar[ZCertType]
    CERT_TYPE_DEVICE_ENDORSEMENT: _ClassVar[ZCertType]
CERT_TYPE_NONE: ZCertType
CERT_TYPE_CONTROLLER_SIGNING: ZCertType
CERT_TYPE_CONTROLLER_INTERMEDIATE: ZCertType
CERT_TYPE_DEVICE_RESTRICTED_SIGNING: ZCertType
CERT_TYPE_DEVICE_ENDORSEMENT: ZCertType

class ZCert(_message.Message):
    __slots__ = ("type", "cert")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CERT_FIELD_NUMBER: _ClassVar[int]
    type: ZCertType
    cert: bytes
    def __init__(self, type: _Optional[_Union[ZCertType, str]] = ..., cert: _Optional[bytes] = ...) -> None: ...

class ZControllerCert(_message.Message):
    __slots__ = ("certs",)
    CERTS_FIELD_NUMBER: _ClassVar[int]
    certs: _containers.RepeatedCompositeFieldContainer[ZCert]
    def __init__(self, certs: _Optional[_Iterable[_Union[ZCert, _Mapping]]] = ...) -> None: ...
