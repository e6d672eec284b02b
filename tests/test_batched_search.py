"""Batch-first search on plain data (issue 12): a batch of queries gets exactly
the answers of the same queries sent one by one — through a shard's segments
(one index call and one rerank product per batch) and through the
coordinator's adaptive batcher, whatever order the shard's replies arrive
in; the columnar merges equal the reference merges."""

from __future__ import annotations

import asyncio
import functools
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.batcher import BatchingShard
from coordinator.errors import QueriesRefused
from coordinator.merge import Hit, merge_ranked, merge_topk
from coordinator.model import ShardAnswer, ShardQuery, WriteRecord
from core.domain import AttrType, EntityKey, Metric, VersionRef
from core.errors import PermissionDenied
from core.filters import Range
from core.ordering import order_key
from registry.model import EmbeddingFamily, IndexKind, IndexVersion
from shard_server.lifecycle import LifecyclePolicy
from shard_server.model import Query, SearchResult
from shard_server.partition import IndexPartition
from shard_server.planner import PlannerPolicy
from shard_server.records import Record
from shard_server.segment import SearchOptions
from shard_server.storage import ShardStore
from tests.inmemory import InMemoryShard
from tests.static_registry import INDEX

DIM = 16
PARAMS = {
    IndexKind.HNSW: {"M": 8, "ef_construction": 40, "ef_search": 16},
    IndexKind.IVFPQ: {"nlist": 16, "m": 4, "nbits": 4, "nprobe": 4, "refine_factor": 4},
}


def build(root: Path, kind: IndexKind, tenants: tuple[str, ...], churn: bool) -> IndexPartition:
    """2,000 clustered rows on a small grid (equal scores happen) sealed into
    one segment; with `churn`, some rows are then rewritten and deleted, so
    the sealed rows are masked and the growing segment holds rows too."""
    rng = np.random.default_rng(7)
    centres = rng.integers(-3, 4, size=(12, DIM))
    base = (centres[rng.integers(0, 12, 2000)] + rng.integers(-1, 2, size=(2000, DIM))).astype(
        np.float32
    )
    store = ShardStore(root / "rocksdb")
    ix = IndexVersion(
        "ix",
        "v1",
        VersionRef("f", "v1"),
        kind=kind,
        params=PARAMS[kind],
        num_buckets=4,
        attributes={"price": AttrType.FLOAT},
        max_k=50,
    )
    part = IndexPartition(
        ix,
        EmbeddingFamily("f", "item", DIM, Metric.L2),
        store,
        root / "segments",
        LifecyclePolicy(
            seal_rows=2000,
            seal_age_seconds=3600,
            planner=PlannerPolicy(exact_below_selectivity=0.03, exact_below_rows=64),
        ),
    )
    part.load()
    records = [
        Record(
            EntityKey(tenants[i % len(tenants)], "item", f"id-{i % 1900}-{i}"),
            base[i],
            1,
            attributes={"price": float(i % 50)},
            bucket=i % 4,
        )
        for i in range(2000)
    ]
    part.upsert(records)
    part.flush(compact=False)
    if churn:
        part.upsert(
            [
                Record(r.key, base[0], 2, attributes=r.attributes, bucket=r.bucket)
                for r in records[:30]
            ]
        )
        part.delete([r.key for r in records[30:60]], 3)
    return part


@pytest.fixture(scope="module")
def partitions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, IndexPartition]:
    out = {}
    for kind in (IndexKind.HNSW, IndexKind.IVFPQ):
        out[f"{kind.value}-plain"] = build(
            tmp_path_factory.mktemp(f"{kind.value}p"), kind, ("t0",), churn=False
        )
        out[f"{kind.value}-churn"] = build(
            tmp_path_factory.mktemp(f"{kind.value}c"), kind, ("t0", "t1"), churn=True
        )
    return out


