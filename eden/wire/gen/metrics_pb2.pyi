import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class zedcloudMetric(_message.Message):
    __slots__ = ("ifName", "failures", "success", "lastFailure", "lastSuccess")
    IFNAME_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    LASTFAILURE_FIELD_NUMBER: _ClassVar[int]
    LASTSUCCESS_FIELD_NUMBER: _ClassVar[int]
    ifName: str
    failures: int
    success: int
    lastFailure: _timestamp_pb2.Timestamp
    lastSuccess: _timestamp_pb2.Timestamp
    def __init__(self, ifName: _Optional[str] = ..., failures: _Optional[int] = ..., success: _Optional[int] = ..., lastFailure: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lastSuccess: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class deviceMetric(_message.Message):
    __slots__ = ("zedcloud", "last_received_config", "last_processed_config", "dormant_time_in_seconds")
    ZEDCLOUD_FIELD_NUMBER: _ClassVar[int]
    LAST_RECEIVED_CONFIG_FIELD_NUMBER: _ClassVar[int]
    LAST_PROCESSED_CONFIG_FIELD_NUMBER: _ClassVar[int]
    DORMANT_TIME_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    zedcloud: _containers.RepeatedCompositeFieldContainer[zedcloudMetric]
    last_received_config: _timestamp_pb2.Timestamp
    last_processed_config: _timestamp_pb2.Timestamp
    dormant_time_in_seconds: int
    def __init__(self, zedcloud: _Optional[_Iterable[_Union[zedcloudMetric, _Mapping]]] = ..., last_received_config: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_processed_config: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dormant_time_in_seconds: _Optional[int] = ...) -> None: ...

class ZMetricMsg(_message.Message):
    __slots__ = ("devID", "atTimeStamp", "dm")
    DEVID_FIELD_NUMBER: _ClassVar[int]
    ATTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    DM_FIELD_NUMBER: _ClassVar[int]
    devID: str
    atTimeStamp: _timestamp_pb2.Timestamp
    dm: deviceMetric
    def __init__(self, devID: _Optional[str] = ..., atTimeStamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dm: _Optional[_Union[deviceMetric, _Mapping]] = ...) -> None: ...
