from protos.vecshard.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchRequest(_message.Message):
    __slots__ = ("route", "access", "query_vector", "k", "filter", "require_complete", "cursor", "skip_rerank")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    QUERY_VECTOR_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    SKIP_RERANK_FIELD_NUMBER: _ClassVar[int]
    route: str
    access: _common_pb2.AccessContext
    query_vector: bytes
    k: int
    filter: _common_pb2.Filter
    require_complete: bool
    cursor: str
    skip_rerank: bool
    def __init__(self, route: _Optional[str] = ..., access: _Optional[_Union[_common_pb2.AccessContext, _Mapping]] = ..., query_vector: _Optional[bytes] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., require_complete: _Optional[bool] = ..., cursor: _Optional[str] = ..., skip_rerank: _Optional[bool] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("key", "score", "rank", "shard_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    key: _common_pb2.EntityKey
    score: float
    rank: int
    shard_id: str
    def __init__(self, key: _Optional[_Union[_common_pb2.EntityKey, _Mapping]] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ..., shard_id: _Optional[str] = ...) -> None: ...

class SearchDiagnostics(_message.Message):
    __slots__ = ("resolve_ms", "fanout_ms", "merge_ms", "shards_searched", "candidates", "shards_skipped", "hedges_fired", "arm")
    RESOLVE_MS_FIELD_NUMBER: _ClassVar[int]
    FANOUT_MS_FIELD_NUMBER: _ClassVar[int]
    MERGE_MS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_SEARCHED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    SHARDS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    HEDGES_FIRED_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    resolve_ms: float
    fanout_ms: float
    merge_ms: float
    shards_searched: int
    candidates: int
    shards_skipped: int
    hedges_fired: int
    arm: str
    def __init__(self, resolve_ms: _Optional[float] = ..., fanout_ms: _Optional[float] = ..., merge_ms: _Optional[float] = ..., shards_searched: _Optional[int] = ..., candidates: _Optional[int] = ..., shards_skipped: _Optional[int] = ..., hedges_fired: _Optional[int] = ..., arm: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "route", "bundle", "index_name", "index_version", "embedding_name", "embedding_version", "metric", "diagnostics", "partial", "missing_buckets", "completeness", "next_cursor", "packed_hits")
    HITS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    MISSING_BUCKETS_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    PACKED_HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    route: str
    bundle: str
    index_name: str
    index_version: str
    embedding_name: str
    embedding_version: str
    metric: _common_pb2.Metric
    diagnostics: SearchDiagnostics
    partial: bool
    missing_buckets: _containers.RepeatedScalarFieldContainer[int]
    completeness: float
    next_cursor: str
    packed_hits: PackedHits
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., route: _Optional[str] = ..., bundle: _Optional[str] = ..., index_name: _Optional[str] = ..., index_version: _Optional[str] = ..., embedding_name: _Optional[str] = ..., embedding_version: _Optional[str] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., diagnostics: _Optional[_Union[SearchDiagnostics, _Mapping]] = ..., partial: _Optional[bool] = ..., missing_buckets: _Optional[_Iterable[int]] = ..., completeness: _Optional[float] = ..., next_cursor: _Optional[str] = ..., packed_hits: _Optional[_Union[PackedHits, _Mapping]] = ...) -> None: ...

class PackedHits(_message.Message):
    __slots__ = ("scores", "entity_ids", "id_ends", "tenant_ids", "tenant_codes", "entity_types", "type_codes", "shard_ids", "shard_codes")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    ID_ENDS_FIELD_NUMBER: _ClassVar[int]
    TENANT_IDS_FIELD_NUMBER: _ClassVar[int]
    TENANT_CODES_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPES_FIELD_NUMBER: _ClassVar[int]
    TYPE_CODES_FIELD_NUMBER: _ClassVar[int]
    SHARD_IDS_FIELD_NUMBER: _ClassVar[int]
    SHARD_CODES_FIELD_NUMBER: _ClassVar[int]
    scores: bytes
    entity_ids: bytes
    id_ends: bytes
    tenant_ids: _containers.RepeatedScalarFieldContainer[str]
    tenant_codes: bytes
    entity_types: _containers.RepeatedScalarFieldContainer[str]
    type_codes: bytes
    shard_ids: _containers.RepeatedScalarFieldContainer[str]
    shard_codes: bytes
    def __init__(self, scores: _Optional[bytes] = ..., entity_ids: _Optional[bytes] = ..., id_ends: _Optional[bytes] = ..., tenant_ids: _Optional[_Iterable[str]] = ..., tenant_codes: _Optional[bytes] = ..., entity_types: _Optional[_Iterable[str]] = ..., type_codes: _Optional[bytes] = ..., shard_ids: _Optional[_Iterable[str]] = ..., shard_codes: _Optional[bytes] = ...) -> None: ...

class SearchBatchRequest(_message.Message):
    __slots__ = ("requests", "packed_hits")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PACKED_HITS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SearchRequest]
    packed_hits: bool
    def __init__(self, requests: _Optional[_Iterable[_Union[SearchRequest, _Mapping]]] = ..., packed_hits: _Optional[bool] = ...) -> None: ...

class SearchBatchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[SearchResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[SearchResponse, _Mapping]]] = ...) -> None: ...

class ShardDebug(_message.Message):
    __slots__ = ("shard_id", "buckets", "bound", "bound_known", "outcome", "wave", "latency_ms", "candidates", "error", "hedged")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    BOUND_KNOWN_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    WAVE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HEDGED_FIELD_NUMBER: _ClassVar[int]
    shard_id: str
    buckets: _containers.RepeatedScalarFieldContainer[int]
    bound: float
    bound_known: bool
    outcome: str
    wave: int
    latency_ms: float
    candidates: int
    error: str
    hedged: bool
    def __init__(self, shard_id: _Optional[str] = ..., buckets: _Optional[_Iterable[int]] = ..., bound: _Optional[float] = ..., bound_known: _Optional[bool] = ..., outcome: _Optional[str] = ..., wave: _Optional[int] = ..., latency_ms: _Optional[float] = ..., candidates: _Optional[int] = ..., error: _Optional[str] = ..., hedged: _Optional[bool] = ...) -> None: ...

class SearchDebugResponse(_message.Message):
    __slots__ = ("response", "shards", "filter_selectivity", "resolved_bundle_json")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_SELECTIVITY_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BUNDLE_JSON_FIELD_NUMBER: _ClassVar[int]
    response: SearchResponse
    shards: _containers.RepeatedCompositeFieldContainer[ShardDebug]
    filter_selectivity: float
    resolved_bundle_json: str
    def __init__(self, response: _Optional[_Union[SearchResponse, _Mapping]] = ..., shards: _Optional[_Iterable[_Union[ShardDebug, _Mapping]]] = ..., filter_selectivity: _Optional[float] = ..., resolved_bundle_json: _Optional[str] = ...) -> None: ...

class BatchGetEmbeddingsRequest(_message.Message):
    __slots__ = ("access", "embedding_name", "embedding_version", "keys", "include_vectors", "columnar", "entity_ids", "include_attributes")
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    COLUMNAR_FIELD_NUMBER: _ClassVar[int]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    access: _common_pb2.AccessContext
    embedding_name: str
    embedding_version: str
    keys: _containers.RepeatedCompositeFieldContainer[_common_pb2.EntityKey]
    include_vectors: bool
    columnar: bool
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    include_attributes: bool
    def __init__(self, access: _Optional[_Union[_common_pb2.AccessContext, _Mapping]] = ..., embedding_name: _Optional[str] = ..., embedding_version: _Optional[str] = ..., keys: _Optional[_Iterable[_Union[_common_pb2.EntityKey, _Mapping]]] = ..., include_vectors: _Optional[bool] = ..., columnar: _Optional[bool] = ..., entity_ids: _Optional[_Iterable[str]] = ..., include_attributes: _Optional[bool] = ...) -> None: ...

