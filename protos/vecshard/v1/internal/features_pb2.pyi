from protos.vecshard.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureBatch(_message.Message):
    __slots__ = ("group", "group_version", "rows", "columns")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    GROUP_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    group: str
    group_version: str
    rows: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureRow]
    columns: _common_pb2.FeatureRowColumns
    def __init__(self, group: _Optional[str] = ..., group_version: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[_common_pb2.FeatureRow, _Mapping]]] = ..., columns: _Optional[_Union[_common_pb2.FeatureRowColumns, _Mapping]] = ...) -> None: ...

class FeatureAck(_message.Message):
    __slots__ = ("written", "ignored_older")
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    IGNORED_OLDER_FIELD_NUMBER: _ClassVar[int]
    written: int
    ignored_older: int
    def __init__(self, written: _Optional[int] = ..., ignored_older: _Optional[int] = ...) -> None: ...

class GetFeaturesRequest(_message.Message):
    __slots__ = ("group", "group_version", "features", "entities", "request_time_us", "personalized")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    GROUP_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TIME_US_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZED_FIELD_NUMBER: _ClassVar[int]
    group: str
    group_version: str
    features: _containers.RepeatedScalarFieldContainer[str]
    entities: _containers.RepeatedCompositeFieldContainer[_common_pb2.EntityKey]
    request_time_us: int
    personalized: bool
    def __init__(self, group: _Optional[str] = ..., group_version: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., entities: _Optional[_Iterable[_Union[_common_pb2.EntityKey, _Mapping]]] = ..., request_time_us: _Optional[int] = ..., personalized: _Optional[bool] = ...) -> None: ...

class EntityValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureValue]
    def __init__(self, values: _Optional[_Iterable[_Union[_common_pb2.FeatureValue, _Mapping]]] = ...) -> None: ...

class GetFeaturesResponse(_message.Message):
    __slots__ = ("entities",)
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    entities: _containers.RepeatedCompositeFieldContainer[EntityValues]
    def __init__(self, entities: _Optional[_Iterable[_Union[EntityValues, _Mapping]]] = ...) -> None: ...

class GroupFetch(_message.Message):
    __slots__ = ("group", "group_version", "features", "entity_ids", "same_entities_as")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    GROUP_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    SAME_ENTITIES_AS_FIELD_NUMBER: _ClassVar[int]
    group: str
    group_version: str
    features: _containers.RepeatedScalarFieldContainer[str]
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    same_entities_as: int
    def __init__(self, group: _Optional[str] = ..., group_version: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., entity_ids: _Optional[_Iterable[str]] = ..., same_entities_as: _Optional[int] = ...) -> None: ...

class FeatureColumnsRequest(_message.Message):
    __slots__ = ("tenant_id", "groups", "request_time_us", "personalized")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TIME_US_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZED_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    groups: _containers.RepeatedCompositeFieldContainer[GroupFetch]
    request_time_us: int
    personalized: bool
    def __init__(self, tenant_id: _Optional[str] = ..., groups: _Optional[_Iterable[_Union[GroupFetch, _Mapping]]] = ..., request_time_us: _Optional[int] = ..., personalized: _Optional[bool] = ...) -> None: ...

class FeatureColumnsResponse(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[_common_pb2.ResolvedFeatureColumns]
    def __init__(self, groups: _Optional[_Iterable[_Union[_common_pb2.ResolvedFeatureColumns, _Mapping]]] = ...) -> None: ...
