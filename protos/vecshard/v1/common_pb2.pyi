from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Metric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_UNSPECIFIED: _ClassVar[Metric]
    INNER_PRODUCT: _ClassVar[Metric]
    COSINE: _ClassVar[Metric]
    L2: _ClassVar[Metric]

class LookupStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOOKUP_STATUS_UNSPECIFIED: _ClassVar[LookupStatus]
    FOUND: _ClassVar[LookupStatus]
    MISSING: _ClassVar[LookupStatus]
    DELETED: _ClassVar[LookupStatus]
    LOOKUP_UNAVAILABLE: _ClassVar[LookupStatus]

class MissingReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MISSING_REASON_UNSPECIFIED: _ClassVar[MissingReason]
    NO_HISTORY: _ClassVar[MissingReason]
    ENTITY_NOT_FOUND: _ClassVar[MissingReason]
    STALE: _ClassVar[MissingReason]
    PRIVACY_DISABLED: _ClassVar[MissingReason]
    TIMEOUT: _ClassVar[MissingReason]
    NOT_COMPUTED: _ClassVar[MissingReason]
    UNAVAILABLE: _ClassVar[MissingReason]

class FillAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILL_ACTION_UNSPECIFIED: _ClassVar[FillAction]
    FEATURE_DEFAULT: _ClassVar[FillAction]
    FILL_NULL: _ClassVar[FillAction]
    CONSTANT: _ClassVar[FillAction]
    KEEP_VALUE: _ClassVar[FillAction]
METRIC_UNSPECIFIED: Metric
INNER_PRODUCT: Metric
COSINE: Metric
L2: Metric
LOOKUP_STATUS_UNSPECIFIED: LookupStatus
FOUND: LookupStatus
MISSING: LookupStatus
DELETED: LookupStatus
LOOKUP_UNAVAILABLE: LookupStatus
MISSING_REASON_UNSPECIFIED: MissingReason
NO_HISTORY: MissingReason
ENTITY_NOT_FOUND: MissingReason
STALE: MissingReason
PRIVACY_DISABLED: MissingReason
TIMEOUT: MissingReason
NOT_COMPUTED: MissingReason
UNAVAILABLE: MissingReason
FILL_ACTION_UNSPECIFIED: FillAction
FEATURE_DEFAULT: FillAction
FILL_NULL: FillAction
CONSTANT: FillAction
KEEP_VALUE: FillAction

