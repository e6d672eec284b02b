from protos.vecshard.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExportRequest(_message.Message):
    __slots__ = ("index_name", "index_version", "buckets")
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    index_name: str
    index_version: str
    buckets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, index_name: _Optional[str] = ..., index_version: _Optional[str] = ..., buckets: _Optional[_Iterable[int]] = ...) -> None: ...

class Tombstone(_message.Message):
    __slots__ = ("key", "source_version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    key: _common_pb2.EntityKey
    source_version: int
    def __init__(self, key: _Optional[_Union[_common_pb2.EntityKey, _Mapping]] = ..., source_version: _Optional[int] = ...) -> None: ...

class ExportedRecord(_message.Message):
    __slots__ = ("record", "bucket")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    record: _common_pb2.EmbeddingRecord
    bucket: int
    def __init__(self, record: _Optional[_Union[_common_pb2.EmbeddingRecord, _Mapping]] = ..., bucket: _Optional[int] = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("records", "tombstones")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONES_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[ExportedRecord]
    tombstones: _containers.RepeatedCompositeFieldContainer[Tombstone]
    def __init__(self, records: _Optional[_Iterable[_Union[ExportedRecord, _Mapping]]] = ..., tombstones: _Optional[_Iterable[_Union[Tombstone, _Mapping]]] = ...) -> None: ...
