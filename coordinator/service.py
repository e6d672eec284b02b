"""The retrieval engine: the one object the servicer calls. No protobuf here.

A façade that composes the coordinator's parts, each in its own module:

- `snapshots`: the registry view and its non-blocking re-reads;
- `admission`: load shedding;
- `search_request` (checks, pins, completeness) over `search` (the fanout),
  with `shadow` traffic and `cursor` pagination;
- `writes` (validation in `records`, buckets in `buckets`, the quorum protocol
  in `quorum`, centroid move-deletes in `moves`);
- `lookups` (failover by the rule in `failover`, shared with search);
- `access`: purpose, tenant and key ownership checks.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace

from coordinator import metrics
from coordinator.access import require_tenant
from coordinator.admission import Admission
from coordinator.background import Background
from coordinator.config import Limits
from coordinator.fanout import FanoutSettings
from coordinator.lookups import Lookups
from coordinator.model import Access, SearchQuery, SearchResult, WriteRecord
from coordinator.plans import RoutePlans
from coordinator.quorum import ReplicaRepair
from coordinator.replicas import ReplicaTracker
from coordinator.search import BoundsProvider, SearchExecutor, no_bounds, no_stats
from coordinator.search_request import run_search, run_searches
from coordinator.shadow import ShadowSlots
from coordinator.shard import ShardFactory
from coordinator.snapshots import RegistryView, SnapshotSource
from coordinator.summaries import SummaryCache
from coordinator.writes import Writes
from core import tracing
from core.domain import EntityKey, VersionRef
from core.embedding_columns import EmbeddingColumns
from core.record_columns import RecordColumns
from registry import codec
from registry.snapshot import ResolvedRoute, Snapshot

__all__ = ["Limits", "RetrievalEngine"]


class RetrievalEngine:
    def __init__(
        self,
        cache: SnapshotSource,
        shards: ShardFactory,
        limits: Limits | None = None,
        tracker: ReplicaTracker | None = None,
        bounds: BoundsProvider = no_bounds,
        fanout: FanoutSettings | None = None,
        summaries: SummaryCache | None = None,
        registry: RegistryView | None = None,
    ) -> None:
        self.registry = registry or RegistryView(cache)
        self.shards = shards
        self.limits = limits or Limits()
        self.tracker = tracker or ReplicaTracker()
        self.summaries = summaries
        if summaries is not None:
            bounds = summaries.bounds
        self.executor = SearchExecutor(
            shards,
            self.tracker,
            bounds,
            fanout,
            stats=summaries.bucket if summaries else no_stats,
        )
        self.admission_control = Admission(self.limits)
        self.background = Background()
        # Replica writes that failed, retried in the background (index and feature writes).
        self.repair = ReplicaRepair(self.background.spawn, address_of=self._registered_at)
        self.writes = Writes(
            self.registry, shards, self.limits, self._written, self.background, self.repair
        )
        self.lookups = Lookups(self.registry, shards, self.limits, fanout, self.tracker)
        self.plans = RoutePlans()
        self.shadows = ShadowSlots()

    def _registered_at(self, shard_id: str) -> str | None:
        """Where a shard is registered now: a repaired write goes there (a
        restarted shard has a new address)."""
        member = self.registry.snapshot.shards.get(shard_id)
        return member.address if member is not None else None

    def _written(self, shard_id: str) -> None:
        """A write reached (or is about to reach) the shard: its cached summary
        may no longer bound its rows, so it must not be used to skip it."""
        if self.summaries is not None:
            self.summaries.invalidate(shard_id)

    def admission(self, weight: int = 1) -> AbstractAsyncContextManager[None]:
        """Sheds load (RESOURCE_EXHAUSTED) instead of queueing without bound."""
        return self.admission_control.admit(weight)

    async def drain_background(self) -> None:
        await self.background.drain()

    # --- search ---------------------------------------------------------------

    async def describe_route(
        self, name: str, subject: str = "", tenant_id: str | None = None
    ) -> ResolvedRoute:
        def resolve(s: Snapshot) -> ResolvedRoute:
            if tenant_id is not None:
                require_tenant(s, tenant_id)  # registered a moment ago elsewhere?
            return self.plans.route(s, name, subject)

        _, resolved = await self.registry.fresh(resolve)
        return resolved

    async def _resolve(self, q: SearchQuery) -> ResolvedRoute:
        with tracing.span("coordinator.resolve", route=q.route):
            resolved = await self.describe_route(q.route, q.access.subject_id, q.access.tenant_id)
        metrics.labeled(metrics.ROUTE_ARM, q.route, resolved.arm).inc()
        return resolved

    async def search(self, q: SearchQuery, timeout: float) -> SearchResult:
        return await self._search(q, timeout, _deadline(timeout))

    async def _search(self, q: SearchQuery, timeout: float, deadline: float) -> SearchResult:
        t0 = time.perf_counter()
        resolved = await self._resolve(q)
        result = await run_search(self.registry, self.executor, q, resolved, deadline, t0)
        self._shadow(q, resolved, result, timeout)
        return result

    def _shadow(
        self, q: SearchQuery, resolved: ResolvedRoute, result: SearchResult, timeout: float
    ) -> None:
        """The route's shadow bundle, if any, searched in the background and
        compared with the answer given."""
        shadow = self.plans.shadow(self.registry.snapshot, resolved)
        if shadow is not None and resolved.arm == "primary":

            async def search_shadow() -> SearchResult:
                # In the background, with a budget of its own.
                return await run_search(
                    self.registry, self.executor, q, shadow, _deadline(timeout), time.perf_counter()
                )

            compare = self.shadows.run(q.route, result, search_shadow)
            if compare is not None:
                self.background.spawn(compare)

    async def search_many(
        self, queries: Sequence[SearchQuery], timeout: float
    ) -> list[SearchResult]:
        """Each query's `search` answer. First pages go through
        `run_searches` (those of one route, index version and bucket set
        share one call per shard, not a call, a task and a wait per query and
        shard); later pages go as `search` sends them."""
        t0 = time.perf_counter()
        deadline = _deadline(timeout)
        resolved = [await self._resolve(q) for q in queries]
        firsts = [i for i, q in enumerate(queries) if not q.cursor]
        # Later pages: each pinned to the replicas its first page read.
        pages = [i for i, q in enumerate(queries) if q.cursor]

        async def first_pages() -> list[tuple[int, SearchResult]]:
            if not firsts:
                return []
            requests = [(queries[i], resolved[i]) for i in firsts]
            results = await run_searches(self.registry, self.executor, requests, deadline, t0)
            return list(zip(firsts, results, strict=True))

        async def page(i: int) -> list[tuple[int, SearchResult]]:
            one = await run_search(
                self.registry, self.executor, queries[i], resolved[i], deadline, t0
            )
            return [(i, one)]

        out: list[SearchResult | None] = [None] * len(queries)
        for part in await asyncio.gather(first_pages(), *map(page, pages)):
            for i, result in part:
                out[i] = result
        answers = [r for r in out if r is not None]
        assert len(answers) == len(queries)
        for q, r, result in zip(queries, resolved, answers, strict=True):
            self._shadow(q, r, result, timeout)
        return answers

    async def search_debug(self, q: SearchQuery, timeout: float) -> tuple[SearchResult, str]:
        deadline = _deadline(timeout)  # the caller's, for both searches
        result = await self._search(q, timeout, deadline)
        resolved = await self.describe_route(q.route, q.access.subject_id)
        bundle_json = json.dumps(json.loads(codec.encode(resolved.bundle))["spec"], sort_keys=True)
        selectivity = 1.0
        if q.filter is not None:
            # Shards count the rows that pass tenant and filter; the same
            # search without the filter counts the tenant's rows.
            base = await self._search(replace(q, filter=None, k=1), timeout, deadline)
            selectivity = result.diagnostics.candidates / max(1, base.diagnostics.candidates)
        return replace(result, filter_selectivity=selectivity), bundle_json

    # --- writes and lookups ---------------------------------------------------

    async def upsert(
        self, access: Access, embedding: VersionRef, records: Sequence[WriteRecord], timeout: float
    ) -> tuple[int, int]:
        return await self.writes.upsert(access, embedding, records, timeout)

    async def upsert_columns(
        self, access: Access, embedding: VersionRef, records: RecordColumns, timeout: float
    ) -> tuple[int, int]:
        return await self.writes.upsert_columns(access, embedding, records, timeout)

    async def delete(
        self,
        access: Access,
        embedding: VersionRef,
        keys: Sequence[EntityKey],
        source_version: int,
        timeout: float,
    ) -> int:
        return await self.writes.delete(access, embedding, keys, source_version, timeout)

    async def batch_get(
        self,
        access: Access,
        embedding: VersionRef,
        keys: Sequence[EntityKey],
        include_vectors: bool,
        timeout: float,
        include_attributes: bool = False,
    ) -> tuple[list[EntityKey], EmbeddingColumns]:
        return await self.lookups.batch_get(
            access, embedding, keys, include_vectors, timeout, include_attributes
        )


def _deadline(timeout: float) -> float:
    """The request's deadline in event-loop time, fixed on its arrival: what
    resolving its route takes (a registry re-read included) comes out of the
    time its shard calls get, and so does a second run on a fresh snapshot."""
    return asyncio.get_running_loop().time() + timeout