class EntityKey(_message.Message):
    __slots__ = ("tenant_id", "entity_type", "entity_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    entity_type: str
    entity_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., entity_type: _Optional[str] = ..., entity_id: _Optional[str] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class AttributeValue(_message.Message):
    __slots__ = ("string_value", "int_value", "float_value", "string_list_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    int_value: int
    float_value: float
    string_list_value: StringList
    def __init__(self, string_value: _Optional[str] = ..., int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., string_list_value: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("eq", "in_set", "range", "all_of", "any_of", "negate")
    EQ_FIELD_NUMBER: _ClassVar[int]
    IN_SET_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    ALL_OF_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    eq: Eq
    in_set: In
    range: Range
    all_of: FilterList
    any_of: FilterList
    negate: Filter
    def __init__(self, eq: _Optional[_Union[Eq, _Mapping]] = ..., in_set: _Optional[_Union[In, _Mapping]] = ..., range: _Optional[_Union[Range, _Mapping]] = ..., all_of: _Optional[_Union[FilterList, _Mapping]] = ..., any_of: _Optional[_Union[FilterList, _Mapping]] = ..., negate: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class Eq(_message.Message):
    __slots__ = ("attribute", "value")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    value: AttributeValue
    def __init__(self, attribute: _Optional[str] = ..., value: _Optional[_Union[AttributeValue, _Mapping]] = ...) -> None: ...

class In(_message.Message):
    __slots__ = ("attribute", "values")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    values: _containers.RepeatedCompositeFieldContainer[AttributeValue]
    def __init__(self, attribute: _Optional[str] = ..., values: _Optional[_Iterable[_Union[AttributeValue, _Mapping]]] = ...) -> None: ...

class Range(_message.Message):
    __slots__ = ("attribute", "gte", "gt", "lte", "lt")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    GTE_FIELD_NUMBER: _ClassVar[int]
    GT_FIELD_NUMBER: _ClassVar[int]
    LTE_FIELD_NUMBER: _ClassVar[int]
    LT_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    gte: float
    gt: float
    lte: float
    lt: float
    def __init__(self, attribute: _Optional[str] = ..., gte: _Optional[float] = ..., gt: _Optional[float] = ..., lte: _Optional[float] = ..., lt: _Optional[float] = ...) -> None: ...

class FilterList(_message.Message):
    __slots__ = ("filters",)
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    def __init__(self, filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ...) -> None: ...

class AccessContext(_message.Message):
    __slots__ = ("tenant_id", "purpose", "subject_id", "principal")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    purpose: str
    subject_id: str
    principal: str
    def __init__(self, tenant_id: _Optional[str] = ..., purpose: _Optional[str] = ..., subject_id: _Optional[str] = ..., principal: _Optional[str] = ...) -> None: ...

class EmbeddingRecord(_message.Message):
    __slots__ = ("key", "vector", "source_version", "model_version", "created_at_unix_micros", "attributes", "norm")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AttributeValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AttributeValue, _Mapping]] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_MICROS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    NORM_FIELD_NUMBER: _ClassVar[int]
    key: EntityKey
    vector: bytes
    source_version: int
    model_version: str
    created_at_unix_micros: int
    attributes: _containers.MessageMap[str, AttributeValue]
    norm: float
    def __init__(self, key: _Optional[_Union[EntityKey, _Mapping]] = ..., vector: _Optional[bytes] = ..., source_version: _Optional[int] = ..., model_version: _Optional[str] = ..., created_at_unix_micros: _Optional[int] = ..., attributes: _Optional[_Mapping[str, AttributeValue]] = ..., norm: _Optional[float] = ...) -> None: ...

class EmbeddingLookup(_message.Message):
    __slots__ = ("key", "status", "record")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    key: EntityKey
    status: LookupStatus
    record: EmbeddingRecord
    def __init__(self, key: _Optional[_Union[EntityKey, _Mapping]] = ..., status: _Optional[_Union[LookupStatus, str]] = ..., record: _Optional[_Union[EmbeddingRecord, _Mapping]] = ...) -> None: ...

class PackedStrings(_message.Message):
    __slots__ = ("data", "offsets")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offsets: bytes
    def __init__(self, data: _Optional[bytes] = ..., offsets: _Optional[bytes] = ...) -> None: ...

class PackedStringLists(_message.Message):
    __slots__ = ("items", "offsets")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    items: PackedStrings
    offsets: bytes
    def __init__(self, items: _Optional[_Union[PackedStrings, _Mapping]] = ..., offsets: _Optional[bytes] = ...) -> None: ...

class AttributeColumn(_message.Message):
    __slots__ = ("name", "present", "int_values", "float_values", "string_values", "string_list_values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    INT_VALUES_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_LIST_VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    present: bytes
    int_values: bytes
    float_values: bytes
    string_values: PackedStrings
    string_list_values: PackedStringLists
    def __init__(self, name: _Optional[str] = ..., present: _Optional[bytes] = ..., int_values: _Optional[bytes] = ..., float_values: _Optional[bytes] = ..., string_values: _Optional[_Union[PackedStrings, _Mapping]] = ..., string_list_values: _Optional[_Union[PackedStringLists, _Mapping]] = ...) -> None: ...

class RecordColumns(_message.Message):
    __slots__ = ("entity_ids", "vectors", "dimension", "source_versions", "created_at_unix_micros", "model_version", "attributes", "entity_type")
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_MICROS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    entity_ids: PackedStrings
    vectors: bytes
    dimension: int
    source_versions: bytes
    created_at_unix_micros: bytes
    model_version: str
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeColumn]
    entity_type: str
    def __init__(self, entity_ids: _Optional[_Union[PackedStrings, _Mapping]] = ..., vectors: _Optional[bytes] = ..., dimension: _Optional[int] = ..., source_versions: _Optional[bytes] = ..., created_at_unix_micros: _Optional[bytes] = ..., model_version: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[AttributeColumn, _Mapping]]] = ..., entity_type: _Optional[str] = ...) -> None: ...

class DoubleList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class FeatureValue(_message.Message):
    __slots__ = ("int64_value", "float64_value", "string_value", "bool_value", "float_list_value", "missing_reason", "default_applied", "staleness_us", "feature_timestamp_us")
    INT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    MISSING_REASON_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_APPLIED_FIELD_NUMBER: _ClassVar[int]
    STALENESS_US_FIELD_NUMBER: _ClassVar[int]
    FEATURE_TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    int64_value: int
    float64_value: float
    string_value: str
    bool_value: bool
    float_list_value: DoubleList
    missing_reason: MissingReason
    default_applied: FillAction
    staleness_us: int
    feature_timestamp_us: int
    def __init__(self, int64_value: _Optional[int] = ..., float64_value: _Optional[float] = ..., string_value: _Optional[str] = ..., bool_value: _Optional[bool] = ..., float_list_value: _Optional[_Union[DoubleList, _Mapping]] = ..., missing_reason: _Optional[_Union[MissingReason, str]] = ..., default_applied: _Optional[_Union[FillAction, str]] = ..., staleness_us: _Optional[int] = ..., feature_timestamp_us: _Optional[int] = ...) -> None: ...

