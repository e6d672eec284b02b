"""In-memory shards for coordinator unit tests: the `Shard` protocol over the
real exact segment, with optional delay and failure injection."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from coordinator.merge import Hit
from coordinator.model import Lookup, ShardAnswer, ShardQuery, WriteRecord
from core.domain import AttrType, EntityKey, Metric, VersionRef
from core.errors import VecshardError
from core.scoring import canonical_scores, prepare_query
from registry.model import Placement, ShardMember
from registry.snapshot import Snapshot
from shard_server.flat_segment import FlatSegment

INDEX = VersionRef("ix", "v1")


@dataclass
class InMemoryShard:
    shard_id: str
    metric: Metric
    dim: int
    address: str = ""
    delay: float = 0.0
    error: VecshardError | None = None
    calls: int = 0
    segment: FlatSegment = field(init=False)
    vectors: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.address = self.address or f"mem://{self.shard_id}"
        self.segment = FlatSegment(self.dim, self.metric, {"price": AttrType.FLOAT})

    def add(self, key: EntityKey, vec: np.ndarray, bucket: int) -> None:
        self.segment.upsert(key, vec, {}, bucket)
        self.vectors.append(vec)

    def true_bound(self, query: np.ndarray) -> float:
        """The exact best score this shard can return (a tight upper bound)."""
        if not self.vectors:
            return float("-inf")
        q = prepare_query(query, self.metric, self.metric is Metric.COSINE)
        return float(canonical_scores(self.metric, q, np.stack(self.vectors)).max())

    async def search(
        self, index: VersionRef, queries: Sequence[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        out = []
        for q in queries:
            vec = prepare_query(q.vector, self.metric, self.metric is Metric.COSINE)
            res = self.segment.search(vec, q.k, q.tenant_id, q.filter)
            out.append(
                ShardAnswer(
                    [Hit(h.score, h.key, self.shard_id, h.bucket) for h in res.hits], res.candidates
                )
            )
        return out

    async def upsert(
        self, index: VersionRef, records: Sequence[tuple[WriteRecord, int]], timeout: float
    ) -> tuple[int, int]:
        raise NotImplementedError

    async def delete(
        self, index: VersionRef, keys: Sequence[EntityKey], source_version: int, timeout: float
    ) -> int:
        raise NotImplementedError

    async def batch_get(
        self, index: VersionRef, keys: Sequence[EntityKey], include_vectors: bool, timeout: float
    ) -> list[Lookup]:
        raise NotImplementedError


def snapshot_for(shards: Sequence[InMemoryShard], buckets: Sequence[Sequence[str]]) -> Snapshot:
    return Snapshot(
        revision=1,
        placements={INDEX: Placement(INDEX, tuple(tuple(b) for b in buckets))},
        shards={s.shard_id: ShardMember(s.shard_id, s.address) for s in shards},
    )
