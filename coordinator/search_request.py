"""One search request on a resolved route, end to end: the request's checks,
the buckets it may touch, the pins of a later page, the fanout (once more on
a fresh snapshot when a shard moved), completeness, and the answer.

The fanout itself (replicas, bounds, waves, hedging) is `coordinator.search`;
this module is what a request adds around it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

from coordinator import cursor as cursors
from coordinator import metrics
from coordinator.access import check_access, check_filter_grant
from coordinator.buckets import tenant_buckets
from coordinator.fanin import Execution
from coordinator.model import Diagnostics, SearchQuery, SearchResult, ShardQuery
from coordinator.partial import require_complete
from coordinator.search import SearchExecutor
from coordinator.snapshots import RegistryView
from core.domain import VersionRef
from core.errors import InvalidArgument, Unavailable
from core.filters import validate_filter
from core.vectors import check_vector
from registry.model import IndexVersion
from registry.snapshot import ResolvedRoute, Snapshot


@dataclass(frozen=True)
class Plan:
    """What a request asks the shards: the query, its buckets, and for a later
    page the index version and replicas page 1 pinned."""

    index: IndexVersion
    query: ShardQuery
    qhash: str
    buckets: list[int]
    pins: cursors.Pins | None = None
    served: int = 0


def plan_search(snap: Snapshot, q: SearchQuery, resolved: ResolvedRoute) -> Plan:
    """Checks the request against the route and turns it into a plan."""
    index, family = resolved.index, resolved.query_family
    check_access(q.access, resolved.item_family, snap)
    check_vector(q.vector, family.dimension, what="query_vector")
    if not 1 <= q.k <= index.max_k:
        raise InvalidArgument(f"k={q.k} is out of range; expected 1..{index.max_k}")
    if q.filter is not None:
        validate_filter(q.filter, index.attributes)
        check_filter_grant(q.access, q.filter, index, snap)
    query = ShardQuery(
        q.vector,
        q.k,
        q.access.tenant_id,
        q.filter,
        skip_rerank=q.skip_rerank,
        principal=q.access.principal,
        purpose=q.access.purpose,
    )
    qhash = cursors.query_hash(q.vector, q.k, q.access.tenant_id, q.filter)
    if q.cursor and q.skip_rerank:
        raise InvalidArgument(
            "skip_rerank cannot continue a cursor: its scores are each shard's index "
            "scores, on no common scale, so no page boundary is exact; page without "
            "skip_rerank, or ask for a larger k"
        )
    if not q.cursor:
        buckets = tenant_buckets(index, snap.tenants.get(q.access.tenant_id))
        return Plan(index, query, qhash, buckets)
    cur = cursors.decode(q.cursor)
    if cur.route != q.route or cur.query_hash != qhash:
        raise InvalidArgument(
            "cursor belongs to another search; send the same route, vector, k, tenant "
            "and filter as the first page"
        )
    # The snapshot the first page read: its index version and replicas. The
    # cursor is not signed: the caller must be allowed the family that
    # version is built on, whether the route switched family since page 1 or
    # the cursor was edited (its purposes and privacy were checked above
    # against the route's family only), and its restricted attributes.
    paged = snap.index(cur.index)
    if paged.embedding.name != index.embedding.name:
        paged_family = snap.family(paged.embedding.name)
        check_access(q.access, paged_family, snap)
        if paged_family.dimension != family.dimension:
            raise InvalidArgument(
                f"cursor names index version {cur.index} of {paged_family.dimension}-d family "
                f"{paged_family.name!r}; the query is {family.dimension}-d: start the search again"
            )
    check_filter_grant(q.access, q.filter, paged, snap)
    return Plan(
        paged,
        dataclasses.replace(query, after=(cur.last_score, cur.last_key), served=cur.served),
        qhash,
        # Every bucket of page 1: the pinned ones, and those no pin covers
        # (missing on every page, not done).
        sorted({b for bs, _ in cur.shards.values() for b in bs}.union(cur.missing)),
        cur.shards,
        cur.served,
    )


async def run_search(
    registry: RegistryView,
    executor: SearchExecutor,
    q: SearchQuery,
    resolved: ResolvedRoute,
    deadline: float,
    t0: float,
) -> SearchResult:
    """`deadline`: the caller's, in event-loop time, fixed when the request
    arrived (what resolving its route took is already spent); `t0`: when the
    request began (resolving its route counts as resolve time)."""
    snap = registry.snapshot
    plan = plan_search(snap, q, resolved)
    t1 = time.perf_counter()
    execution = await _execute(registry, executor, snap, plan, deadline, q.route)
    return _answer(q, resolved, plan, execution, t0, t1, time.perf_counter())


async def run_searches(
    registry: RegistryView,
    executor: SearchExecutor,
    requests: Sequence[tuple[SearchQuery, ResolvedRoute]],
    deadline: float,
    t0: float,
) -> list[SearchResult]:
    """`run_search` of many first pages (a SearchBatch): planned one by one
    (the first invalid request fails them all, as it fails a batch); those of
    one route, index version and bucket set fanned out together
    (`SearchExecutor.run_many`: one call per shard for all of them); each
    answered as `run_search` answers it."""
    snap = registry.snapshot
    plans = [plan_search(snap, q, resolved) for q, resolved in requests]
    if any(p.pins is not None for p in plans):
        raise ValueError("run_searches takes first pages; a later page goes through run_search")
    t1 = time.perf_counter()
    groups: dict[tuple[str, VersionRef, tuple[int, ...]], list[int]] = {}
    for i, ((q, _), p) in enumerate(zip(requests, plans, strict=True)):
        groups.setdefault((q.route, p.index.ref, tuple(p.buckets)), []).append(i)
    executions: list[Execution | None] = [None] * len(plans)

    async def run(route: str, members: list[int]) -> None:
        group = [plans[i] for i in members]
        found = await _execute_many(registry, executor, snap, group, deadline, route)
        for i, execution in zip(members, found, strict=True):
            executions[i] = execution

    await asyncio.gather(*(run(route, members) for (route, _, _), members in groups.items()))
    t2 = time.perf_counter()
    done = [e for e in executions if e is not None]
    assert len(done) == len(plans)  # every request is in one group
    return [
        _answer(q, resolved, plan, execution, t0, t1, t2)
        for (q, resolved), plan, execution in zip(requests, plans, done, strict=True)
    ]


def _refused(execution: Execution) -> bool:
    return any(isinstance(e, Unavailable) for e in execution.errors)


def _answer(
    q: SearchQuery,
    resolved: ResolvedRoute,
    plan: Plan,
    execution: Execution,
    t0: float,
    t1: float,
    t2: float,
) -> SearchResult:
    completeness = execution.completeness
    if completeness.partial:
        metrics.labeled(metrics.PARTIAL, q.route).inc()
        if q.require_complete:
            require_complete(completeness, execution.errors, execution.deadline_hit)
    t3 = time.perf_counter()
    # The merge runs inside the fan-out (after each wave) and after it.
    merge = execution.merge_seconds + (t3 - t2)
    fanout = max(0.0, (t2 - t1) - execution.merge_seconds)
    metrics.labeled(metrics.SEARCH_PHASE, q.route, "resolve").observe(t1 - t0)
    metrics.labeled(metrics.SEARCH_PHASE, q.route, "fanout").observe(fanout)
    metrics.labeled(metrics.SEARCH_PHASE, q.route, "merge").observe(merge)
    metrics.labeled(metrics.SHARDS_PER_QUERY, q.route, "searched").observe(
        execution.shards_searched
    )
    metrics.labeled(metrics.SHARDS_PER_QUERY, q.route, "skipped").observe(execution.shards_skipped)
    return SearchResult(
        hits=execution.hits,
        route=resolved.route.name,
        bundle=resolved.bundle.name,
        index=plan.index,
        metric=resolved.item_family.metric.value,
        diagnostics=Diagnostics(
            resolve_ms=(t1 - t0) * 1e3,
            fanout_ms=fanout * 1e3,
            merge_ms=merge * 1e3,
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
        # No page of a skip_rerank answer follows exactly (see plan_search).
        next_cursor=""
        if q.skip_rerank
        else cursors.next_cursor(
            resolved.route.name,
            resolved.bundle.name,
            plan.index.ref,
            plan.qhash,
            plan.served,
            execution.hits,
            execution.trace,
            plan.pins,
            q.k,
            completeness.missing_buckets,
        ),
    )


async def _execute(
    registry: RegistryView,
    executor: SearchExecutor,
    snap: Snapshot,
    plan: Plan,
    deadline: float,
    route: str,
) -> Execution:
    loop = asyncio.get_running_loop()
    # One deadline for both runs: a second run that began with the whole
    # timeout again answered up to twice the caller's deadline late (found in
    # review) — past a gRPC caller's deadline, losing the partial answer.
    calls_by = executor.settings.calls_by(deadline, loop.time())

    async def run(s: Snapshot) -> Execution:
        placement = s.placement(plan.index.ref)
        return await executor.run(
            s,
            plan.index,
            placement,
            plan.query,
            plan.buckets,
            calls_by - loop.time(),
            route,
            plan.pins,
        )

    execution = await run(snap)
    if _refused(execution):
        # A restarted shard comes back on a new address: if the registry
        # moved shards since, search once more on the fresh snapshot, with
        # what is left of the deadline.
        fresh = await registry.moved(snap, calls_by)
        if fresh is not None and loop.time() < calls_by:
            execution = _better(execution, await run(fresh))
    return execution


async def _execute_many(
    registry: RegistryView,
    executor: SearchExecutor,
    snap: Snapshot,
    plans: list[Plan],
    deadline: float,
    route: str,
) -> list[Execution]:
    """`_execute` for first pages of one index version and bucket set."""
    first = plans[0]
    loop = asyncio.get_running_loop()
    calls_by = executor.settings.calls_by(deadline, loop.time())

    async def run(s: Snapshot, which: list[int]) -> list[Execution]:
        queries = [plans[i].query for i in which]
        placement = s.placement(first.index.ref)
        return await executor.run_many(
            s, first.index, placement, queries, first.buckets, calls_by - loop.time(), route
        )

    executions = await run(snap, list(range(len(plans))))
    moved = [i for i, e in enumerate(executions) if _refused(e)]
    if moved:
        fresh = await registry.moved(snap, calls_by)
        if fresh is not None and loop.time() < calls_by:
            for i, execution in zip(moved, await run(fresh, moved), strict=True):
                executions[i] = _better(executions[i], execution)
    return executions


def _better(first: Execution, retried: Execution) -> Execution:
    """The run on a fresh snapshot, unless it answered fewer buckets than the
    first: it had only what was left of the deadline."""
    return retried if retried.completeness.ratio >= first.completeness.ratio else first