class FeatureRow(_message.Message):
    __slots__ = ("entity", "feature_timestamp_us", "generated_at_us", "values")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FeatureValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FeatureValue, _Mapping]] = ...) -> None: ...
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    FEATURE_TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    GENERATED_AT_US_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    entity: EntityKey
    feature_timestamp_us: int
    generated_at_us: int
    values: _containers.MessageMap[str, FeatureValue]
    def __init__(self, entity: _Optional[_Union[EntityKey, _Mapping]] = ..., feature_timestamp_us: _Optional[int] = ..., generated_at_us: _Optional[int] = ..., values: _Optional[_Mapping[str, FeatureValue]] = ...) -> None: ...

class EntityKeyColumns(_message.Message):
    __slots__ = ("entity_types", "type_index", "entity_ids")
    ENTITY_TYPES_FIELD_NUMBER: _ClassVar[int]
    TYPE_INDEX_FIELD_NUMBER: _ClassVar[int]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    entity_types: _containers.RepeatedScalarFieldContainer[str]
    type_index: bytes
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, entity_types: _Optional[_Iterable[str]] = ..., type_index: _Optional[bytes] = ..., entity_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class FeatureColumn(_message.Message):
    __slots__ = ("dtype", "length", "validity", "offsets", "values")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    length: int
    validity: bytes
    offsets: bytes
    values: bytes
    def __init__(self, dtype: _Optional[str] = ..., length: _Optional[int] = ..., validity: _Optional[bytes] = ..., offsets: _Optional[bytes] = ..., values: _Optional[bytes] = ...) -> None: ...

class ResolvedFeatureColumns(_message.Message):
    __slots__ = ("features", "rows", "columns", "missing_reasons", "fills", "stored", "staleness_us", "feature_timestamp_us")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    MISSING_REASONS_FIELD_NUMBER: _ClassVar[int]
    FILLS_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    STALENESS_US_FIELD_NUMBER: _ClassVar[int]
    FEATURE_TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedScalarFieldContainer[str]
    rows: int
    columns: _containers.RepeatedCompositeFieldContainer[FeatureColumn]
    missing_reasons: bytes
    fills: bytes
    stored: bytes
    staleness_us: bytes
    feature_timestamp_us: bytes
    def __init__(self, features: _Optional[_Iterable[str]] = ..., rows: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[FeatureColumn, _Mapping]]] = ..., missing_reasons: _Optional[bytes] = ..., fills: _Optional[bytes] = ..., stored: _Optional[bytes] = ..., staleness_us: _Optional[bytes] = ..., feature_timestamp_us: _Optional[bytes] = ...) -> None: ...

class FeatureRowColumns(_message.Message):
    __slots__ = ("tenant_id", "entity_ids", "feature_timestamp_us", "generated_at_us", "values", "entity_type")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FeatureColumn
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FeatureColumn, _Mapping]] = ...) -> None: ...
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    GENERATED_AT_US_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    feature_timestamp_us: bytes
    generated_at_us: bytes
    values: _containers.MessageMap[str, FeatureColumn]
    entity_type: str
    def __init__(self, tenant_id: _Optional[str] = ..., entity_ids: _Optional[_Iterable[str]] = ..., feature_timestamp_us: _Optional[bytes] = ..., generated_at_us: _Optional[bytes] = ..., values: _Optional[_Mapping[str, FeatureColumn]] = ..., entity_type: _Optional[str] = ...) -> None: ...

class EmbeddingColumns(_message.Message):
    __slots__ = ("status", "dimension", "vectors", "source_version", "created_at_us", "norm", "model_versions", "model_version_index", "attributes_json")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_US_FIELD_NUMBER: _ClassVar[int]
    NORM_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_INDEX_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_JSON_FIELD_NUMBER: _ClassVar[int]
    status: bytes
    dimension: int
    vectors: bytes
    source_version: bytes
    created_at_us: bytes
    norm: bytes
    model_versions: _containers.RepeatedScalarFieldContainer[str]
    model_version_index: bytes
    attributes_json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, status: _Optional[bytes] = ..., dimension: _Optional[int] = ..., vectors: _Optional[bytes] = ..., source_version: _Optional[bytes] = ..., created_at_us: _Optional[bytes] = ..., norm: _Optional[bytes] = ..., model_versions: _Optional[_Iterable[str]] = ..., model_version_index: _Optional[bytes] = ..., attributes_json: _Optional[_Iterable[str]] = ...) -> None: ...
