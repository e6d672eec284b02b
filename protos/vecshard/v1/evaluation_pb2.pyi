from protos.vecshard.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchIndexRequest(_message.Message):
    __slots__ = ("access", "index_name", "index_version", "vectors", "dimension", "k")
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    access: _common_pb2.AccessContext
    index_name: str
    index_version: str
    vectors: bytes
    dimension: int
    k: int
    def __init__(self, access: _Optional[_Union[_common_pb2.AccessContext, _Mapping]] = ..., index_name: _Optional[str] = ..., index_version: _Optional[str] = ..., vectors: _Optional[bytes] = ..., dimension: _Optional[int] = ..., k: _Optional[int] = ...) -> None: ...

class IndexHits(_message.Message):
    __slots__ = ("entity_ids", "scores")
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, entity_ids: _Optional[_Iterable[str]] = ..., scores: _Optional[_Iterable[float]] = ...) -> None: ...

class SearchIndexResponse(_message.Message):
    __slots__ = ("results", "partial")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[IndexHits]
    partial: bool
    def __init__(self, results: _Optional[_Iterable[_Union[IndexHits, _Mapping]]] = ..., partial: _Optional[bool] = ...) -> None: ...

class CheckRecallRequest(_message.Message):
    __slots__ = ("index_name", "index_version", "k", "sample_per_shard", "seed")
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_PER_SHARD_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    index_name: str
    index_version: str
    k: int
    sample_per_shard: int
    seed: int
    def __init__(self, index_name: _Optional[str] = ..., index_version: _Optional[str] = ..., k: _Optional[int] = ..., sample_per_shard: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class ShardRecall(_message.Message):
    __slots__ = ("shard_id", "queries", "recall", "recall_by_kind", "rows_by_kind", "rows", "queries_by_kind")
    class RecallByKindEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class RowsByKindEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class QueriesByKindEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    RECALL_BY_KIND_FIELD_NUMBER: _ClassVar[int]
    ROWS_BY_KIND_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    QUERIES_BY_KIND_FIELD_NUMBER: _ClassVar[int]
    shard_id: str
    queries: int
    recall: float
    recall_by_kind: _containers.ScalarMap[str, float]
    rows_by_kind: _containers.ScalarMap[str, int]
    rows: int
    queries_by_kind: _containers.ScalarMap[str, int]
    def __init__(self, shard_id: _Optional[str] = ..., queries: _Optional[int] = ..., recall: _Optional[float] = ..., recall_by_kind: _Optional[_Mapping[str, float]] = ..., rows_by_kind: _Optional[_Mapping[str, int]] = ..., rows: _Optional[int] = ..., queries_by_kind: _Optional[_Mapping[str, int]] = ...) -> None: ...

class CheckRecallResponse(_message.Message):
    __slots__ = ("shards",)
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedCompositeFieldContainer[ShardRecall]
    def __init__(self, shards: _Optional[_Iterable[_Union[ShardRecall, _Mapping]]] = ...) -> None: ...

class LookupIndexRequest(_message.Message):
    __slots__ = ("access", "index_name", "index_version", "entity_ids", "include_vectors")
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    access: _common_pb2.AccessContext
    index_name: str
    index_version: str
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    include_vectors: bool
    def __init__(self, access: _Optional[_Union[_common_pb2.AccessContext, _Mapping]] = ..., index_name: _Optional[str] = ..., index_version: _Optional[str] = ..., entity_ids: _Optional[_Iterable[str]] = ..., include_vectors: _Optional[bool] = ...) -> None: ...

class LookupIndexResponse(_message.Message):
    __slots__ = ("columns",)
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    columns: _common_pb2.EmbeddingColumns
    def __init__(self, columns: _Optional[_Union[_common_pb2.EmbeddingColumns, _Mapping]] = ...) -> None: ...
