"""A standalone exact segment: every live vector of a set, searched by brute
force and rescored canonically, with no lifecycle around it.

The shard's storage engine uses `GrowingSegment` and sealed segments
directly; this small facade keeps the original flat-segment API for code
that wants exact search over an in-memory set — e.g. the coordinator's
in-memory test shards — so it computes scores exactly as a real shard does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.domain import AttrType, AttrValue, EntityKey, Metric
from core.filters import Filter
from shard_server.growing_segment import GrowingSegment
from shard_server.segment import DEFAULT_OPTIONS, Hit

__all__ = ["FlatSegment", "Hit", "SegmentResult"]


@dataclass(frozen=True)
class SegmentResult:
    hits: list[Hit]
    candidates: int


class FlatSegment:
    kind = "flat"

    def __init__(
        self, dim: int, metric: Metric, schema: Mapping[str, AttrType], capacity: int = 1024
    ) -> None:
        self.dim = dim
        self.metric = metric
        self._segment = GrowingSegment("flat", dim, metric, schema, capacity)
        self._seq = 0

    def __len__(self) -> int:
        return self._segment.live_count

    def upsert(
        self, key: EntityKey, vector: np.ndarray, attrs: Mapping[str, AttrValue], bucket: int
    ) -> None:
        self._seq += 1
        self._segment.upsert(key, vector, attrs, bucket, self._seq)

    def delete(self, key: EntityKey) -> bool:
        return self._segment.delete(key)

    def search(
        self, query: np.ndarray, k: int, tenant_id: str, flt: Filter | None
    ) -> SegmentResult:
        res = self._segment.search(query, k, tenant_id, flt, DEFAULT_OPTIONS)
        return SegmentResult(res.hits, res.candidates)
