"""The coordinator's search path on plain data with in-memory shards: bounded
fanout returns exactly the full fanout's answer; partial results, deadlines,
hedging, replica choice and shedding behave as the policy says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from coordinator import cursor as cursors
from coordinator.fanin import Execution
from coordinator.fanout import FanoutSettings, plan_targets
from coordinator.model import ShardBounds, ShardQuery
from coordinator.replicas import P95_REFRESH, ReplicaTracker
from coordinator.search import SearchExecutor
from coordinator.service import Limits, RetrievalEngine
from coordinator.shard_calls import ShardCaller
from core.domain import EntityKey, Metric, VersionRef
from core.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted, Unavailable
from core.filters import Range
from core.scoring import normalized
from core.vectors import check_vector
from registry.model import IndexVersion
from registry.snapshot import Snapshot
from tests.inmemory import InMemoryShard, snapshot_for
from tests.static_registry import INDEX, registry_for

IX = IndexVersion("ix", "v1", VersionRef("f", "v1"), num_buckets=8)


def clustered_shards(
    metric: Metric, n_shards: int, per_shard: int, dim: int, seed: int, grid: bool = False
) -> list[InMemoryShard]:
    """Each shard holds one region of space (as with centroid placement), so
    bounds differ and skipping really happens. On an integer grid many scores
    tie exactly, also across shards and at the k-th place."""
    rng = np.random.default_rng(seed)
    shards = [InMemoryShard(f"s{i}", metric, dim) for i in range(n_shards)]
    centres = (
        rng.integers(-1, 2, size=(n_shards, dim))
        if grid
        else rng.normal(scale=4.0, size=(n_shards, dim))
    )
    for i, shard in enumerate(shards):
        for j in range(per_shard):
            noise = rng.integers(-1, 2, size=dim) if grid else rng.normal(size=dim)
            v = (centres[i] + noise).astype(np.float32)
            if grid and not v.any():
                v[0] = 1.0
            if j % 7 == 0 and j:  # exact duplicates across shards: ties on the merge boundary
                v = shards[0].vectors[0] if shards[0].vectors else v
            if metric is Metric.COSINE:
                v = normalized(v)
            shard.add(EntityKey("t", "item", f"e{rng.integers(0, 50)}-{i}-{j}"), v, bucket=i)
    return shards


def executor(
    shards: list[InMemoryShard], bounded: bool, slack: float = 0.0, **kw: Any
) -> SearchExecutor:
    by_id = {s.shard_id: s for s in shards}
    bounds = (
        (lambda sid, ix, qs: by_id[sid].true_bounds(qs, slack))
        if bounded
        else (lambda sid, ix, q: None)
    )
    return SearchExecutor(
        lambda sid, addr: by_id[sid], ReplicaTracker(), bounds, FanoutSettings(**kw)
    )


def run(
    ex: SearchExecutor,
    shards: list[InMemoryShard],
    q: np.ndarray,
    k: int,
    flt=None,
    timeout: float = 5.0,
):
    snap = snapshot_for(shards, [[s.shard_id] for s in shards])
    return asyncio.run(
        ex.run(
            snap, IX, snap.placement(INDEX), ShardQuery(q, k, "t", flt), range(len(shards)), timeout
        )
    )


@settings(max_examples=40, deadline=None)
@given(
    metric=st.sampled_from(list(Metric)),
    n_shards=st.integers(2, 6),
    k=st.integers(1, 25),
    seed=st.integers(0, 10_000),
    slack=st.sampled_from([0.0, 0.0, 0.5, 5.0]),
    first_wave=st.integers(1, 3),
    grid=st.booleans(),
)
def test_bounded_fanout_equals_full_fanout(
    metric: Metric, n_shards: int, k: int, seed: int, slack: float, first_wave: int, grid: bool
) -> None:
    shards = clustered_shards(metric, n_shards, 30, 3 if grid else 6, seed, grid)
    rng = np.random.default_rng(seed + 1)
    q = (rng.integers(-2, 3, size=3) + 0.0 if grid else rng.normal(scale=4.0, size=6)).astype(
        np.float32
    )
    if not q.any():
        q[0] = 1.0
    full = run(executor(shards, bounded=False), shards, q, k)
    bounded = run(executor(shards, bounded=True, slack=slack, first_wave=first_wave), shards, q, k)
    assert [(h.score, h.key) for h in bounded.hits] == [(h.score, h.key) for h in full.hits]
    assert bounded.shards_searched + bounded.shards_skipped == n_shards
    assert not bounded.completeness.partial


def test_a_shard_whose_bound_ties_the_kth_score_is_still_searched() -> None:
    """Ties break on entity_id: an item scoring exactly the k-th score can win."""
    a, b = InMemoryShard("a", Metric.INNER_PRODUCT, 1), InMemoryShard("b", Metric.INNER_PRODUCT, 1)
    for eid, score in (("z1", 10.0), ("z2", 9.0), ("z3", 8.0)):
        a.add(EntityKey("t", "item", eid), np.array([score], np.float32), 0)
    b.add(EntityKey("t", "item", "a0"), np.array([8.0], np.float32), 1)  # ties z3, wins on id
    shards = [a, b]
    result = run(executor(shards, bounded=True, first_wave=1), shards, np.ones(1, np.float32), 3)
    assert [h.key.entity_id for h in result.hits] == ["z1", "z2", "a0"]
    assert result.shards_skipped == 0


def test_skipping_happens_on_clustered_data() -> None:
    shards = clustered_shards(Metric.L2, 8, 40, 8, seed=3)
    q = shards[2].vectors[5] + 0.01
    result = run(executor(shards, bounded=True), shards, q, 5)
    assert result.shards_skipped >= 5
    assert {h.shard_id for h in result.hits} == {"s2"}


def test_filtered_bounded_fanout_is_exact() -> None:
    shards = clustered_shards(Metric.INNER_PRODUCT, 4, 30, 6, seed=9)
    q = np.ones(6, np.float32)
    flt = Range("price", gte=1e9)  # no record has a price: nothing matches
    assert run(executor(shards, bounded=True), shards, q, 5, flt).hits == []


def test_a_failed_shard_gives_partial_results_naming_its_buckets() -> None:
    shards = clustered_shards(Metric.L2, 4, 20, 4, seed=1)
    shards[1].error = Unavailable("shard s1 is down")
    result = run(executor(shards, bounded=False), shards, np.zeros(4, np.float32), 10)
    assert result.completeness.partial
    assert result.completeness.missing_buckets == (1,)
    assert result.completeness.ratio == 0.75
    assert all(h.shard_id != "s1" for h in result.hits) and len(result.hits) == 10


def test_a_later_page_reports_the_buckets_page_one_missed() -> None:
    """Page 1 is partial (a shard failed); its cursor pins the shards that
    answered. Page 2 asked only those and reported itself complete — the
    failed shard's hits gone for good with no sign (found in review). It now
    names the bucket no pin covers as missing, and `require_complete` sees it."""
    shards = clustered_shards(Metric.L2, 4, 20, 4, seed=1)
    shards[1].error = Unavailable("shard s1 is down")
    ex = executor(shards, bounded=False)
    first = run(ex, shards, np.zeros(4, np.float32), 5)
    assert first.completeness.missing_buckets == (1,)
    text = cursors.next_cursor(
        "r",
        "b",
        IX.ref,
        "q",
        0,
        first.hits,
        first.trace,
        None,
        5,
        first.completeness.missing_buckets,
    )
    cur = cursors.decode(text)
    assert sorted(b for bs, _ in cur.shards.values() for b in bs) == [0, 2, 3]
    shards[1].error = None  # back, but its hits cannot join the order mid-way
    snap = snapshot_for(shards, [[s.shard_id] for s in shards])
    last = first.hits[-1]
    query = ShardQuery(np.zeros(4, np.float32), 5, "t", after=(last.score, last.key), served=5)
    assert cur.missing == (1,)
    page_two = sorted({b for bs, _ in cur.shards.values() for b in bs}.union(cur.missing))
    second = asyncio.run(
        ex.run(snap, IX, snap.placement(INDEX), query, page_two, 5.0, pins=cur.shards)
    )
    assert second.completeness.partial and second.completeness.missing_buckets == (1,)
    assert all(h.shard_id != "s1" for h in second.hits)


def test_a_request_error_aborts_instead_of_being_tolerated() -> None:
    shards = clustered_shards(Metric.L2, 3, 10, 4, seed=1)
    shards[2].error = InvalidArgument("query 0: dimension 3 does not match, expected 4")
    with pytest.raises(InvalidArgument):
        run(executor(shards, bounded=False), shards, np.zeros(4, np.float32), 5)


def test_a_slow_shard_times_out_within_the_deadline() -> None:
    shards = clustered_shards(Metric.L2, 3, 10, 4, seed=2)
    shards[0].delay = 5.0

    start = time.monotonic()
    result = run(executor(shards, bounded=False), shards, np.zeros(4, np.float32), 5, timeout=0.3)
    assert time.monotonic() - start < 1.0
    assert result.deadline_hit and result.completeness.missing_buckets == (0,)
    assert [t.outcome for t in result.trace if t.shard_id == "s0"] == ["timed_out"]


def test_a_slow_shard_first_in_bound_order_does_not_hold_the_later_waves() -> None:
    """Bounded fanout asks the highest bound first. When that shard is slow,
    its wave lets the next go after its patience: the others answer and only
    the slow shard's bucket is missing — not every bucket at the deadline."""
    shards = clustered_shards(Metric.L2, 4, 20, 4, seed=3)
    by_id = {s.shard_id: s for s in shards}
    q = np.zeros(4, np.float32)
    bounds = {"s0": 1e9, "s1": 3.0, "s2": 2.0, "s3": 1.0}  # s0 first, whatever its data
    shards[0].delay = 5.0
    ex = SearchExecutor(
        lambda sid, addr: by_id[sid],
        ReplicaTracker(),
        lambda sid, ix, vecs: ShardBounds(np.full(len(vecs), bounds[sid]), 0),
        FanoutSettings(first_wave=1, hedge=False),
    )
    start = time.monotonic()
    result = run(ex, shards, q, 5, timeout=1.0)
    assert time.monotonic() - start < 1.5
    assert result.completeness.missing_buckets == (0,)
    assert result.deadline_hit and result.shards_searched == 3
    outcomes = {t.shard_id: (t.outcome, t.wave) for t in result.trace}
    assert outcomes["s0"] == ("timed_out", 0)
    assert {outcomes[s][0] for s in ("s1", "s2", "s3")} == {"searched"}
    shards[0].delay, shards[0].error = 0.0, Unavailable("shard s0 is down")
    without_s0 = run(executor(shards, bounded=False), shards, q, 5)
    assert [h.key for h in result.hits] == [h.key for h in without_s0.hits]


