from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class UuidRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UuidResponse(_message.Message):
    __slots__ = ("uuid", "manufacturer", "product_name")
    UUID_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_NAME_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    manufacturer: str
    product_name: str
    def __init__(self, uuid: _Optional[str] = ..., manufacturer: _Optional[str] = ..., product_name: _Optional[str] = ...) -> None: ...
