from protos.vecshard.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErasureRequest(_message.Message):
    __slots__ = ("subject", "job_id", "why", "source_version")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    subject: _common_pb2.EntityKey
    job_id: str
    why: str
    source_version: int
    def __init__(self, subject: _Optional[_Union[_common_pb2.EntityKey, _Mapping]] = ..., job_id: _Optional[str] = ..., why: _Optional[str] = ..., source_version: _Optional[int] = ...) -> None: ...

class EmbeddingCopy(_message.Message):
    __slots__ = ("embedding_name", "embedding_version", "index_name", "index_version", "vector", "source_version")
    EMBEDDING_NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    embedding_name: str
    embedding_version: str
    index_name: str
    index_version: str
    vector: bytes
    source_version: int
    def __init__(self, embedding_name: _Optional[str] = ..., embedding_version: _Optional[str] = ..., index_name: _Optional[str] = ..., index_version: _Optional[str] = ..., vector: _Optional[bytes] = ..., source_version: _Optional[int] = ...) -> None: ...

class ErasurePlan(_message.Message):
    __slots__ = ("copies", "embedding_versions", "index_versions", "feature_groups", "max_source_version")
    COPIES_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    MAX_SOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    copies: _containers.RepeatedCompositeFieldContainer[EmbeddingCopy]
    embedding_versions: _containers.RepeatedScalarFieldContainer[str]
    index_versions: _containers.RepeatedScalarFieldContainer[str]
    feature_groups: _containers.RepeatedScalarFieldContainer[str]
    max_source_version: int
    def __init__(self, copies: _Optional[_Iterable[_Union[EmbeddingCopy, _Mapping]]] = ..., embedding_versions: _Optional[_Iterable[str]] = ..., index_versions: _Optional[_Iterable[str]] = ..., feature_groups: _Optional[_Iterable[str]] = ..., max_source_version: _Optional[int] = ...) -> None: ...

class EraseResponse(_message.Message):
    __slots__ = ("source_version", "records_deleted", "feature_rows_deleted", "index_versions")
    SOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORDS_DELETED_FIELD_NUMBER: _ClassVar[int]
    FEATURE_ROWS_DELETED_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    source_version: int
    records_deleted: int
    feature_rows_deleted: int
    index_versions: int
    def __init__(self, source_version: _Optional[int] = ..., records_deleted: _Optional[int] = ..., feature_rows_deleted: _Optional[int] = ..., index_versions: _Optional[int] = ...) -> None: ...

class PurgeResponse(_message.Message):
    __slots__ = ("shards", "index_partitions_compacted")
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    INDEX_PARTITIONS_COMPACTED_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedScalarFieldContainer[str]
    index_partitions_compacted: int
    def __init__(self, shards: _Optional[_Iterable[str]] = ..., index_partitions_compacted: _Optional[int] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("erasure", "copies", "scan_files", "offline_rows_removed", "offline_matches")
    ERASURE_FIELD_NUMBER: _ClassVar[int]
    COPIES_FIELD_NUMBER: _ClassVar[int]
    SCAN_FILES_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_ROWS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_MATCHES_FIELD_NUMBER: _ClassVar[int]
    erasure: ErasureRequest
    copies: _containers.RepeatedCompositeFieldContainer[EmbeddingCopy]
    scan_files: bool
    offline_rows_removed: int
    offline_matches: int
    def __init__(self, erasure: _Optional[_Union[ErasureRequest, _Mapping]] = ..., copies: _Optional[_Iterable[_Union[EmbeddingCopy, _Mapping]]] = ..., scan_files: _Optional[bool] = ..., offline_rows_removed: _Optional[int] = ..., offline_matches: _Optional[int] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("where", "what")
    WHERE_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    where: str
    what: str
    def __init__(self, where: _Optional[str] = ..., what: _Optional[str] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("searches", "search_matches", "lookups", "lookup_matches", "feature_reads", "feature_matches", "files_scanned", "file_matches", "markers", "findings")
    SEARCHES_FIELD_NUMBER: _ClassVar[int]
    SEARCH_MATCHES_FIELD_NUMBER: _ClassVar[int]
    LOOKUPS_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_MATCHES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_READS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_MATCHES_FIELD_NUMBER: _ClassVar[int]
    FILES_SCANNED_FIELD_NUMBER: _ClassVar[int]
    FILE_MATCHES_FIELD_NUMBER: _ClassVar[int]
    MARKERS_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    searches: int
    search_matches: int
    lookups: int
    lookup_matches: int
    feature_reads: int
    feature_matches: int
    files_scanned: int
    file_matches: int
    markers: int
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    def __init__(self, searches: _Optional[int] = ..., search_matches: _Optional[int] = ..., lookups: _Optional[int] = ..., lookup_matches: _Optional[int] = ..., feature_reads: _Optional[int] = ..., feature_matches: _Optional[int] = ..., files_scanned: _Optional[int] = ..., file_matches: _Optional[int] = ..., markers: _Optional[int] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ...) -> None: ...