def _slow_replica(
    delay: float,
) -> tuple[InMemoryShard, ReplicaTracker, SearchExecutor, Snapshot, Callable[[], Execution]]:
    """Shard a (p95 ~1 ms, stalling `delay` s) and shard b holding the same
    items, and a search of their one bucket."""
    a, b = InMemoryShard("a", Metric.L2, 4), InMemoryShard("b", Metric.L2, 4)
    rng = np.random.default_rng(0)
    for i in range(20):
        v = rng.normal(size=4).astype(np.float32)
        a.add(EntityKey("t", "item", f"e{i}"), v, 0)
        b.add(EntityKey("t", "item", f"e{i}"), v, 0)
    tracker = ReplicaTracker()
    for _ in range(50):  # a's observed p95 is ~1 ms
        tracker.acquire("a")
        tracker.release("a", 0.001)
    by_id = {"a": a, "b": b}
    ex = SearchExecutor(lambda sid, addr: by_id[sid], tracker, settings=FanoutSettings(hedge=True))
    snap = snapshot_for([a, b], [["a", "b"]])
    a.delay = delay
    one = IndexVersion("ix", "v1", VersionRef("f", "v1"), num_buckets=1)
    query = ShardQuery(np.zeros(4, np.float32), 3, "t")
    return (
        a,
        tracker,
        ex,
        snap,
        lambda: asyncio.run(ex.run(snap, one, snap.placement(INDEX), query, [0], 5.0)),
    )


