from protos.vecshard.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeleteFeatureRowsRequest(_message.Message):
    __slots__ = ("entities", "erased_at_us")
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    ERASED_AT_US_FIELD_NUMBER: _ClassVar[int]
    entities: _containers.RepeatedCompositeFieldContainer[_common_pb2.EntityKey]
    erased_at_us: int
    def __init__(self, entities: _Optional[_Iterable[_Union[_common_pb2.EntityKey, _Mapping]]] = ..., erased_at_us: _Optional[int] = ...) -> None: ...

class DeleteFeatureRowsResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class PurgeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PurgeAck(_message.Message):
    __slots__ = ("partitions",)
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    partitions: int
    def __init__(self, partitions: _Optional[int] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("data_patterns", "key_pattern")
    DATA_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    KEY_PATTERN_FIELD_NUMBER: _ClassVar[int]
    data_patterns: _containers.RepeatedScalarFieldContainer[bytes]
    key_pattern: bytes
    def __init__(self, data_patterns: _Optional[_Iterable[bytes]] = ..., key_pattern: _Optional[bytes] = ...) -> None: ...

class FileMatch(_message.Message):
    __slots__ = ("file", "kind", "pattern")
    FILE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    file: str
    kind: str
    pattern: int
    def __init__(self, file: _Optional[str] = ..., kind: _Optional[str] = ..., pattern: _Optional[int] = ...) -> None: ...

class ScanResponse(_message.Message):
    __slots__ = ("files", "matches")
    FILES_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    files: int
    matches: _containers.RepeatedCompositeFieldContainer[FileMatch]
    def __init__(self, files: _Optional[int] = ..., matches: _Optional[_Iterable[_Union[FileMatch, _Mapping]]] = ...) -> None: ...