def same(a: SearchResult, b: SearchResult) -> bool:
    return (
        a.scores.tobytes() == b.scores.tobytes()
        and list(a.keys) == list(b.keys)
        and a.buckets.tolist() == b.buckets.tolist()
        and (a.candidates, a.approximate, a.reference_scores)
        == (b.candidates, b.approximate, b.reference_scores)
    )


queries = st.lists(
    st.tuples(
        st.integers(0, 59),  # which query vector
        st.integers(1, 30),  # k
        st.sampled_from(["t0", "t1", "nobody"]),
        st.sampled_from([None, Range("price", lt=25.0), Range("price", lt=1.0)]),
        st.sampled_from(
            [
                SearchOptions(),
                SearchOptions(),
                SearchOptions(exact=True),
                SearchOptions(skip_rerank=True),
                SearchOptions(ef_search=40, nprobe=8),
            ]
        ),
        st.booleans(),  # a later page
    ),
    min_size=1,
    max_size=24,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(queries, st.sampled_from(["hnsw-plain", "hnsw-churn", "ivfpq-plain", "ivfpq-churn"]))
def test_a_shard_answers_a_batch_exactly_as_one_by_one(
    partitions: dict[str, IndexPartition], batch: list[tuple], which: str
) -> None:
    part = partitions[which]
    rng = np.random.default_rng(11)
    vectors = rng.integers(-3, 4, size=(60, DIM)).astype(np.float32)
    built = []
    for v, k, tenant, flt, options, page in batch:
        q = Query(vectors[v], k, tenant, flt, options)
        if page:
            (first,) = part.search([q])
            if first.keys:
                q = Query(
                    vectors[v],
                    k,
                    tenant,
                    flt,
                    options,
                    after=(float(first.scores[-1]), first.keys[-1]),
                    served=k,
                )
        built.append(q)
    together = part.search(built)
    alone = [part.search([q])[0] for q in built]
    assert all(same(a, b) for a, b in zip(together, alone, strict=True))
    for r in together:  # and each in the global order
        order = [order_key(s, key) for s, key in zip(r.scores.tolist(), r.keys, strict=True)]
        assert order == sorted(order) and len(set(r.keys)) == len(r.keys)


def test_the_batch_path_is_the_one_taken(partitions: dict[str, IndexPartition]) -> None:
    """Unmasked ANN queries of a batch share one index call (else the property
    above would only compare the one-by-one path with itself)."""
    part = partitions["hnsw-plain"]
    (seg,) = [s for s in part.current_segments() if getattr(s, "index", None) is not None]
    calls = 0
    index = seg.index  # type: ignore[attr-defined]
    inner = index.search_many

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return inner(*args, **kwargs)

    index.search_many = counted
    try:
        rng = np.random.default_rng(0)
        part.search([Query(rng.normal(size=DIM).astype(np.float32), 10, "t0") for _ in range(8)])
    finally:
        del index.search_many
    assert calls == 1


# -- the coordinator's adaptive batcher --------------------------------------------------


class Jittery:
    """An in-memory shard whose replies arrive after a random delay."""

    def __init__(self, inner: InMemoryShard, rnd: random.Random) -> None:
        self.inner, self.rnd = inner, rnd
        self.shard_id, self.address = inner.shard_id, inner.address
        self.batches: list[int] = []

    async def search(
        self, index: VersionRef, qs: list[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        self.batches.append(len(qs))
        await asyncio.sleep(self.rnd.uniform(0, 0.001))
        return await self.inner.search(index, qs, timeout)


@functools.cache
def loaded_shard() -> InMemoryShard:
    shard = InMemoryShard("s", Metric.L2, 4)
    rng = np.random.default_rng(2)
    other = VersionRef("ix", "v2")

    async def fill() -> None:
        for ix in (INDEX, other):
            for tenant in ("t1", "t2"):
                recs = [
                    (
                        WriteRecord(
                            EntityKey(tenant, "item", f"{tenant}-{i}"),
                            rng.integers(-2, 3, size=4).astype(np.float32),
                            1,
                            attributes={"price": float(i % 10)},
                        ),
                        i % 4,
                    )
                    for i in range(80)
                ]
                await shard.upsert(ix, recs, 5.0)

    asyncio.run(fill())
    return shard


def key(a: ShardAnswer) -> list[tuple[bytes, EntityKey, int]]:
    return [
        (np.float32(s).tobytes(), k, b)
        for s, k, b in zip(a.scores.tolist(), a.keys, a.buckets.tolist(), strict=True)
    ]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([INDEX, VersionRef("ix", "v2")]),
            st.sampled_from(["t1", "t2"]),
            st.integers(1, 12),
            st.sampled_from([None, Range("price", lt=4.0)]),
            st.booleans(),
            st.integers(0, 40),
        ),
        min_size=1,
        max_size=30,
    ),
    st.integers(1, 8),
    st.integers(1, 3),
    st.integers(0, 2**32),
)
def test_batched_answers_equal_one_by_one_under_any_reply_order(
    spec: list[tuple], max_batch: int, in_flight: int, seed: int
) -> None:
    shard = loaded_shard()
    rng = np.random.default_rng(3)
    calls = []
    for ix, tenant, k, flt, page, seq in spec:
        q = ShardQuery(rng.integers(-2, 3, size=4).astype(np.float32), k, tenant, flt)
        if page:  # a later page: after some order key, pinned to a write sequence
            q = ShardQuery(
                q.vector,
                k,
                tenant,
                flt,
                after=(0.0, EntityKey(tenant, "item", f"{tenant}-{seq}")),
                max_sequence=seq % 5,
                served=k,
            )
        calls.append((ix, q))

    async def one_by_one() -> list[ShardAnswer]:
        return [(await shard.search(ix, [q], 5.0))[0] for ix, q in calls]

    alone = asyncio.run(one_by_one())
    jittery = Jittery(shard, random.Random(seed))
    batching = BatchingShard(jittery, max_batch=max_batch, max_in_flight=in_flight)  # type: ignore[arg-type]

    async def together() -> list[list[ShardAnswer]]:
        return await asyncio.gather(*(batching.search(ix, [q], 5.0) for ix, q in calls))

    got = asyncio.run(together())
    assert [key(a[0]) for a in got] == [key(a) for a in alone]
    assert max(jittery.batches) <= max_batch and sum(jittery.batches) == len(calls)