class BatchGetEmbeddingsResponse(_message.Message):
    __slots__ = ("records", "columns")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[_common_pb2.EmbeddingLookup]
    columns: _common_pb2.EmbeddingColumns
    def __init__(self, records: _Optional[_Iterable[_Union[_common_pb2.EmbeddingLookup, _Mapping]]] = ..., columns: _Optional[_Union[_common_pb2.EmbeddingColumns, _Mapping]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("access", "embedding_name", "embedding_version", "records")
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    access: _common_pb2.AccessContext
    embedding_name: str
    embedding_version: str
    records: _containers.RepeatedCompositeFieldContainer[_common_pb2.EmbeddingRecord]
    def __init__(self, access: _Optional[_Union[_common_pb2.AccessContext, _Mapping]] = ..., embedding_name: _Optional[str] = ..., embedding_version: _Optional[str] = ..., records: _Optional[_Iterable[_Union[_common_pb2.EmbeddingRecord, _Mapping]]] = ...) -> None: ...

class UpsertColumnsRequest(_message.Message):
    __slots__ = ("access", "embedding_name", "embedding_version", "records")
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    access: _common_pb2.AccessContext
    embedding_name: str
    embedding_version: str
    records: _common_pb2.RecordColumns
    def __init__(self, access: _Optional[_Union[_common_pb2.AccessContext, _Mapping]] = ..., embedding_name: _Optional[str] = ..., embedding_version: _Optional[str] = ..., records: _Optional[_Union[_common_pb2.RecordColumns, _Mapping]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("written", "ignored_stale")
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    IGNORED_STALE_FIELD_NUMBER: _ClassVar[int]
    written: int
    ignored_stale: int
    def __init__(self, written: _Optional[int] = ..., ignored_stale: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("access", "embedding_name", "embedding_version", "keys", "source_version")
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    access: _common_pb2.AccessContext
    embedding_name: str
    embedding_version: str
    keys: _containers.RepeatedCompositeFieldContainer[_common_pb2.EntityKey]
    source_version: int
    def __init__(self, access: _Optional[_Union[_common_pb2.AccessContext, _Mapping]] = ..., embedding_name: _Optional[str] = ..., embedding_version: _Optional[str] = ..., keys: _Optional[_Iterable[_Union[_common_pb2.EntityKey, _Mapping]]] = ..., source_version: _Optional[int] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class DescribeRouteRequest(_message.Message):
    __slots__ = ("route",)
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    route: str
    def __init__(self, route: _Optional[str] = ...) -> None: ...

class AttributeSchema(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class DescribeRouteResponse(_message.Message):
    __slots__ = ("route", "bundle", "index_name", "index_version", "embedding_name", "embedding_version", "query_embedding_name", "query_embedding_version", "dimension", "metric", "attributes", "max_k", "index_kind", "num_buckets")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    QUERY_EMBEDDING_NAME_FIELD_NUMBER: _ClassVar[int]
    QUERY_EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    MAX_K_FIELD_NUMBER: _ClassVar[int]
    INDEX_KIND_FIELD_NUMBER: _ClassVar[int]
    NUM_BUCKETS_FIELD_NUMBER: _ClassVar[int]
    route: str
    bundle: str
    index_name: str
    index_version: str
    embedding_name: str
    embedding_version: str
    query_embedding_name: str
    query_embedding_version: str
    dimension: int
    metric: _common_pb2.Metric
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeSchema]
    max_k: int
    index_kind: str
    num_buckets: int
    def __init__(self, route: _Optional[str] = ..., bundle: _Optional[str] = ..., index_name: _Optional[str] = ..., index_version: _Optional[str] = ..., embedding_name: _Optional[str] = ..., embedding_version: _Optional[str] = ..., query_embedding_name: _Optional[str] = ..., query_embedding_version: _Optional[str] = ..., dimension: _Optional[int] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., attributes: _Optional[_Iterable[_Union[AttributeSchema, _Mapping]]] = ..., max_k: _Optional[int] = ..., index_kind: _Optional[str] = ..., num_buckets: _Optional[int] = ...) -> None: ...

class GetFeaturesRequest(_message.Message):
    __slots__ = ("access", "feature_set", "feature_set_version", "entities", "request_time_us", "personalized", "columnar", "entity_columns")
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SET_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SET_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TIME_US_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZED_FIELD_NUMBER: _ClassVar[int]
    COLUMNAR_FIELD_NUMBER: _ClassVar[int]
    ENTITY_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    access: _common_pb2.AccessContext
    feature_set: str
    feature_set_version: str
    entities: _containers.RepeatedCompositeFieldContainer[_common_pb2.EntityKey]
    request_time_us: int
    personalized: bool
    columnar: bool
    entity_columns: _common_pb2.EntityKeyColumns
    def __init__(self, access: _Optional[_Union[_common_pb2.AccessContext, _Mapping]] = ..., feature_set: _Optional[str] = ..., feature_set_version: _Optional[str] = ..., entities: _Optional[_Iterable[_Union[_common_pb2.EntityKey, _Mapping]]] = ..., request_time_us: _Optional[int] = ..., personalized: _Optional[bool] = ..., columnar: _Optional[bool] = ..., entity_columns: _Optional[_Union[_common_pb2.EntityKeyColumns, _Mapping]] = ...) -> None: ...

class FeatureNames(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class EntityFeatures(_message.Message):
    __slots__ = ("entity", "values")
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    entity: _common_pb2.EntityKey
    values: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureValue]
    def __init__(self, entity: _Optional[_Union[_common_pb2.EntityKey, _Mapping]] = ..., values: _Optional[_Iterable[_Union[_common_pb2.FeatureValue, _Mapping]]] = ...) -> None: ...

class FeatureDiagnostics(_message.Message):
    __slots__ = ("missing_by_reason", "stale", "entities", "shards", "latency_ms")
    class MissingByReasonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MISSING_BY_REASON_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    missing_by_reason: _containers.ScalarMap[str, int]
    stale: int
    entities: int
    shards: int
    latency_ms: float
    def __init__(self, missing_by_reason: _Optional[_Mapping[str, int]] = ..., stale: _Optional[int] = ..., entities: _Optional[int] = ..., shards: _Optional[int] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class FeatureBlock(_message.Message):
    __slots__ = ("entity_type", "outputs", "rows", "columns")
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    entity_type: str
    outputs: _containers.RepeatedScalarFieldContainer[str]
    rows: bytes
    columns: _common_pb2.ResolvedFeatureColumns
    def __init__(self, entity_type: _Optional[str] = ..., outputs: _Optional[_Iterable[str]] = ..., rows: _Optional[bytes] = ..., columns: _Optional[_Union[_common_pb2.ResolvedFeatureColumns, _Mapping]] = ...) -> None: ...

class GetFeaturesResponse(_message.Message):
    __slots__ = ("features_by_entity_type", "entities", "diagnostics", "blocks")
    class FeaturesByEntityTypeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FeatureNames
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FeatureNames, _Mapping]] = ...) -> None: ...
    FEATURES_BY_ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    features_by_entity_type: _containers.MessageMap[str, FeatureNames]
    entities: _containers.RepeatedCompositeFieldContainer[EntityFeatures]
    diagnostics: FeatureDiagnostics
    blocks: _containers.RepeatedCompositeFieldContainer[FeatureBlock]
    def __init__(self, features_by_entity_type: _Optional[_Mapping[str, FeatureNames]] = ..., entities: _Optional[_Iterable[_Union[EntityFeatures, _Mapping]]] = ..., diagnostics: _Optional[_Union[FeatureDiagnostics, _Mapping]] = ..., blocks: _Optional[_Iterable[_Union[FeatureBlock, _Mapping]]] = ...) -> None: ...

class PutFeaturesRequest(_message.Message):
    __slots__ = ("access", "group", "group_version", "rows", "columns")
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    GROUP_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    access: _common_pb2.AccessContext
    group: str
    group_version: str
    rows: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureRow]
    columns: _common_pb2.FeatureRowColumns
    def __init__(self, access: _Optional[_Union[_common_pb2.AccessContext, _Mapping]] = ..., group: _Optional[str] = ..., group_version: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[_common_pb2.FeatureRow, _Mapping]]] = ..., columns: _Optional[_Union[_common_pb2.FeatureRowColumns, _Mapping]] = ...) -> None: ...

class PutFeaturesResponse(_message.Message):
    __slots__ = ("written", "ignored_older")
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    IGNORED_OLDER_FIELD_NUMBER: _ClassVar[int]
    written: int
    ignored_older: int
    def __init__(self, written: _Optional[int] = ..., ignored_older: _Optional[int] = ...) -> None: ...