def test_hedge_goes_to_another_replica_after_the_p95() -> None:
    _, tracker, _, snap, search = _slow_replica(2.0)
    targets, _ = plan_targets(snap, snap.placement(INDEX), tracker, [0])
    assert targets[0].shard_id == "a" and targets[0].alternates == (("b", "mem://b", (0,)),)
    result = search()
    assert result.hedges_fired == 1 and not result.completeness.partial
    assert [t.shard_id for t in result.trace] == ["b"] and result.trace[0].hedged
    assert len(result.hits) == 3


def test_a_shard_outrun_by_its_hedges_in_a_row_is_avoided_for_a_cool_down() -> None:
    """A stalled replica neither answers nor refuses: each request asked it
    first and waited its p95 before hedging. After SLOW_AFTER hedges in a
    row answered for it, it is avoided like a failed one; a call it answers
    itself in between clears the count (a healthy shard loses a hedge in 20)."""
    tracker = ReplicaTracker(cooldown=1.0, slow_after=3)
    assert not tracker.outran("a", now=100.0) and not tracker.outran("a", now=100.0)
    tracker.release("a", 0.001)  # answered a call itself: not stalled
    assert not tracker.outran("a", now=100.0) and not tracker.outran("a", now=100.0)
    assert tracker.choose(["a", "b"], now=100.0) == "a"
    assert tracker.outran("a", now=100.0)  # the third in a row
    assert tracker.choose(["a", "b"], now=100.5) == "b"
    assert tracker.choose(["a", "b"], now=101.5) == "a"  # cool-down over: asked again
    assert tracker.outran("a", now=101.5)  # still stalled: avoided again at once
    assert tracker.choose(["a", "b"], now=102.0) == "b"
    assert tracker.choose(["a"], now=102.0) == "a"  # the only replica is still asked


