"""The coordinator's request and result types (plain data, no protobuf)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from coordinator.exclusion import BucketStats
from coordinator.merge import Hit
from core.domain import AttrValue, EntityKey, Metric, VersionRef
from core.filters import Filter
from registry.model import IndexVersion


@dataclass(frozen=True)
class Access:
    tenant_id: str
    purpose: str = ""
    subject_id: str = ""
    principal: str = ""


@dataclass(frozen=True)
class SearchQuery:
    route: str
    access: Access
    vector: np.ndarray
    k: int
    filter: Filter | None = None
    require_complete: bool = False
    cursor: str = ""
    skip_rerank: bool = False


@dataclass(frozen=True)
class ShardQuery:
    vector: np.ndarray
    k: int
    tenant_id: str
    filter: Filter | None = None
    # Later pages (coordinator.cursor): strictly after this order key, written
    # no later than `max_sequence` (None: no limit; 0 is a pin, to a shard
    # that held nothing yet).
    after: tuple[float, EntityKey] | None = None
    max_sequence: int | None = None
    served: int = 0
    skip_rerank: bool = False
    # Who the query is for (the shard checks the vouch: coordinator.vouching).
    principal: str = ""
    purpose: str = ""


@dataclass(frozen=True)
class WriteRecord:
    key: EntityKey
    vector: np.ndarray
    source_version: int = 0
    model_version: str = ""
    created_at: int = 0
    attributes: dict[str, AttrValue] = field(default_factory=dict)
    norm: float = 0.0


@dataclass(frozen=True, eq=False)
class ShardAnswer:
    """One query's answer from a shard, as arrays: hit i is `scores[i]`,
    `keys[i]`, answered by `shard_ids[i]` from `buckets[i]`. No object per
    hit until the merge picks the winners (`coordinator.merge.merge_ranked`)."""

    scores: np.ndarray  # float64 (exact float32 scores, or calibrated ones)
    keys: Sequence[EntityKey]
    shard_ids: Sequence[str]
    buckets: np.ndarray  # int64
    candidates: int
    sequence: int = 0
    approximate: bool = False
    reference_scores: tuple[float, ...] = ()

    @property
    def hits(self) -> list[Hit]:
        return [
            Hit(s, key, sid, b)
            for s, key, sid, b in zip(
                self.scores.tolist(), self.keys, self.shard_ids, self.buckets.tolist(), strict=True
            )
        ]

    @classmethod
    def of(
        cls,
        hits: Sequence[Hit],
        candidates: int,
        sequence: int = 0,
        approximate: bool = False,
        reference_scores: tuple[float, ...] = (),
    ) -> ShardAnswer:
        return cls(
            np.array([h.score for h in hits], dtype=np.float64),
            [h.key for h in hits],
            [h.shard_id for h in hits],
            np.array([h.bucket for h in hits], dtype=np.int64),
            candidates,
            sequence,
            approximate,
            reference_scores,
        )


@dataclass(frozen=True, eq=False)
class IndexSummary:
    """Balls (centroids with radii) covering every row a shard holds of one
    index version, and per bucket (numeric ranges, tenants with rows): what
    bounds the shard's scores and proves buckets empty for a filter."""

    metric: Metric
    centroids: np.ndarray  # (n, d) float64, over all segments
    radii: np.ndarray  # (n,) float64
    buckets: dict[int, tuple[BucketStats, frozenset[str]]]
    # The shard's write sequence the summary covers: every row written at or
    # before it is inside. None: the shard did not say (one from before it).
    sequence: int | None = None


@dataclass(frozen=True, eq=False)
class ShardBounds:
    """Per query, an upper bound on the scores a shard can return, from a
    summary covering every row it held at write sequence `sequence`. A
    search that skips the shard on them reads it at that sequence on its
    next pages (coordinator.cursor): the rows it held then are the ones the
    bound proved could not make this page."""

    scores: np.ndarray  # float64, one per query
    sequence: int


@dataclass(frozen=True)
class ShardIndex:
    """What a shard says of one index version it holds (Describe)."""

    index: VersionRef
    live_count: int
    tombstones: int
    # None when some rows are not covered by a ball: the bound is unknown.
    summary: IndexSummary | None


@dataclass(frozen=True)
class Diagnostics:
    resolve_ms: float
    fanout_ms: float
    merge_ms: float
    shards_searched: int
    candidates: int
    shards_skipped: int = 0
    hedges_fired: int = 0
    arm: str = "primary"


@dataclass(frozen=True)
class ShardTrace:
    """What happened to one shard of one search (for SearchDebug)."""

    shard_id: str
    buckets: tuple[int, ...]
    bound: float | None
    outcome: str  # searched | skipped_by_bound | failed | timed_out
    wave: int
    latency_ms: float = 0.0
    candidates: int = 0
    error: str = ""
    hedged: bool = False
    # The shard's write sequence: when it answered (searched), or that of the
    # summary it was skipped on (skipped_by_bound).
    sequence: int = 0


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]  # in the global order
    route: str
    bundle: str
    index: IndexVersion
    metric: str
    diagnostics: Diagnostics
    partial: bool = False
    missing_buckets: tuple[int, ...] = ()
    completeness: float = 1.0
    next_cursor: str = ""
    trace: tuple[ShardTrace, ...] = ()
    filter_selectivity: float = 1.0


@dataclass(frozen=True, eq=False)
class EntityColumns:
    """A request's entities: distinct types, per entity an index into them
    (uint8) and its id. The tenant is the caller's."""

    types: list[str]
    type_index: np.ndarray
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class GroupFetch:
    """What a shard is asked of one feature group: features, for entities of
    the group's type (of the request's tenant)."""

    group: VersionRef
    features: tuple[str, ...]
    entity_ids: list[str]


@dataclass(frozen=True, eq=False)
class FeatureBlock:
    """Resolved values of one group for some entities of one type: `rows`
    are their positions among the request's entities of that type;
    `columns` stays in wire form (coordinator.features.FeatureWire)."""

    group: VersionRef
    entity_type: str
    outputs: tuple[str, ...]
    rows: np.ndarray
    columns: object


@dataclass(frozen=True)
class FeatureResult:
    names_by_type: dict[str, list[str]]
    # For each group read, blocks that together hold each entity of its type once.
    blocks: list[FeatureBlock]
    missing_by_reason: dict[str, int]
    stale: int
    shards: int
    latency_ms: float
