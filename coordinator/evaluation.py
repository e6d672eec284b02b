"""Evaluation of index versions before they serve (DESIGN §11), for
`EvaluationService`: a search on one index version without a route (a
version is measured before any route may point at it), each shard's
recall against exact search on a sample of its own stored vectors, and a
lookup of keys in one index version (coverage: the rows that version holds,
not those of the embedding version's serving index).

Searches reuse the whole query path (`run_search`: access checks, fanout,
merge) on a route resolved to the index version directly, so what is
measured is what a route would serve.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from coordinator.access import check_access, require_tenant
from coordinator.lookups import Lookups
from coordinator.model import Access, SearchQuery, SearchResult
from coordinator.search import SearchExecutor
from coordinator.search_request import run_search
from coordinator.snapshots import RegistryView
from core.domain import EntityKey, VersionRef
from core.embedding_columns import EmbeddingColumns
from core.errors import FailedPrecondition, InvalidArgument, Unavailable
from core.recall import check_recall_sample
from registry.model import Bundle, IndexVersion, Route, Status
from registry.snapshot import ResolvedRoute, Snapshot

EVALUATION_ROUTE = "(evaluate)"
MAX_QUERIES = 1000


@dataclass(frozen=True)
class ShardRecall:
    shard_id: str
    queries: int
    recall: float
    recall_by_kind: dict[str, float] = field(default_factory=dict)
    rows_by_kind: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    # (query, segment) pairs each kind's recall was measured on.
    queries_by_kind: dict[str, int] = field(default_factory=dict)


class RecallCheckable(Protocol):
    async def check_recall(
        self, index: VersionRef, k: int, sample: int, seed: int, timeout: float
    ) -> ShardRecall: ...


def measurable(index: IndexVersion) -> IndexVersion:
    """`index`, if it can be measured: a failed or archived one holds
    nothing to measure (its placement may be gone)."""
    if index.status in (Status.FAILED, Status.ARCHIVED):
        raise FailedPrecondition(f"index version {index.ref} is {index.status.value}")
    return index


def direct_route(snap: Snapshot, index: IndexVersion) -> ResolvedRoute:
    """A route to `index` alone, for measuring it (never stored)."""
    measurable(index)
    family = snap.family(index.embedding.name)
    route = Route(EVALUATION_ROUTE, EVALUATION_ROUTE)
    bundle = Bundle(EVALUATION_ROUTE, index.embedding, index.embedding, index.ref)
    return ResolvedRoute(
        route, bundle, index, family, family, snap.placement(index.ref), "evaluate"
    )


class Evaluator:
    def __init__(
        self,
        registry: RegistryView,
        executor: SearchExecutor,
        checkers: Callable[[str, str], RecallCheckable],
        lookups: Lookups,
    ) -> None:
        self.registry = registry
        self.executor = executor
        self.checkers = checkers
        self.lookups = lookups

    async def search_index(
        self, access: Access, ref: VersionRef, queries: np.ndarray, k: int, timeout: float
    ) -> list[SearchResult]:
        if queries.ndim != 2 or not 1 <= len(queries) <= MAX_QUERIES:
            raise InvalidArgument(
                f"expected 1..{MAX_QUERIES} query rows, got shape {queries.shape}"
            )
        snap, index = await self.registry.fresh(lambda s: s.index(ref))
        resolved = direct_route(snap, index)
        check_access(access, resolved.item_family, snap)
        t0 = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + timeout
        return list(
            await asyncio.gather(
                *(
                    run_search(
                        self.registry,
                        self.executor,
                        SearchQuery(EVALUATION_ROUTE, access, row, k),
                        resolved,
                        deadline,
                        t0,
                    )
                    for row in queries
                )
            )
        )

    async def lookup_index(
        self,
        access: Access,
        ref: VersionRef,
        keys: Sequence[EntityKey],
        include_vectors: bool,
        timeout: float,
    ) -> EmbeddingColumns:
        """One answer per key, in order, from index version `ref` itself."""

        def index_of(s: Snapshot) -> IndexVersion:
            require_tenant(s, access.tenant_id)
            return measurable(s.index(ref))

        snap, index = await self.registry.fresh(index_of)
        _, found = await self.lookups.read_index(
            access, snap, index, keys, include_vectors, timeout
        )
        return found

    async def check_recall(
        self, ref: VersionRef, k: int, sample: int, seed: int, timeout: float
    ) -> list[ShardRecall]:
        """Every serving shard that holds buckets of `ref` (all replicas: a
        replica that built a worse index is a finding, not noise)."""
        snap, index = await self.registry.fresh(lambda s: s.index(ref))
        if not 1 <= k <= index.max_k:
            raise InvalidArgument(f"k={k}: expected 1..{index.max_k}")
        check_recall_sample(sample)
        members = []
        for shard_id in snap.placement(ref).shards():
            member = snap.serving_shard(shard_id)
            if member is None:
                raise Unavailable(f"shard {shard_id} of {ref} is not serving; retry when it is")
            members.append(member)
        return list(
            await asyncio.gather(
                *(
                    self.checkers(m.shard_id, m.address).check_recall(ref, k, sample, seed, timeout)
                    for m in members
                )
            )
        )


def shard_results(results: Sequence[SearchResult]) -> list[list[tuple[str, float]]]:
    return [[(h.key.entity_id, h.score) for h in r.hits] for r in results]