def test_a_stalled_replica_is_hedged_once_per_cool_down_not_on_every_search() -> None:
    a, _, _, _, search = _slow_replica(3.0)
    hedged = []
    for _ in range(8):
        result = search()
        assert len(result.hits) == 3 and [t.shard_id for t in result.trace] == ["b"]
        hedged.append(result.hedges_fired)
    assert hedged == [1, 1, 1, 0, 0, 0, 0, 0]
    assert a.ops["search"] == 3


def test_a_callers_own_short_deadline_does_not_cool_a_healthy_replica_down() -> None:
    """A call given 10 ms timed out (DEADLINE_EXCEEDED from the shard) on a
    replica answering in 30 ms: the replica went on a cool-down, and every
    other request went without it (found in review). Only a call with a fair
    budget (several of its p95, at least 50 ms) counts against it."""
    a, tracker, _, _, _ = _slow_replica(0.03)

    class GrpcDeadline:  # as a remote call: DEADLINE_EXCEEDED at its timeout
        async def search(self, index: VersionRef, queries: Any, timeout: float) -> Any:
            if a.delay > timeout:
                await asyncio.sleep(timeout)
                raise DeadlineExceeded("shard a: Deadline Exceeded")
            return await a.search(index, queries, timeout)

    caller = ShardCaller(lambda sid, addr: GrpcDeadline(), tracker, FanoutSettings())  # type: ignore[arg-type,return-value]
    query = ShardQuery(np.zeros(4, np.float32), 3, "t")

    async def ask(budget: float) -> None:
        deadline = asyncio.get_running_loop().time() + budget
        with pytest.raises(DeadlineExceeded):
            await caller._attempt("a", "", INDEX, [query], deadline)

    asyncio.run(ask(0.01))
    assert tracker.choose(["a", "c"]) == "a"  # not cooled down
    a.delay = 1.0  # stalled: a call with a fair budget that times out counts
    asyncio.run(ask(0.1))
    assert tracker.choose(["a", "c"]) == "c"


