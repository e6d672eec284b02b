"""A partition's request and result types (plain data): what the shard
service asks an `IndexPartition` and what it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

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
    # written no later than `max_sequence` (0 = no limit).
    after: tuple[float, EntityKey] | None = None
    max_sequence: int = 0
    served: int = 0


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    # Rows that passed tenant and filter, over all segments.
    candidates: int
    # plan → segments that answered by it
    plans: dict[str, int] = field(default_factory=dict)
    approximate: bool = False
    sequence: int = 0
    reference_scores: tuple[float, ...] = ()
