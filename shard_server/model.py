"""A partition's request and result types (plain data): what the shard
service asks an `IndexPartition` and what it answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from core.domain import EntityKey
from core.filters import Filter
from shard_server import records as rec
from shard_server.segment import DEFAULT_OPTIONS, Hit, SearchOptions


class LookupStatus(Enum):
    FOUND = "found"
    MISSING = "missing"
    DELETED = "deleted"


# Exact scores returned with an approximate answer, for calibration.
REFERENCE_SAMPLE = 4


@dataclass(frozen=True)
class Lookup:
    key: EntityKey
    status: LookupStatus
    record: rec.Record | None = None


@dataclass(frozen=True)
class WriteResult:
    written: int
    ignored_stale: int
    sequence: int


@dataclass(frozen=True)
class Query:
    vector: np.ndarray
    k: int
    tenant_id: str
    filter: Filter | None = None
    options: SearchOptions = DEFAULT_OPTIONS
    # Pagination (see coordinator.cursor): items strictly after this order key,
    # written no later than `max_sequence` (None = no limit; 0 is a pin: a
    # shard pinned before its first write holds nothing for the query).
    after: tuple[float, EntityKey] | None = None
    max_sequence: int | None = None
    served: int = 0


@dataclass(frozen=True, eq=False)
class SearchResult:
    """One query's answer in the global order, as arrays (the packed wire's
    shape): hit i is `scores[i]`, `keys[i]`, `buckets[i]`, `seqs[i]`."""

    scores: np.ndarray  # float32
    keys: Sequence[EntityKey]
    buckets: np.ndarray  # int64
    seqs: np.ndarray  # int64
    # Rows that passed tenant and filter, over all segments.
    candidates: int
    # plan → segments that answered by it
    plans: dict[str, int] = field(default_factory=dict)
    approximate: bool = False
    sequence: int = 0
    reference_scores: tuple[float, ...] = ()

    @property
    def hits(self) -> list[Hit]:
        return [
            Hit(s, key, b, q)
            for s, key, b, q in zip(
                self.scores.tolist(),
                self.keys,
                self.buckets.tolist(),
                self.seqs.tolist(),
                strict=True,
            )
        ]

    @classmethod
    def from_hits(cls, hits: Sequence[Hit], candidates: int, **rest: Any) -> SearchResult:
        return cls(
            np.array([h.score for h in hits], dtype=np.float32),
            [h.key for h in hits],
            np.array([h.bucket for h in hits], dtype=np.int64),
            np.array([h.seq for h in hits], dtype=np.int64),
            candidates,
            **rest,
        )