def test_a_shards_p95_follows_its_latencies_within_a_few_calls() -> None:
    tracker = ReplicaTracker()
    assert tracker.hedge_delay("a") is None  # not enough calls seen
    for _ in range(100):
        tracker.release("a", 0.001)
    assert tracker.hedge_delay("a", floor=0.0) == 0.001
    # Slower calls: the p95 is recomputed at most P95_REFRESH calls late.
    for _ in range(P95_REFRESH):
        tracker.release("a", 0.010)
    assert tracker.hedge_delay("a", floor=0.0) == 0.010


def test_replica_choice_prefers_healthy_then_least_loaded() -> None:
    tracker = ReplicaTracker(max_in_flight_per_shard=2)
    tracker.acquire("a")
    assert tracker.choose(["a", "b"]) == "b"
    tracker.release("b", None, failed=True)  # b just failed: cool-down
    assert tracker.choose(["a", "b"]) == "a"
    tracker.acquire("a")
    with pytest.raises(ResourceExhausted, match="limit 2"):
        tracker.acquire("a")


def test_require_complete_raises_the_right_code() -> None:
    from coordinator.partial import Completeness, require_complete

    with pytest.raises(DeadlineExceeded, match="1 of 4 buckets did not answer"):
        require_complete(Completeness((2,), 4), [], deadline_hit=True)
    with pytest.raises(Unavailable):
        require_complete(Completeness((2,), 4), [], deadline_hit=False)
    require_complete(Completeness((), 4), [], deadline_hit=True)


def test_coordinator_sheds_when_full() -> None:
    reg = registry_for(["s0"], [["s0"]])
    shard = InMemoryShard("s0", registry=reg)
    engine = RetrievalEngine(reg, lambda s, a: shard, limits=Limits(max_in_flight_requests=2))

    async def scenario() -> None:
        async with engine.admission(), engine.admission():
            with pytest.raises(ResourceExhausted, match="2 searches in flight"):
                async with engine.admission():
                    pass
        async with engine.admission(2):
            pass

    asyncio.run(scenario())
    check_vector(np.zeros(2, np.float32), 2)


def batch_size_totals(shard_id: str) -> tuple[float, float]:
    """(shard calls, queries they carried) on /metrics so far."""
    labels = {"shard_id": shard_id}
    count = REGISTRY.get_sample_value("vecshard_shard_call_queries_count", labels)
    total = REGISTRY.get_sample_value("vecshard_shard_call_queries_sum", labels)
    return count or 0.0, total or 0.0


