from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DigestRequest(_message.Message):
    __slots__ = ("index_name", "index_version", "group_name", "group_version", "buckets")
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    index_name: str
    index_version: str
    group_name: str
    group_version: str
    buckets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, index_name: _Optional[str] = ..., index_version: _Optional[str] = ..., group_name: _Optional[str] = ..., group_version: _Optional[str] = ..., buckets: _Optional[_Iterable[int]] = ...) -> None: ...

class BucketDigest(_message.Message):
    __slots__ = ("bucket", "digest", "rows")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    bucket: int
    digest: int
    rows: int
    def __init__(self, bucket: _Optional[int] = ..., digest: _Optional[int] = ..., rows: _Optional[int] = ...) -> None: ...

class DigestResponse(_message.Message):
    __slots__ = ("buckets",)
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[BucketDigest]
    def __init__(self, buckets: _Optional[_Iterable[_Union[BucketDigest, _Mapping]]] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("index_name", "index_version", "buckets")
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    index_name: str
    index_version: str
    buckets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, index_name: _Optional[str] = ..., index_version: _Optional[str] = ..., buckets: _Optional[_Iterable[int]] = ...) -> None: ...

class FeatureExportRequest(_message.Message):
    __slots__ = ("group_name", "group_version", "buckets")
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    group_name: str
    group_version: str
    buckets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, group_name: _Optional[str] = ..., group_version: _Optional[str] = ..., buckets: _Optional[_Iterable[int]] = ...) -> None: ...

class RawEntry(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class Tombstone(_message.Message):
    __slots__ = ("key", "source_version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    source_version: int
    def __init__(self, key: _Optional[bytes] = ..., source_version: _Optional[int] = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("records", "tombstones", "erasures")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONES_FIELD_NUMBER: _ClassVar[int]
    ERASURES_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[RawEntry]
    tombstones: _containers.RepeatedCompositeFieldContainer[Tombstone]
    erasures: _containers.RepeatedCompositeFieldContainer[ErasureMarker]
    def __init__(self, records: _Optional[_Iterable[_Union[RawEntry, _Mapping]]] = ..., tombstones: _Optional[_Iterable[_Union[Tombstone, _Mapping]]] = ..., erasures: _Optional[_Iterable[_Union[ErasureMarker, _Mapping]]] = ...) -> None: ...

class ErasureMarker(_message.Message):
    __slots__ = ("key", "erased_at_us")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ERASED_AT_US_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    erased_at_us: int
    def __init__(self, key: _Optional[bytes] = ..., erased_at_us: _Optional[int] = ...) -> None: ...
