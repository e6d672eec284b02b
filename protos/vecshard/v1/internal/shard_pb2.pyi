from protos.vecshard.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IndexRef(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class BucketedRecord(_message.Message):
    __slots__ = ("record", "bucket")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    record: _common_pb2.EmbeddingRecord
    bucket: int
    def __init__(self, record: _Optional[_Union[_common_pb2.EmbeddingRecord, _Mapping]] = ..., bucket: _Optional[int] = ...) -> None: ...

class UpsertBatch(_message.Message):
    __slots__ = ("index", "records", "writer")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    WRITER_FIELD_NUMBER: _ClassVar[int]
    index: IndexRef
    records: _containers.RepeatedCompositeFieldContainer[BucketedRecord]
    writer: str
    def __init__(self, index: _Optional[_Union[IndexRef, _Mapping]] = ..., records: _Optional[_Iterable[_Union[BucketedRecord, _Mapping]]] = ..., writer: _Optional[str] = ...) -> None: ...

class UpsertColumnsBatch(_message.Message):
    __slots__ = ("index", "writer", "tenant_id", "records", "buckets")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    WRITER_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    index: IndexRef
    writer: str
    tenant_id: str
    records: _common_pb2.RecordColumns
    buckets: bytes
    def __init__(self, index: _Optional[_Union[IndexRef, _Mapping]] = ..., writer: _Optional[str] = ..., tenant_id: _Optional[str] = ..., records: _Optional[_Union[_common_pb2.RecordColumns, _Mapping]] = ..., buckets: _Optional[bytes] = ...) -> None: ...

class UpsertAck(_message.Message):
    __slots__ = ("written", "ignored_stale", "sequence")
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    IGNORED_STALE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    written: int
    ignored_stale: int
    sequence: int
    def __init__(self, written: _Optional[int] = ..., ignored_stale: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("index", "keys", "source_version")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    index: IndexRef
    keys: _containers.RepeatedCompositeFieldContainer[_common_pb2.EntityKey]
    source_version: int
    def __init__(self, index: _Optional[_Union[IndexRef, _Mapping]] = ..., keys: _Optional[_Iterable[_Union[_common_pb2.EntityKey, _Mapping]]] = ..., source_version: _Optional[int] = ...) -> None: ...

class DeleteAck(_message.Message):
    __slots__ = ("deleted", "sequence")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    sequence: int
    def __init__(self, deleted: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class Query(_message.Message):
    __slots__ = ("vector", "k", "filter", "tenant_id", "ef_search", "nprobe", "refine_factor", "exact", "skip_rerank", "has_after", "after_score", "after_key", "max_sequence", "served", "pinned")
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    REFINE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    SKIP_RERANK_FIELD_NUMBER: _ClassVar[int]
    HAS_AFTER_FIELD_NUMBER: _ClassVar[int]
    AFTER_SCORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_KEY_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SERVED_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    vector: bytes
    k: int
    filter: _common_pb2.Filter
    tenant_id: str
    ef_search: int
    nprobe: int
    refine_factor: int
    exact: bool
    skip_rerank: bool
    has_after: bool
    after_score: float
    after_key: _common_pb2.EntityKey
    max_sequence: int
    served: int
    pinned: bool
    def __init__(self, vector: _Optional[bytes] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., tenant_id: _Optional[str] = ..., ef_search: _Optional[int] = ..., nprobe: _Optional[int] = ..., refine_factor: _Optional[int] = ..., exact: _Optional[bool] = ..., skip_rerank: _Optional[bool] = ..., has_after: _Optional[bool] = ..., after_score: _Optional[float] = ..., after_key: _Optional[_Union[_common_pb2.EntityKey, _Mapping]] = ..., max_sequence: _Optional[int] = ..., served: _Optional[int] = ..., pinned: _Optional[bool] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("index", "queries")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    index: IndexRef
    queries: _containers.RepeatedCompositeFieldContainer[Query]
    def __init__(self, index: _Optional[_Union[IndexRef, _Mapping]] = ..., queries: _Optional[_Iterable[_Union[Query, _Mapping]]] = ...) -> None: ...

class ShardHit(_message.Message):
    __slots__ = ("key", "score", "bucket")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    key: _common_pb2.EntityKey
    score: float
    bucket: int
    def __init__(self, key: _Optional[_Union[_common_pb2.EntityKey, _Mapping]] = ..., score: _Optional[float] = ..., bucket: _Optional[int] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("hits", "candidates", "approximate", "plans", "sequence", "reference_scores")
    class PlansEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    HITS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    APPROXIMATE_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_SCORES_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[ShardHit]
    candidates: int
    approximate: bool
    plans: _containers.ScalarMap[str, int]
    sequence: int
    reference_scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, hits: _Optional[_Iterable[_Union[ShardHit, _Mapping]]] = ..., candidates: _Optional[int] = ..., approximate: _Optional[bool] = ..., plans: _Optional[_Mapping[str, int]] = ..., sequence: _Optional[int] = ..., reference_scores: _Optional[_Iterable[float]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results", "shard_id")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryResult]
    shard_id: str
    def __init__(self, results: _Optional[_Iterable[_Union[QueryResult, _Mapping]]] = ..., shard_id: _Optional[str] = ...) -> None: ...

class PackedSearchRequest(_message.Message):
    __slots__ = ("index", "vectors", "dimension", "queries", "accepts_refusals")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_REFUSALS_FIELD_NUMBER: _ClassVar[int]
    index: IndexRef
    vectors: bytes
    dimension: int
    queries: _containers.RepeatedCompositeFieldContainer[Query]
    accepts_refusals: bool
    def __init__(self, index: _Optional[_Union[IndexRef, _Mapping]] = ..., vectors: _Optional[bytes] = ..., dimension: _Optional[int] = ..., queries: _Optional[_Iterable[_Union[Query, _Mapping]]] = ..., accepts_refusals: _Optional[bool] = ...) -> None: ...

class PackedSearchResponse(_message.Message):
    __slots__ = ("shard_id", "sequence", "counts", "candidates", "approximate", "scores", "entity_ids", "id_ends", "buckets", "entity_types", "type_codes", "reference_counts", "reference_scores", "refused")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    APPROXIMATE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    ID_ENDS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPES_FIELD_NUMBER: _ClassVar[int]
    TYPE_CODES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_SCORES_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    shard_id: str
    sequence: int
    counts: _containers.RepeatedScalarFieldContainer[int]
    candidates: _containers.RepeatedScalarFieldContainer[int]
    approximate: _containers.RepeatedScalarFieldContainer[bool]
    scores: bytes
    entity_ids: bytes
    id_ends: bytes
    buckets: bytes
    entity_types: _containers.RepeatedScalarFieldContainer[str]
    type_codes: bytes
    reference_counts: _containers.RepeatedScalarFieldContainer[int]
    reference_scores: bytes
    refused: _containers.RepeatedCompositeFieldContainer[QueryRefusal]
    def __init__(self, shard_id: _Optional[str] = ..., sequence: _Optional[int] = ..., counts: _Optional[_Iterable[int]] = ..., candidates: _Optional[_Iterable[int]] = ..., approximate: _Optional[_Iterable[bool]] = ..., scores: _Optional[bytes] = ..., entity_ids: _Optional[bytes] = ..., id_ends: _Optional[bytes] = ..., buckets: _Optional[bytes] = ..., entity_types: _Optional[_Iterable[str]] = ..., type_codes: _Optional[bytes] = ..., reference_counts: _Optional[_Iterable[int]] = ..., reference_scores: _Optional[bytes] = ..., refused: _Optional[_Iterable[_Union[QueryRefusal, _Mapping]]] = ...) -> None: ...

class QueryRefusal(_message.Message):
    __slots__ = ("query", "message")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    query: int
    message: str
    def __init__(self, query: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class BatchGetRequest(_message.Message):
    __slots__ = ("index", "keys", "include_vectors", "columnar", "tenant_id", "entity_type", "entity_ids", "include_attributes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    COLUMNAR_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    index: IndexRef
    keys: _containers.RepeatedCompositeFieldContainer[_common_pb2.EntityKey]
    include_vectors: bool
    columnar: bool
    tenant_id: str
    entity_type: str
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    include_attributes: bool
    def __init__(self, index: _Optional[_Union[IndexRef, _Mapping]] = ..., keys: _Optional[_Iterable[_Union[_common_pb2.EntityKey, _Mapping]]] = ..., include_vectors: _Optional[bool] = ..., columnar: _Optional[bool] = ..., tenant_id: _Optional[str] = ..., entity_type: _Optional[str] = ..., entity_ids: _Optional[_Iterable[str]] = ..., include_attributes: _Optional[bool] = ...) -> None: ...

class BatchGetResponse(_message.Message):
    __slots__ = ("records", "columns")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[_common_pb2.EmbeddingLookup]
    columns: _common_pb2.EmbeddingColumns
    def __init__(self, records: _Optional[_Iterable[_Union[_common_pb2.EmbeddingLookup, _Mapping]]] = ..., columns: _Optional[_Union[_common_pb2.EmbeddingColumns, _Mapping]] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ("include_summaries", "summary_lease_seconds", "holder")
    INCLUDE_SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    include_summaries: bool
    summary_lease_seconds: float
    holder: str
    def __init__(self, include_summaries: _Optional[bool] = ..., summary_lease_seconds: _Optional[float] = ..., holder: _Optional[str] = ...) -> None: ...

class SegmentSummary(_message.Message):
    __slots__ = ("segment_id", "kind", "state", "rows", "deleted_rows", "size_bytes", "centroids", "radii")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DELETED_ROWS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CENTROIDS_FIELD_NUMBER: _ClassVar[int]
    RADII_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    kind: str
    state: str
    rows: int
    deleted_rows: int
    size_bytes: int
    centroids: bytes
    radii: bytes
    def __init__(self, segment_id: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[str] = ..., rows: _Optional[int] = ..., deleted_rows: _Optional[int] = ..., size_bytes: _Optional[int] = ..., centroids: _Optional[bytes] = ..., radii: _Optional[bytes] = ...) -> None: ...

class AttributeRange(_message.Message):
    __slots__ = ("attribute", "min", "max", "rows")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    min: float
    max: float
    rows: int
    def __init__(self, attribute: _Optional[str] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., rows: _Optional[int] = ...) -> None: ...

class BucketSummary(_message.Message):
    __slots__ = ("bucket", "rows", "ranges", "tenants")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    bucket: int
    rows: int
    ranges: _containers.RepeatedCompositeFieldContainer[AttributeRange]
    tenants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, bucket: _Optional[int] = ..., rows: _Optional[int] = ..., ranges: _Optional[_Iterable[_Union[AttributeRange, _Mapping]]] = ..., tenants: _Optional[_Iterable[str]] = ...) -> None: ...

class IndexStats(_message.Message):
    __slots__ = ("index", "kind", "live_count", "tombstone_count", "segments", "buckets", "metric", "dimension", "memory_bytes", "mapped_bytes", "bytes_per_vector", "summary_sequence")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LIVE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_VECTOR_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    index: IndexRef
    kind: str
    live_count: int
    tombstone_count: int
    segments: _containers.RepeatedCompositeFieldContainer[SegmentSummary]
    buckets: _containers.RepeatedCompositeFieldContainer[BucketSummary]
    metric: _common_pb2.Metric
    dimension: int
    memory_bytes: int
    mapped_bytes: int
    bytes_per_vector: float
    summary_sequence: int
    def __init__(self, index: _Optional[_Union[IndexRef, _Mapping]] = ..., kind: _Optional[str] = ..., live_count: _Optional[int] = ..., tombstone_count: _Optional[int] = ..., segments: _Optional[_Iterable[_Union[SegmentSummary, _Mapping]]] = ..., buckets: _Optional[_Iterable[_Union[BucketSummary, _Mapping]]] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., dimension: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., mapped_bytes: _Optional[int] = ..., bytes_per_vector: _Optional[float] = ..., summary_sequence: _Optional[int] = ...) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("shard_id", "indexes", "sequence", "process_rss_bytes", "process_rss_anon_bytes", "process_rss_file_bytes")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PROCESS_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROCESS_RSS_ANON_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROCESS_RSS_FILE_BYTES_FIELD_NUMBER: _ClassVar[int]
    shard_id: str
    indexes: _containers.RepeatedCompositeFieldContainer[IndexStats]
    sequence: int
    process_rss_bytes: int
    process_rss_anon_bytes: int
    process_rss_file_bytes: int
    def __init__(self, shard_id: _Optional[str] = ..., indexes: _Optional[_Iterable[_Union[IndexStats, _Mapping]]] = ..., sequence: _Optional[int] = ..., process_rss_bytes: _Optional[int] = ..., process_rss_anon_bytes: _Optional[int] = ..., process_rss_file_bytes: _Optional[int] = ...) -> None: ...

class FlushRequest(_message.Message):
    __slots__ = ("index", "compact")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COMPACT_FIELD_NUMBER: _ClassVar[int]
    index: IndexRef
    compact: bool
    def __init__(self, index: _Optional[_Union[IndexRef, _Mapping]] = ..., compact: _Optional[bool] = ...) -> None: ...

class FlushResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: IndexStats
    def __init__(self, stats: _Optional[_Union[IndexStats, _Mapping]] = ...) -> None: ...

class CheckRecallRequest(_message.Message):
    __slots__ = ("index", "k", "sample", "seed")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    index: IndexRef
    k: int
    sample: int
    seed: int
    def __init__(self, index: _Optional[_Union[IndexRef, _Mapping]] = ..., k: _Optional[int] = ..., sample: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class KindRecall(_message.Message):
    __slots__ = ("kind", "queries", "recall", "rows")
    KIND_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    queries: int
    recall: float
    rows: int
    def __init__(self, kind: _Optional[str] = ..., queries: _Optional[int] = ..., recall: _Optional[float] = ..., rows: _Optional[int] = ...) -> None: ...

class CheckRecallResponse(_message.Message):
    __slots__ = ("shard_id", "queries", "recall", "kinds", "rows")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    shard_id: str
    queries: int
    recall: float
    kinds: _containers.RepeatedCompositeFieldContainer[KindRecall]
    rows: int
    def __init__(self, shard_id: _Optional[str] = ..., queries: _Optional[int] = ..., recall: _Optional[float] = ..., kinds: _Optional[_Iterable[_Union[KindRecall, _Mapping]]] = ..., rows: _Optional[int] = ...) -> None: ...
