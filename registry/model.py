"""The registry's data model (DESIGN §2) as immutable domain objects.

Every object is a frozen dataclass so a `Snapshot` can be shared between
threads and compared; the etcd encoding lives in `registry.codec`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from core.domain import AttrType, Metric, VersionRef


class Status(StrEnum):
    BUILDING = "building"
    VALIDATING = "validating"
    READY = "ready"
    PRODUCTION = "production"
    DEPRECATED = "deprecated"
    FAILED = "failed"
    # Past its rollback retention: data dropped from the shards, kept in the
    # registry only as a record (terminal).
    ARCHIVED = "archived"


SERVABLE = frozenset({Status.READY, Status.PRODUCTION})


class IndexKind(StrEnum):
    FLAT = "flat"
    HNSW = "hnsw"
    IVFPQ = "ivfpq"


class ShardState(StrEnum):
    SERVING = "serving"
    DRAINING = "draining"


def frozen_map(m: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True)
class EmbeddingFamily:
    name: str
    entity_type: str
    dimension: int
    metric: Metric
    # Vectors are L2-normalized once at ingest (and queries before scoring).
    normalize: bool = False
    owner: str = ""
    privacy_class: str = ""
    # Empty means any purpose may read it.
    allowed_purposes: tuple[str, ...] = ()
    # Query families whose vectors may be scored against this family's items.
    compatible_query_families: tuple[str, ...] = ()
    # How long a record is kept, by its created_at: past it, it reads as
    # missing and the shards delete it (shard_server.record_expiry); 0 = kept
    # until deleted.
    retention_days: int = 0
    # Session embeddings: the same, in seconds (the shorter of the two rules).
    ttl_seconds: int = 0
    # How long a deprecated index version of this family stays loadable as a
    # rollback target before its data is dropped (registry.migration).
    rollback_retention_seconds: int = 48 * 3600

    @property
    def expiry_seconds(self) -> int:
        """Age (by created_at) past which a record reads as missing and is
        deleted: the shorter of `ttl_seconds` and `retention_days`; 0: never."""
        limits = [s for s in (self.ttl_seconds, self.retention_days * 86_400) if s > 0]
        return min(limits, default=0)


@dataclass(frozen=True)
class EmbeddingVersion:
    name: str
    version: str
    status: Status = Status.READY
    model_version: str = ""
    # Query embedding versions whose vectors may be scored against this
    # (item) version. The version itself is always compatible with itself.
    compatible_query_versions: tuple[VersionRef, ...] = ()
    created_at: str = ""

    @property
    def ref(self) -> VersionRef:
        return VersionRef(self.name, self.version)


@dataclass(frozen=True)
class QualityGates:
    """Thresholds an index version must pass in its stored evaluation
    (`registry.quality`) before it may become ready or production. A
    threshold of 0 is not gated; `canary_set` (NAME@VERSION) names the
    labelled queries its canary recall is measured on. `min_recall_sample`:
    the queries (all shards' together) recall against exact search must be
    measured on for `min_recall_vs_exact` to pass — one query per shard, a
    stored vector finding itself, measures nothing."""

    k: int = 10
    min_recall_vs_exact: float = 0.0
    min_recall_sample: int = 100
    canary_set: str = ""
    min_canary_recall: float = 0.0
    min_overlap_with_production: float = 0.0
    min_coverage: float = 0.0


@dataclass(frozen=True)
class IndexVersion:
    name: str
    version: str
    embedding: VersionRef
    kind: IndexKind = IndexKind.FLAT
    params: Mapping[str, Any] = field(default_factory=frozen_map)
    num_buckets: int = 16
    placement: str = "hash"
    # Filterable attributes and their types; a filter on any other is rejected.
    attributes: Mapping[str, AttrType] = field(default_factory=frozen_map)
    status: Status = Status.READY
    max_k: int = 1000
    # Replica acknowledgements a write needs per bucket; 0 means all replicas.
    write_quorum: int = 0
    # None: promotion is not gated (versions created before gates existed).
    gates: QualityGates | None = None
    # Attributes a caller may filter on only with a grant (a filter is a side
    # channel into the data); a policy, so it may change on a ready version.
    restricted_attributes: tuple[str, ...] = ()

    @property
    def ref(self) -> VersionRef:
        return VersionRef(self.name, self.version)


@dataclass(frozen=True)
class Placement:
    """Bucket → replica shard ids for one index version.

    With `centroid` placement, `centroids` holds one coarse-quantizer centroid
    per bucket (base64 of little-endian float32, num_buckets × dimension); a
    vector lives in the bucket of its nearest centroid. Trained once, then
    immutable: moving centroids would strand the data already placed.
    """

    index: VersionRef
    buckets: tuple[tuple[str, ...], ...]
    centroids: str = ""

    def shards(self) -> tuple[str, ...]:
        return tuple(sorted({s for replicas in self.buckets for s in replicas}))

    def buckets_of(self, shard_id: str) -> tuple[int, ...]:
        return tuple(b for b, replicas in enumerate(self.buckets) if shard_id in replicas)


@dataclass(frozen=True)
class Bundle:
    """Versions that must move together; a route points at exactly one."""

    name: str
    query_embedding: VersionRef
    item_embedding: VersionRef
    index: VersionRef
    feature_set: VersionRef | None = None


@dataclass(frozen=True)
class Route:
    """Serving code names a route, never an index version.

    A canary bundle takes `canary_share` of the traffic, chosen by a stable
    hash of the request's subject (one user sees one bundle); a shadow bundle
    is searched in the background and only measured, never returned.
    """

    name: str
    bundle: str
    canary_bundle: str = ""
    canary_share: float = 0.0
    shadow_bundle: str = ""


@dataclass(frozen=True)
class RouteChange:
    """One entry of a route's history: who changed it, when, from, to, why."""

    route: str
    revision: int
    who: str
    when: str
    why: str
    before: Route | None
    after: Route | None


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    display_name: str = ""
    # Serving class for metrics labels and quotas, e.g. "gold", "standard".
    tenant_class: str = "standard"
    # Empty means every purpose is allowed for this tenant.
    allowed_purposes: tuple[str, ...] = ()
    # Buckets of each index this tenant's data lives in; empty means all.
    buckets: tuple[int, ...] = ()


@dataclass(frozen=True)
class ShardStateIntent:
    """An operator's wish for a shard (e.g. draining before a restart), kept
    apart from the shard's own lease-bound registration so it survives the
    shard restarting and is not overwritten by it."""

    shard_id: str
    state: ShardState
    reason: str = ""


@dataclass(frozen=True)
class ShardMember:
    shard_id: str
    address: str
    state: ShardState = ShardState.SERVING
    metrics_address: str = ""


@dataclass(frozen=True)
class DualWrite:
    """One per family: while `enabled`, writes of `from_version` are also
    written to `to_version` (through the coordinator's write path)."""

    family: str
    from_version: str
    to_version: str
    enabled: bool = True
    why: str = ""


@dataclass(frozen=True)
class VersionRetention:
    """When a deprecated index version stops being a rollback target."""

    index: VersionRef
    deprecated_at: str
    keep_until: str
    archived_at: str = ""


@dataclass(frozen=True)
class Retirement:
    """A feature group or feature set version taken out of service for good:
    its definition leaves the registry, shards drop a group's rows, and the
    same version can never be applied again (its old rows would not match
    what a reader expects of it)."""

    kind: str
    name: str
    version: str
    who: str
    when: str
    why: str = ""


def rollback_target(changes: Sequence[RouteChange]) -> Route | None:
    """What a rollback of the route would point it back at (the state before
    its last change), from its history in order; None when there is none."""
    made = [c for c in changes if c.after is not None]
    return made[-1].before if made else None
