from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegistryObject(_message.Message):
    __slots__ = ("kind", "spec_json", "mod_revision")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    spec_json: str
    mod_revision: int
    def __init__(self, kind: _Optional[str] = ..., spec_json: _Optional[str] = ..., mod_revision: _Optional[int] = ...) -> None: ...

class ApplyRequest(_message.Message):
    __slots__ = ("documents", "dry_run", "who", "why")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    documents: str
    dry_run: bool
    who: str
    why: str
    def __init__(self, documents: _Optional[str] = ..., dry_run: _Optional[bool] = ..., who: _Optional[str] = ..., why: _Optional[str] = ...) -> None: ...

class ApplyResponse(_message.Message):
    __slots__ = ("changes", "dry_run")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedScalarFieldContainer[str]
    dry_run: bool
    def __init__(self, changes: _Optional[_Iterable[str]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("kind", "name", "version")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    version: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: str
    def __init__(self, kind: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("objects",)
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[RegistryObject]
    def __init__(self, objects: _Optional[_Iterable[_Union[RegistryObject, _Mapping]]] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ("kind", "name", "version", "status")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    version: str
    status: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class SwitchRouteRequest(_message.Message):
    __slots__ = ("route", "bundle", "canary_bundle", "canary_share", "shadow_bundle", "expected_revision", "who", "why")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    CANARY_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    CANARY_SHARE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    route: str
    bundle: str
    canary_bundle: str
    canary_share: float
    shadow_bundle: str
    expected_revision: int
    who: str
    why: str
    def __init__(self, route: _Optional[str] = ..., bundle: _Optional[str] = ..., canary_bundle: _Optional[str] = ..., canary_share: _Optional[float] = ..., shadow_bundle: _Optional[str] = ..., expected_revision: _Optional[int] = ..., who: _Optional[str] = ..., why: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("route", "who", "why")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    route: str
    who: str
    why: str
    def __init__(self, route: _Optional[str] = ..., who: _Optional[str] = ..., why: _Optional[str] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("route",)
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    route: str
    def __init__(self, route: _Optional[str] = ...) -> None: ...

class RouteChange(_message.Message):
    __slots__ = ("revision", "who", "when", "why", "before_json", "after_json")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    BEFORE_JSON_FIELD_NUMBER: _ClassVar[int]
    AFTER_JSON_FIELD_NUMBER: _ClassVar[int]
    revision: int
    who: str
    when: str
    why: str
    before_json: str
    after_json: str
    def __init__(self, revision: _Optional[int] = ..., who: _Optional[str] = ..., when: _Optional[str] = ..., why: _Optional[str] = ..., before_json: _Optional[str] = ..., after_json: _Optional[str] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[RouteChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[RouteChange, _Mapping]]] = ...) -> None: ...

class CheckCompatRequest(_message.Message):
    __slots__ = ("query_version", "index_version")
    QUERY_VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    query_version: str
    index_version: str
    def __init__(self, query_version: _Optional[str] = ..., index_version: _Optional[str] = ...) -> None: ...

class CheckCompatResponse(_message.Message):
    __slots__ = ("compatible", "reason")
    COMPATIBLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    compatible: bool
    reason: str
    def __init__(self, compatible: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class SetShardStateRequest(_message.Message):
    __slots__ = ("shard_id", "state", "reason")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    shard_id: str
    state: str
    reason: str
    def __init__(self, shard_id: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SetShardStateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardStatus(_message.Message):
    __slots__ = ("shard_id", "address", "state")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    shard_id: str
    address: str
    state: str
    def __init__(self, shard_id: _Optional[str] = ..., address: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("revision", "staleness_seconds", "shards", "routes")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STALENESS_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    revision: int
    staleness_seconds: float
    shards: _containers.RepeatedCompositeFieldContainer[ShardStatus]
    routes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revision: _Optional[int] = ..., staleness_seconds: _Optional[float] = ..., shards: _Optional[_Iterable[_Union[ShardStatus, _Mapping]]] = ..., routes: _Optional[_Iterable[str]] = ...) -> None: ...

class TrainPlacementRequest(_message.Message):
    __slots__ = ("index_name", "index_version", "sample", "seed")
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    index_name: str
    index_version: str
    sample: bytes
    seed: int
    def __init__(self, index_name: _Optional[str] = ..., index_version: _Optional[str] = ..., sample: _Optional[bytes] = ..., seed: _Optional[int] = ...) -> None: ...

class TrainPlacementResponse(_message.Message):
    __slots__ = ("buckets",)
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    buckets: int
    def __init__(self, buckets: _Optional[int] = ...) -> None: ...

class RetireRequest(_message.Message):
    __slots__ = ("kind", "name", "version", "who", "why", "dry_run")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    version: str
    who: str
    why: str
    dry_run: bool
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., who: _Optional[str] = ..., why: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class RetireResponse(_message.Message):
    __slots__ = ("retirement", "effects", "dry_run")
    RETIREMENT_FIELD_NUMBER: _ClassVar[int]
    EFFECTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    retirement: RegistryObject
    effects: _containers.RepeatedScalarFieldContainer[str]
    dry_run: bool
    def __init__(self, retirement: _Optional[_Union[RegistryObject, _Mapping]] = ..., effects: _Optional[_Iterable[str]] = ..., dry_run: _Optional[bool] = ...) -> None: ...