def test_concurrent_queries_to_one_shard_leave_as_one_call() -> None:
    from coordinator.batcher import BatchingShard

    shard = clustered_shards(Metric.L2, 1, 50, 4, seed=4)[0]
    batching = BatchingShard(shard, max_batch=8)
    calls_before, queries_before = batch_size_totals(shard.shard_id)
    rng = np.random.default_rng(1)
    queries = [ShardQuery(rng.normal(size=4).astype(np.float32), 5, "t") for _ in range(20)]

    async def scenario() -> list:
        return await asyncio.gather(*(batching.search(INDEX, [q], 5.0) for q in queries))

    batched = asyncio.run(scenario())
    # The first leaves at once (the shard was idle); the rest queue while it
    # is out, leaving whenever 8 are queued, and the last 3 when a call returns.
    assert batching.calls == 4  # 1 + 8 + 8 + 3
    # Operators see the same on /metrics: 4 calls carrying the 20 queries.
    calls_after, queries_after = batch_size_totals(shard.shard_id)
    assert (calls_after - calls_before, queries_after - queries_before) == (4, 20)
    direct = [asyncio.run(shard.search(INDEX, [q], 5.0)) for q in queries]
    assert [[(h.score, h.key) for h in a[0].hits] for a in batched] == [
        [(h.score, h.key) for h in d[0].hits] for d in direct
    ]


def test_buckets_excluded_by_min_max_are_not_asked_and_not_missing() -> None:

    shards = clustered_shards(Metric.L2, 3, 10, 4, seed=5)
    by_id = {s.shard_id: s for s in shards}
    t = frozenset({"t"})
    stats = {0: ({"price": (0.0, 10.0)}, t), 1: ({"price": (100.0, 200.0)}, t), 2: None}
    ex = SearchExecutor(
        lambda sid, addr: by_id[sid],
        ReplicaTracker(),
        stats=lambda ix, b: stats[b],
    )
    snap = snapshot_for(shards, [["s0"], ["s1"], ["s2"]])
    three = IndexVersion("ix", "v1", VersionRef("f", "v1"), num_buckets=3)
    q = ShardQuery(np.zeros(4, np.float32), 5, "t", Range("price", lt=50.0))
    result = asyncio.run(ex.run(snap, three, snap.placement(INDEX), q, [0, 1, 2], 5.0))
    assert shards[1].calls == 0 and shards[0].calls == 1 and shards[2].calls == 1
    assert not result.completeness.partial


def test_every_phase_of_a_search_is_exported() -> None:
    """The merge phase was in each answer's diagnostics but never exported,
    though the dashboard's latency-by-phase panel and the latency alert
    promise it; and it was measured after the fan-out, where only the final
    checks run (a query merges inside the fan-out, after each wave)."""
    from coordinator.model import Access, SearchQuery, SearchResult
    from coordinator.search_request import run_search
    from registry.model import Bundle, Route
    from registry.snapshot import ResolvedRoute
    from tests.static_registry import FAMILY

    reg = registry_for(["s0"], [["s0"]])
    shard = InMemoryShard("s0", registry=reg)
    shard.add(EntityKey("t", "item", "a"), np.ones(4, np.float32), bucket=0)
    engine = RetrievalEngine(reg, lambda s, a: shard)
    snap = reg.snapshot
    family = snap.families[FAMILY.name]
    resolved = ResolvedRoute(
        Route("rphase", "b"), Bundle("b", FAMILY, FAMILY, INDEX), snap.indexes[INDEX],
        family, family, snap.placements[INDEX],
    )  # fmt: skip
    q = SearchQuery("rphase", Access("t", "p", principal="svc"), np.ones(4, np.float32), 1)

    async def search() -> SearchResult:
        deadline = asyncio.get_running_loop().time() + 5.0
        return await run_search(
            engine.registry, engine.executor, q, resolved, deadline, time.perf_counter()
        )

    result = asyncio.run(search())
    assert [h.key.entity_id for h in result.hits] == ["a"]
    counts = {
        phase: REGISTRY.get_sample_value(
            "vecshard_search_phase_seconds_count", {"route": "rphase", "phase": phase}
        )
        for phase in ("resolve", "fanout", "merge")
    }
    assert counts == {"resolve": 1.0, "fanout": 1.0, "merge": 1.0}
    merged = REGISTRY.get_sample_value(
        "vecshard_search_phase_seconds_sum", {"route": "rphase", "phase": "merge"}
    )
    assert merged == pytest.approx(result.diagnostics.merge_ms / 1e3)
