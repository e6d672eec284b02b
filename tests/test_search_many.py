"""A batch of first pages fanned out together (`SearchExecutor.run_many`, what
SearchBatch uses) gives each query exactly what `run` gives it alone — hits,
completeness, counts and trace — with one call per shard for the whole batch;
failed and late shards are accounted per query as `run` accounts them."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.fanin import Execution
from coordinator.fanout import FanoutSettings, WavePolicy
from coordinator.model import ShardBounds, ShardQuery
from coordinator.replicas import ReplicaTracker
from coordinator.search import SearchExecutor
from core.domain import Metric
from core.errors import InvalidArgument, Unavailable
from core.filters import Range
from tests.inmemory import InMemoryShard, snapshot_for
from tests.static_registry import INDEX
from tests.test_coordinator_search import IX, clustered_shards


def executor(shards: list[InMemoryShard], bounded: bool, **kw: Any) -> SearchExecutor:
    by_id = {s.shard_id: s for s in shards}

    def bounds(sid: str, ix: object, vectors: np.ndarray) -> ShardBounds | None:
        return by_id[sid].true_bounds(vectors) if bounded else None

    return SearchExecutor(
        lambda sid, addr: by_id[sid],
        ReplicaTracker(),
        bounds,
        FanoutSettings(**kw),
        # Bounded: every query in waves (each fanned out alone); unbounded: one wave.
        wave_policy=WavePolicy(warmup=10**6),
    )


def view(e: Execution) -> tuple[object, ...]:
    """Everything but timings (latency, and the error text of a timeout)."""
    return (
        [(h.score, h.key, h.shard_id, h.bucket) for h in e.hits],
        e.completeness,
        [(t.shard_id, t.buckets, t.bound, t.outcome, t.wave, t.candidates) for t in e.trace],
        [type(x) for x in e.errors],
        (e.candidates, e.shards_searched, e.shards_skipped, e.hedges_fired, e.deadline_hit),
    )


def both(
    shards: list[InMemoryShard],
    queries: list[ShardQuery],
    bounded: bool,
    timeout: float = 5.0,
) -> tuple[list[Execution], list[Execution], list[int]]:
    """Each query through `run` alone, then all through `run_many` (fresh
    executors, so neither learns from the other); shard calls of the batch."""
    snap = snapshot_for(shards, [[s.shard_id] for s in shards])
    buckets = range(len(shards))
    placement = snap.placement(INDEX)

    async def go() -> tuple[list[Execution], list[Execution], list[int]]:
        alone_ex = executor(shards, bounded)
        alone = [await alone_ex.run(snap, IX, placement, q, buckets, timeout) for q in queries]
        before = [s.calls for s in shards]
        together = await executor(shards, bounded).run_many(
            snap, IX, placement, queries, buckets, timeout
        )
        return alone, together, [s.calls - b for s, b in zip(shards, before, strict=True)]

    return asyncio.run(go())


@settings(max_examples=30, deadline=None)
@given(
    metric=st.sampled_from(list(Metric)),
    n_shards=st.integers(2, 5),
    seed=st.integers(0, 10_000),
    ks=st.lists(st.integers(1, 20), min_size=1, max_size=8),
    bounded=st.booleans(),
    grid=st.booleans(),
)
def test_a_batch_answers_each_query_as_run_does(
    metric: Metric,
    n_shards: int,
    seed: int,
    ks: list[int],
    bounded: bool,
    grid: bool,
) -> None:
    shards = clustered_shards(metric, n_shards, 25, 3 if grid else 6, seed, grid)
    rng = np.random.default_rng(seed + 1)
    dim = 3 if grid else 6
    queries = []
    for n, k in enumerate(ks):
        q = rng.integers(-2, 3, size=dim) + 0.0 if grid else rng.normal(scale=4, size=dim)
        q = q.astype(np.float32)
        if not q.any():
            q[0] = 1.0
        flt = Range("price", gte=1e9) if n % 5 == 4 else None  # nothing has a price
        queries.append(ShardQuery(q, k, "t", flt))
    alone, together, calls = both(shards, queries, bounded)
    assert [view(e) for e in together] == [view(e) for e in alone]
    # Each query's merge is timed (its phase is told from the fan-out's).
    assert all(e.merge_seconds > 0 for e in alone + together)
    if not bounded:
        assert calls == [1] * n_shards  # the whole batch in one call per shard


def test_a_failed_shard_costs_every_query_its_buckets_alike() -> None:
    shards = clustered_shards(Metric.L2, 3, 20, 4, seed=1)
    shards[1].error = Unavailable("shard s1 is down")
    queries = [ShardQuery(np.full(4, float(i), np.float32), 5, "t") for i in range(4)]
    alone, together, _ = both(shards, queries, bounded=False)
    assert [view(e) for e in together] == [view(e) for e in alone]
    assert all(e.completeness.missing_buckets == (1,) for e in together)


def test_a_late_shard_times_out_for_every_query_of_the_batch() -> None:
    shards = clustered_shards(Metric.L2, 3, 10, 4, seed=2)
    shards[0].delay = 5.0
    queries = [ShardQuery(np.full(4, float(i), np.float32), 3, "t") for i in range(3)]
    alone, together, _ = both(shards, queries, bounded=False, timeout=0.3)
    assert [view(e) for e in together] == [view(e) for e in alone]
    assert all(e.deadline_hit and e.completeness.missing_buckets == (0,) for e in together)


def test_a_request_error_fails_the_batch() -> None:
    shards = clustered_shards(Metric.L2, 2, 10, 4, seed=3)
    shards[1].error = InvalidArgument("query 0: dimension 3 does not match, expected 4")
    queries = [ShardQuery(np.zeros(4, np.float32), 3, "t") for _ in range(2)]
    snap = snapshot_for(shards, [[s.shard_id] for s in shards])
    many = executor(shards, bounded=False).run_many(
        snap, IX, snap.placement(INDEX), queries, range(2), 5.0
    )
    with pytest.raises(InvalidArgument, match="dimension"):
        asyncio.run(many)
