from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class HashAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HASH_NONE: _ClassVar[HashAlgorithm]
    HASH_SHA256_16BYTES: _ClassVar[HashAlgorithm]
    HASH_SHA256_32BYTES: _ClassVar[HashAlgorithm]
HASH_NONE: HashAlgorithm
HASH_SHA256_16BYTES: HashAlgorithm
HASH_SHA256_32BYTES: HashAlgorithm