def test_a_cancelled_member_is_dropped_and_its_batch_mates_answered() -> None:
    shard = loaded_shard()
    rng = np.random.default_rng(4)
    qs = [ShardQuery(rng.normal(size=4).astype(np.float32), 5, "t1") for _ in range(6)]
    jittery = Jittery(shard, random.Random(0))
    batching = BatchingShard(jittery, max_batch=64, max_in_flight=1)  # type: ignore[arg-type]

    async def scenario() -> list[object]:
        tasks = [asyncio.ensure_future(batching.search(INDEX, [q], 5.0)) for q in qs]
        await asyncio.sleep(0)  # the first is sent; the others queue behind it
        tasks[2].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    got = asyncio.run(scenario())
    assert isinstance(got[2], asyncio.CancelledError)
    assert jittery.batches == [1, 4]  # the cancelled one never left
    for i in (0, 1, 3, 4, 5):
        (want,) = asyncio.run(shard.search(INDEX, [qs[i]], 5.0))
        assert key(got[i][0]) == key(want)  # type: ignore[index]


class Refusing(Jittery):
    """A shard whose access checks refuse one tenant's queries and answer
    the rest of the batch (as `PackedSearchResponse.refused` reads)."""

    async def search(
        self, index: VersionRef, qs: list[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        answers = await super().search(index, qs, timeout)
        refused = {
            i: PermissionDenied(f"shard s: no grant for {q.tenant_id}")
            for i, q in enumerate(qs)
            if q.tenant_id == "t2"
        }
        if refused:
            raise QueriesRefused(list(answers), refused)
        return answers


def test_a_refused_member_fails_alone_and_its_batch_mates_are_answered() -> None:
    """A batch mixes callers: one caller's refusal by the shard must not
    fail another's query that shared its call."""
    shard = loaded_shard()
    rng = np.random.default_rng(5)
    qs = [
        ShardQuery(rng.normal(size=4).astype(np.float32), 5, "t2" if i % 3 == 1 else "t1")
        for i in range(7)
    ]
    refusing = Refusing(shard, random.Random(1))
    batching = BatchingShard(refusing, max_batch=64, max_in_flight=1)  # type: ignore[arg-type]

    async def scenario() -> list[object]:
        return await asyncio.gather(
            *(batching.search(INDEX, [q], 5.0) for q in qs), return_exceptions=True
        )

    got = asyncio.run(scenario())
    assert refusing.batches == [1, 6]  # the second call carried both tenants
    for q, outcome in zip(qs, got, strict=True):
        if q.tenant_id == "t2":
            assert isinstance(outcome, PermissionDenied) and "no grant for t2" in str(outcome)
            assert not isinstance(outcome, QueriesRefused)  # its own refusal, not the call's
        else:
            (want,) = asyncio.run(shard.search(INDEX, [q], 5.0))
            assert key(outcome[0]) == key(want)  # type: ignore[index]


# -- columnar merge = reference merge ------------------------------------------------------

hits = st.builds(
    Hit,
    score=st.sampled_from([-1.5, 0.0, 0.25, 1.0, 3.0]),
    key=st.builds(
        EntityKey,
        st.sampled_from(["t1", "t2"]),
        st.sampled_from(["item", "user"]),
        st.sampled_from(["a", "b", "B", "é", "10", "9"]),
    ),
    shard_id=st.sampled_from(["s0", "s1"]),
    bucket=st.integers(0, 3),
)


@settings(max_examples=300)
@given(st.lists(st.lists(hits, max_size=10), max_size=5), st.integers(1, 20))
def test_merge_ranked_is_merge_topk(lists: list[list[Hit]], k: int) -> None:
    answers = []
    for hs in lists:
        unique = list({h.key: h for h in hs}.values())  # a shard answers a key once
        answers.append(ShardAnswer.of(unique, len(unique)))
    assert merge_ranked(answers, k) == merge_topk([a.hits for a in answers], k)


def test_a_query_queued_behind_a_stalled_call_fails_at_its_own_deadline() -> None:
    """Its deadline was checked only when the call ahead of it returned: a
    query of 0.1 s queued behind a stalled call waited 1.5 s (found in
    review)."""
    import time

    from core.errors import DeadlineExceeded

    class Stalled:
        shard_id, address = "a", "mem://a"
        called: asyncio.Event

        async def search(
            self, index: VersionRef, qs: list[ShardQuery], timeout: float
        ) -> list[ShardAnswer]:
            self.called.set()
            await asyncio.sleep(min(timeout, 1.5))  # the stall
            return [ShardAnswer.of([], 0) for _ in qs]

    inner = Stalled()
    shard = BatchingShard(inner)  # type: ignore[arg-type]  # the search half of a Shard
    q = ShardQuery(np.zeros(4, np.float32), 1, "t")

    async def queued() -> float:
        inner.called = asyncio.Event()
        stalled = asyncio.ensure_future(shard.search(INDEX, [q], 5.0))
        await inner.called.wait()  # its call is out: the next query queues
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="deadline passed before its answer"):
            await shard.search(INDEX, [q], 0.1)
        took = time.monotonic() - start
        assert len(await stalled) == 1  # its batch-mate is answered
        return took

    assert asyncio.run(queued()) < 0.5
