"""The retrieval engine: resolve, check, fan out, merge. No protobuf here.

Search: route → bundle → index (compatibility checked in `registry.snapshot`),
then one serving replica per bucket, one call per shard in parallel, and the
pure merge in `coordinator.merge`. Writes go to every replica of the record's
bucket in every index version built on the embedding version.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from coordinator import cursor as cursors
from coordinator import metrics
from coordinator.model import (
    Access,
    Diagnostics,
    Lookup,
    LookupStatus,
    SearchQuery,
    SearchResult,
    ShardQuery,
    WriteRecord,
)
from coordinator.partial import require_complete
from coordinator.replicas import ReplicaTracker
from coordinator.search import (
    BoundsProvider,
    Execution,
    FanoutSettings,
    SearchExecutor,
    no_bounds,
    no_stats,
)
from coordinator.shard import Shard, ShardFactory
from coordinator.snapshots import RegistryView
from coordinator.summaries import SummaryCache
from core.domain import EntityKey, Metric, VersionRef
from core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from core.filters import validate_attributes, validate_filter
from core.vectors import check_vector
from registry import codec
from registry.model import EmbeddingFamily, IndexVersion, Placement, Tenant
from registry.placement import decode_centroids, nearest, tenant_bucket
from registry.snapshot import (
    ResolvedRoute,
    Snapshot,
    indexes_for_embedding,
    resolve_route,
    resolve_shadow,
)
from registry.watcher import SnapshotCache

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    max_batch_records: int = 10_000
    max_lookup_keys: int = 10_000
    # Requests (searches count one each) in flight before new ones are shed.
    max_in_flight_requests: int = 512
    max_search_batch: int = 256


async def _swallow(task: asyncio.Future[object]) -> None:
    """Awaits a background replica write; its failure was already tolerated."""
    with contextlib.suppress(Exception):
        await task


_RANK = {LookupStatus.MISSING: 0, LookupStatus.DELETED: 1, LookupStatus.FOUND: 2}


def _better(a: Lookup | None, b: Lookup) -> Lookup:
    """When several shards answer for a key: found beats deleted beats
    missing; between two found copies, the newer source_version."""
    if a is None or _RANK[b.status] > _RANK[a.status]:
        return b
    if a.status is b.status is LookupStatus.FOUND and a.record and b.record:
        return b if b.record.source_version > a.record.source_version else a
    return a


def _now_micros() -> int:
    return time.time_ns() // 1000


class RetrievalEngine:
    def __init__(
        self,
        cache: SnapshotCache,
        shards: ShardFactory,
        limits: Limits | None = None,
        tracker: ReplicaTracker | None = None,
        bounds: BoundsProvider = no_bounds,
        fanout: FanoutSettings | None = None,
        summaries: SummaryCache | None = None,
        registry: RegistryView | None = None,
    ) -> None:
        self.cache = cache
        self.registry = registry or RegistryView(cache)
        self.shards = shards
        self.limits = limits or Limits()
        self.tracker = tracker or ReplicaTracker()
        self.summaries = summaries
        if summaries is not None:
            bounds = summaries.bound
        self.executor = SearchExecutor(
            shards, self.tracker, bounds, fanout, stats=summaries.bucket if summaries else no_stats
        )
        self._in_flight = 0
        self._tasks: set[asyncio.Future[None]] = set()

    # --- registry -------------------------------------------------------------

    async def describe_route(self, name: str, subject: str = "") -> ResolvedRoute:
        _, resolved = await self.registry.fresh(lambda s: resolve_route(s, name, subject))
        return resolved

    @staticmethod
    def _check_purpose(access: Access, family: EmbeddingFamily) -> None:
        if family.allowed_purposes and access.purpose not in family.allowed_purposes:
            raise PermissionDenied(
                f"purpose {access.purpose!r} may not read embedding family {family.name!r}; "
                f"allowed purposes: {list(family.allowed_purposes)}"
            )

    def _replica_targets(
        self, snap: Snapshot, index: IndexVersion, placement: Placement
    ) -> dict[str, Shard]:
        """One serving replica per bucket (the first listed that is serving)."""
        targets: dict[str, Shard] = {}
        for bucket, replicas in enumerate(placement.buckets):
            member = next((m for m in map(snap.serving_shard, replicas) if m is not None), None)
            if member is None:
                raise Unavailable(
                    f"bucket {bucket} of index {index.ref} has no serving replica "
                    f"(placed on {list(replicas)})"
                )
            targets.setdefault(member.shard_id, self.shards(member.shard_id, member.address))
        return targets

    def _all_replicas(
        self, snap: Snapshot, index: IndexVersion, bucket: int, placement: Placement
    ) -> list[Shard]:
        """The registered replicas of a bucket. Writes need `write_quorum` of
        them (default all): with fewer registered, the write is refused before
        anything is sent. A replica that is down when a lower quorum is met
        catches up from a peer before it serves again."""
        replicas = placement.buckets[bucket]
        need = min(index.write_quorum or len(replicas), len(replicas))
        out = [
            self.shards(m.shard_id, m.address)
            for m in (snap.shards.get(s) for s in replicas)
            if m is not None
        ]
        if len(out) < need:
            missing = [s for s in replicas if s not in snap.shards]
            raise Unavailable(
                f"bucket {bucket} of index {index.ref}: replica(s) {missing} not registered; "
                f"writes need {need} of {len(replicas)}"
            )
        return out

    # --- search ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def admission(self, weight: int = 1) -> AsyncIterator[None]:
        """Sheds load with RESOURCE_EXHAUSTED instead of queueing without bound:
        a queue only turns overload into timeouts for everyone."""
        if weight > self.limits.max_search_batch:
            raise InvalidArgument(
                f"{weight} searches in one batch, expected at most {self.limits.max_search_batch}"
            )
        if self._in_flight + weight > self.limits.max_in_flight_requests:
            metrics.SHED.labels("coordinator_in_flight").inc()
            raise ResourceExhausted(
                f"coordinator has {self._in_flight} searches in flight (limit "
                f"{self.limits.max_in_flight_requests}); retry with backoff"
            )
        self._in_flight += weight
        try:
            yield
        finally:
            self._in_flight -= weight

    async def search_many(
        self, queries: Sequence[SearchQuery], timeout: float
    ) -> list[SearchResult]:
        return list(await asyncio.gather(*(self.search(q, timeout) for q in queries)))

    async def search_debug(self, q: SearchQuery, timeout: float) -> tuple[SearchResult, str]:
        result = await self.search(q, timeout)
        resolved = await self.describe_route(q.route, q.access.subject_id)
        bundle_json = json.dumps(json.loads(codec.encode(resolved.bundle))["spec"], sort_keys=True)
        selectivity = 1.0
        if q.filter is not None:
            # Shards count the rows that pass tenant and filter; the same
            # search without the filter counts the tenant's rows.
            base = await self.search(replace(q, filter=None, k=1), timeout)
            selectivity = result.diagnostics.candidates / max(1, base.diagnostics.candidates)
        return replace(result, filter_selectivity=selectivity), bundle_json

    async def search(self, q: SearchQuery, timeout: float) -> SearchResult:
        t0 = time.perf_counter()
        resolved = await self.describe_route(q.route, q.access.subject_id)
        metrics.ROUTE_ARM.labels(q.route, resolved.arm).inc()
        result = await self._search_resolved(q, resolved, timeout, t0)
        shadow = resolve_shadow(self.registry.snapshot, resolved.route)
        if shadow is not None and resolved.arm == "primary":
            self._background(self._shadow(q, shadow, result, timeout))
        return result

    def _background(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # a strong reference until it finishes
        task.add_done_callback(self._tasks.discard)

    async def drain_background(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _shadow(
        self, q: SearchQuery, shadow: ResolvedRoute, primary: SearchResult, timeout: float
    ) -> None:
        """Searches the shadow bundle; only its overlap and latency are kept."""
        route = q.route
        try:
            t0 = time.perf_counter()
            res = await self._search_resolved(q, shadow, timeout, t0)
        except Exception:  # noqa: BLE001 - a shadow failure must never reach callers
            metrics.SHADOW_ERRORS.labels(route).inc()
            return
        a, b = {h.key for h in primary.hits}, {h.key for h in res.hits}
        metrics.SHADOW_OVERLAP.labels(route).observe(len(a & b) / len(a | b) if a | b else 1.0)
        metrics.SHADOW_LATENCY_DELTA.labels(route).observe(
            (res.diagnostics.fanout_ms - primary.diagnostics.fanout_ms) / 1e3
        )

    async def _search_resolved(
        self, q: SearchQuery, resolved: ResolvedRoute, timeout: float, t0: float
    ) -> SearchResult:
        snap = self.registry.snapshot
        index, family = resolved.index, resolved.query_family
        self._check_access(q.access, resolved.item_family, snap)
        check_vector(q.vector, family.dimension, what="query_vector")
        if not 1 <= q.k <= index.max_k:
            raise InvalidArgument(f"k={q.k} is out of range; expected 1..{index.max_k}")
        if q.filter is not None:
            validate_filter(q.filter, index.attributes)
        tenant = snap.tenants.get(q.access.tenant_id)
        buckets = self._tenant_buckets(index, tenant)
        query = ShardQuery(q.vector, q.k, q.access.tenant_id, q.filter, skip_rerank=q.skip_rerank)
        qhash = cursors.query_hash(q.vector, q.k, q.access.tenant_id, q.filter)
        pins = None
        served = 0
        if q.cursor:
            cur = cursors.decode(q.cursor)
            if cur.route != q.route or cur.query_hash != qhash:
                raise InvalidArgument(
                    "cursor belongs to another search; send the same route, vector, k, tenant "
                    "and filter as the first page"
                )
            # The snapshot the first page read: its index version and replicas.
            index = snap.index(cur.index)
            pins, served = cur.shards, cur.served
            query = dataclasses.replace(query, after=(cur.last_score, cur.last_key), served=served)
            buckets = sorted({b for bs, _ in pins.values() for b in bs})
        t1 = time.perf_counter()

        execution = await self.executor.run(
            snap, index, snap.placement(index.ref), query, buckets, timeout, q.route, pins
        )
        if execution.errors and any(isinstance(e, Unavailable) for e in execution.errors):
            # A restarted shard comes back on a new address: if the registry
            # moved shards since, search once more on the fresh snapshot.
            fresh = await self.registry.moved(snap)
            if fresh is not None:
                execution = await self.executor.run(
                    fresh, index, fresh.placement(index.ref), query, buckets, timeout, q.route, pins
                )
        t2 = time.perf_counter()
        completeness = execution.completeness
        if completeness.partial:
            metrics.PARTIAL.labels(q.route).inc()
            if q.require_complete:
                require_complete(completeness, execution.errors, execution.deadline_hit)
        t3 = time.perf_counter()
        metrics.SEARCH_PHASE.labels(q.route, "resolve").observe(t1 - t0)
        metrics.SEARCH_PHASE.labels(q.route, "fanout").observe(t2 - t1)
        metrics.SHARDS_PER_QUERY.labels(q.route, "searched").observe(execution.shards_searched)
        metrics.SHARDS_PER_QUERY.labels(q.route, "skipped").observe(execution.shards_skipped)
        return SearchResult(
            hits=execution.hits,
            route=resolved.route.name,
            bundle=resolved.bundle.name,
            index=index,
            metric=resolved.item_family.metric.value,
            diagnostics=Diagnostics(
                resolve_ms=(t1 - t0) * 1e3,
                fanout_ms=(t2 - t1) * 1e3,
                merge_ms=(t3 - t2) * 1e3,
                shards_searched=execution.shards_searched,
                candidates=execution.candidates,
                shards_skipped=execution.shards_skipped,
                hedges_fired=execution.hedges_fired,
                arm=resolved.arm,
            ),
            partial=completeness.partial,
            missing_buckets=completeness.missing_buckets,
            completeness=completeness.ratio,
            trace=execution.trace,
            next_cursor=self._next_cursor(resolved, index, qhash, served, execution, pins, q.k),
        )

    @staticmethod
    def _next_cursor(
        resolved: ResolvedRoute,
        index: IndexVersion,
        qhash: str,
        served: int,
        execution: Execution,
        pins: dict[str, tuple[tuple[int, ...], int]] | None,
        k: int,
    ) -> str:
        """A cursor when the page is full. Page 1 pins every shard it asked or
        skipped by bound (skipped ones get their watermark when they first
        answer); later pages keep their pins."""
        if len(execution.hits) < k:
            return ""
        answered = {t.shard_id: t for t in execution.trace if t.outcome == "searched"}
        new_pins: dict[str, tuple[tuple[int, ...], int]] = dict(pins or {})
        for t in execution.trace:
            if t.outcome in ("searched", "skipped_by_bound"):
                old = new_pins.get(t.shard_id, (t.buckets, 0))
                seq = old[1] or (answered[t.shard_id].sequence if t.shard_id in answered else 0)
                new_pins[t.shard_id] = (old[0], seq)
        last = execution.hits[-1]
        return cursors.encode(
            cursors.Cursor(
                resolved.route.name,
                resolved.bundle.name,
                index.ref,
                qhash,
                served + len(execution.hits),
                last.score,
                last.key,
                new_pins,
            )
        )

    @staticmethod
    def _bucket(snap: Snapshot, index: IndexVersion, key: EntityKey) -> int:
        tenant = snap.tenants.get(key.tenant_id)
        return tenant_bucket(
            key.tenant_id, key.entity_id, index.num_buckets, tenant.buckets if tenant else ()
        )

    @staticmethod
    def _tenant_buckets(index: IndexVersion, tenant: Tenant | None) -> list[int]:
        own = [b for b in (tenant.buckets if tenant else ()) if 0 <= b < index.num_buckets]
        return own or list(range(index.num_buckets))

    def _check_access(self, access: Access, family: EmbeddingFamily, snap: Snapshot) -> None:
        self._check_purpose(access, family)
        tenant = snap.tenants.get(access.tenant_id)
        if (
            tenant is not None
            and tenant.allowed_purposes
            and access.purpose not in tenant.allowed_purposes
        ):
            raise PermissionDenied(
                f"tenant {tenant.tenant_id!r} does not allow purpose {access.purpose!r}; "
                f"allowed: {list(tenant.allowed_purposes)}"
            )

    # --- writes ---------------------------------------------------------------

    async def _embedding(
        self, ref: VersionRef
    ) -> tuple[Snapshot, EmbeddingFamily, list[IndexVersion]]:
        # Created a moment ago, the version may even have reached our watch
        # before its index did: FAILED_PRECONDITION re-reads too.
        snap, indexes = await self.registry.fresh(
            lambda s: indexes_for_embedding(s, ref), (NotFound, FailedPrecondition)
        )
        return snap, snap.family(ref.name), indexes

    @staticmethod
    def _own_key(key: EntityKey, access: Access, family: EmbeddingFamily, where: str) -> EntityKey:
        """Fills an empty tenant/type from the caller and family; refuses others'."""
        tenant = key.tenant_id or access.tenant_id
        if tenant != access.tenant_id:
            raise PermissionDenied(
                f"{where}: tenant {key.tenant_id!r} differs from the caller's tenant {access.tenant_id!r}"
            )
        etype = key.entity_type or family.entity_type
        if etype != family.entity_type:
            raise InvalidArgument(
                f"{where}: entity_type {key.entity_type!r}, expected {family.entity_type!r} "
                f"for family {family.name!r}"
            )
        if not key.entity_id:
            raise InvalidArgument(f"{where}: entity_id is empty, expected a non-empty id")
        return EntityKey(tenant, etype, key.entity_id)

    def _checked_records(
        self,
        access: Access,
        family: EmbeddingFamily,
        indexes: Sequence[IndexVersion],
        records: Sequence[WriteRecord],
    ) -> list[WriteRecord]:
        """Everything a shard would reject is rejected here first, so no shard
        writes part of a batch that another shard refuses."""
        if not records:
            raise InvalidArgument(
                f"upsert: no records; expected 1..{self.limits.max_batch_records}"
            )
        if len(records) > self.limits.max_batch_records:
            raise InvalidArgument(
                f"upsert: {len(records)} records in one request, expected at most "
                f"{self.limits.max_batch_records}; split the batch"
            )
        now = _now_micros()
        out = []
        for i, r in enumerate(records):
            where = f"records[{i}] {tuple(r.key)}"
            key = self._own_key(r.key, access, family, where)
            check_vector(r.vector, family.dimension, what=where)
            if (family.metric is Metric.COSINE or family.normalize) and not np.any(r.vector):
                raise InvalidArgument(
                    f"{where}: zero vector cannot be normalized (cosine); expected norm > 0"
                )
            for index in indexes:
                validate_attributes(r.attributes, index.attributes, where)
            out.append(
                replace(
                    r,
                    key=key,
                    source_version=r.source_version or now,
                    created_at=r.created_at or now,
                )
            )
        return out

    def _record_buckets(
        self, snap: Snapshot, index: IndexVersion, records: Sequence[WriteRecord]
    ) -> list[int]:
        """Each record's bucket: hash of tenant and id, or nearest centroid."""
        if index.placement != "centroid":
            return [self._bucket(snap, index, r.key) for r in records]
        placement = snap.placement(index.ref)
        if not placement.centroids:
            raise FailedPrecondition(
                f"index {index.ref} uses centroid placement but its centroids are not trained; "
                "train them first (RegistryService TrainPlacement / `vecshard registry train-placement`)"
            )
        family = snap.family(index.embedding.name)
        centroids = decode_centroids(placement.centroids, family.dimension)
        out = [0] * len(records)
        by_tenant: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(records):
            by_tenant[r.key.tenant_id].append(i)
        for tenant_id, rows in by_tenant.items():
            allowed = self._tenant_buckets(index, snap.tenants.get(tenant_id))
            picks = nearest(
                np.stack([records[i].vector for i in rows]), centroids[allowed], family.metric
            )
            for i, p in zip(rows, picks, strict=True):
                out[i] = allowed[int(p)]
        return out

    def _index_shards(
        self, snap: Snapshot, index: IndexVersion, placement: Placement
    ) -> list[Shard]:
        return [
            shard
            for b in range(index.num_buckets)
            for shard in self._all_replicas(snap, index, b, placement)
        ]

    def _written(self, shard_id: str) -> None:
        """A write reached (or is about to reach) the shard: its cached summary
        may no longer bound its rows, so it must not be used to skip it."""
        if self.summaries is not None:
            self.summaries.invalidate(shard_id)

    async def _quorum_write(
        self,
        calls: list[tuple[Shard, set[int], Callable[[], Awaitable[tuple[int, int]]], object]],
        quorum: int,
        replicas: int,
    ) -> tuple[int, int]:
        """Runs every replica write; returns once each bucket has `quorum`
        acknowledgements. Calls sharing a group carry the same records to
        different replicas: the group's first acknowledgement gives its counts
        (None: not counted). Writes past the quorum finish in the background;
        a replica that misses them catches up from a peer before it serves."""
        need = min(quorum or replicas, replicas)
        acks: dict[int, int] = defaultdict(int)
        buckets = set().union(*(bs for _, bs, _, _ in calls)) if calls else set()
        for shard, *_ in calls:
            self._written(shard.shard_id)
        tasks = {
            asyncio.ensure_future(call()): (shard, bs, counts) for shard, bs, call, counts in calls
        }
        written = ignored = 0
        counted: set[object] = set()
        errors: list[BaseException] = []
        pending = set(tasks)
        while pending and any(acks[b] < need for b in buckets):
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                shard, bs, counts = tasks[task]
                if task.exception() is not None:
                    errors.append(task.exception())  # type: ignore[arg-type]
                    continue
                self._written(shard.shard_id)
                for b in bs:
                    acks[b] += 1
                if counts is not None and counts not in counted:
                    counted.add(counts)
                    w, i = task.result()
                    written, ignored = written + w, ignored + i
        short = sorted(b for b in buckets if acks[b] < need)
        if short:
            raise (
                errors[0]
                if errors
                else Unavailable(f"buckets {short} got fewer than {need} acknowledgements")
            )
        for task in pending:
            self._background(_swallow(task))
        return written, ignored

    async def upsert(
        self, access: Access, embedding: VersionRef, records: Sequence[WriteRecord], timeout: float
    ) -> tuple[int, int]:
        snap, family, indexes = await self._embedding(embedding)
        self._check_access(access, family, snap)
        checked = self._checked_records(access, family, indexes, records)

        async def write(snap: Snapshot) -> tuple[int, int]:
            # Resolve every destination before writing anything, so a missing
            # replica rejects the request instead of half-writing it.
            totals = (0, 0)
            for n, index in enumerate(indexes):
                placement = snap.placement(index.ref)
                buckets = self._record_buckets(snap, index, checked)
                # Records of buckets with the same replicas travel together; each
                # replica of the set gets the same call (counted once per set).
                sets: dict[
                    tuple[str, ...], tuple[list[Shard], set[int], list[tuple[WriteRecord, int]]]
                ] = {}
                for r, bucket in zip(checked, buckets, strict=True):
                    replicas_ = self._all_replicas(snap, index, bucket, placement)
                    entry = sets.setdefault(
                        tuple(x.shard_id for x in replicas_), (replicas_, set(), [])
                    )
                    entry[1].add(bucket)
                    entry[2].append((r, bucket))
                calls: list[
                    tuple[Shard, set[int], Callable[[], Awaitable[tuple[int, int]]], object]
                ] = [
                    (shard, bs, functools.partial(shard.upsert, index.ref, recs, timeout), key)
                    for key, (shards_, bs, recs) in sets.items()
                    for shard in shards_
                ]
                if index.placement == "centroid":
                    # A vector that moved to another centroid must not leave its
                    # old copy behind: everything older is deleted elsewhere.
                    calls.extend(
                        self._move_deletes(snap, index, placement, checked, buckets, timeout)
                    )
                replicas = max(len(r) for r in placement.buckets)
                result = await self._quorum_write(calls, index.write_quorum, replicas)
                if n == 0:
                    totals = result
            return totals

        return await self.registry.retry_if_moved(snap, write)

    def _move_deletes(
        self,
        snap: Snapshot,
        index: IndexVersion,
        placement: Placement,
        records: Sequence[WriteRecord],
        buckets: Sequence[int],
        timeout: float,
    ) -> list[tuple[Shard, set[int], Callable[[], Awaitable[tuple[int, int]]], object]]:
        calls = []
        for shard in {s.shard_id: s for s in self._index_shards(snap, index, placement)}.values():
            held = set(placement.buckets_of(shard.shard_id))
            elsewhere = [r for r, b in zip(records, buckets, strict=True) if b not in held]
            by_version: dict[int, list[EntityKey]] = defaultdict(list)
            for r in elsewhere:
                by_version[r.source_version - 1].append(r.key)
            for version, keys in by_version.items():

                async def call(
                    shard: Shard = shard, keys: list[EntityKey] = keys, version: int = version
                ) -> tuple[int, int]:
                    await shard.delete(index.ref, keys, version, timeout)
                    return 0, 0

                calls.append((shard, set(), call, None))
        return calls

    async def delete(
        self,
        access: Access,
        embedding: VersionRef,
        keys: Sequence[EntityKey],
        source_version: int,
        timeout: float,
    ) -> int:
        snap, family, indexes = await self._embedding(embedding)
        self._check_access(access, family, snap)
        if len(keys) > self.limits.max_batch_records:
            raise InvalidArgument(
                f"delete: {len(keys)} keys, expected at most {self.limits.max_batch_records}"
            )
        owned = [
            self._own_key(k, access, family, f"keys[{i}] {tuple(k)}") for i, k in enumerate(keys)
        ]
        version = source_version or _now_micros()

        async def remove(snap: Snapshot) -> int:
            deleted = 0
            for n, index in enumerate(indexes):
                placement = snap.placement(index.ref)
                replicas = max(len(r) for r in placement.buckets)
                if index.placement == "centroid":
                    # The bucket depends on the vector: every bucket's replicas
                    # get every key; a deleted record is counted once per holder.
                    sets: dict[tuple[str, ...], tuple[list[Shard], set[int], list[EntityKey]]] = {}
                    for b in range(index.num_buckets):
                        reps = self._all_replicas(snap, index, b, placement)
                        entry = sets.setdefault(
                            tuple(x.shard_id for x in reps), (reps, set(), list(owned))
                        )
                        entry[1].add(b)
                else:
                    sets = {}
                    for key in owned:
                        b = self._bucket(snap, index, key)
                        reps = self._all_replicas(snap, index, b, placement)
                        entry = sets.setdefault(tuple(x.shard_id for x in reps), (reps, set(), []))
                        entry[1].add(b)
                        entry[2].append(key)

                def call(
                    shard: Shard, keys: list[EntityKey], ref: VersionRef = index.ref
                ) -> Callable[[], Awaitable[tuple[int, int]]]:
                    async def run() -> tuple[int, int]:
                        return await shard.delete(ref, keys, version, timeout), 0

                    return run

                calls = [
                    (shard, bs, call(shard, ks), group)
                    for group, (reps, bs, ks) in sets.items()
                    for shard in reps
                ]
                result = await self._quorum_write(calls, index.write_quorum, replicas)
                if n == 0:
                    deleted = result[0]
            return deleted

        return await self.registry.retry_if_moved(snap, remove)

    # --- lookups --------------------------------------------------------------

    async def batch_get(
        self,
        access: Access,
        embedding: VersionRef,
        keys: Sequence[EntityKey],
        include_vectors: bool,
        timeout: float,
    ) -> list[Lookup]:
        snap, family, indexes = await self._embedding(embedding)
        self._check_access(access, family, snap)
        if len(keys) > self.limits.max_lookup_keys:
            raise InvalidArgument(
                f"lookup: {len(keys)} keys, expected at most {self.limits.max_lookup_keys}"
            )
        owned = [
            self._own_key(k, access, family, f"keys[{i}] {tuple(k)}") for i, k in enumerate(keys)
        ]
        index = indexes[0]

        async def fetch(snap: Snapshot) -> tuple[dict[str, list[int]], list[list[Lookup]]]:
            placement = snap.placement(index.ref)
            targets = self._replica_targets(snap, index, placement)
            by_bucket_shard = {
                bucket: targets[next(s for s in replicas if s in targets)]
                for bucket, replicas in enumerate(placement.buckets)
            }
            groups: dict[str, list[int]] = defaultdict(list)
            if index.placement == "centroid":  # the bucket depends on the vector: ask every shard
                for sid in targets:
                    groups[sid] = list(range(len(owned)))
            for pos, key in enumerate(owned if index.placement != "centroid" else ()):
                shard = by_bucket_shard[self._bucket(snap, index, key)]
                groups[shard.shard_id].append(pos)

            async def ask(sid: str, positions: list[int]) -> list[Lookup]:
                keys = [owned[p] for p in positions]
                try:
                    return await targets[sid].batch_get(index.ref, keys, include_vectors, timeout)
                except Unavailable:
                    # Fail over: another serving replica holding all these buckets.
                    held = set(placement.buckets_of(sid))
                    for alt in placement.shards():
                        member = snap.serving_shard(alt)
                        if alt != sid and member and held <= set(placement.buckets_of(alt)):
                            shard = self.shards(member.shard_id, member.address)
                            return await shard.batch_get(index.ref, keys, include_vectors, timeout)
                    raise

            answers = await asyncio.gather(*(ask(sid, ps) for sid, ps in groups.items()))
            return groups, list(answers)

        groups, answers = await self.registry.retry_if_moved(snap, fetch)
        out: list[Lookup | None] = [None] * len(owned)
        for positions, lookups in zip(groups.values(), answers, strict=True):
            for pos, lk in zip(positions, lookups, strict=True):
                out[pos] = _better(out[pos], lk)
        expired_before = (
            _now_micros() - family.ttl_seconds * 1_000_000 if family.ttl_seconds else None
        )
        return [
            Lookup(owned[i], LookupStatus.MISSING)
            if lk is None
            or (
                expired_before is not None
                and lk.record is not None
                and lk.record.created_at < expired_before
            )
            else lk
            for i, lk in enumerate(out)
        ]
