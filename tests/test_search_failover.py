"""Search failover: a replica that refuses is answered for by others before
its buckets count as missing — one replica holding them all, or a cover of
several (each answering, traced and pinned as itself), and when a cover's
member fails too, the replicas left."""

from __future__ import annotations

import asyncio

import numpy as np

from coordinator import cursor as cursors
from coordinator.fanout import FanoutSettings
from coordinator.model import ShardQuery
from coordinator.replicas import ReplicaTracker
from coordinator.search import SearchExecutor
from core.domain import EntityKey, Metric, VersionRef
from core.errors import Unavailable
from registry.model import IndexVersion
from tests.inmemory import InMemoryShard, snapshot_for
from tests.static_registry import INDEX


def test_a_refusing_replica_fails_over_to_another_without_partial_results() -> None:
    a, b = InMemoryShard("a", Metric.L2, 4), InMemoryShard("b", Metric.L2, 4)
    for i in range(10):
        v = np.full(4, float(i), np.float32)
        a.add(EntityKey("t", "item", f"e{i}"), v, 0)
        b.add(EntityKey("t", "item", f"e{i}"), v, 0)
    a.error = Unavailable("shard a is shutting down")
    by_id = {"a": a, "b": b}
    ex = SearchExecutor(
        lambda sid, addr: by_id[sid], ReplicaTracker(), settings=FanoutSettings(hedge=False)
    )
    snap = snapshot_for([a, b], [["a", "b"]])
    one = IndexVersion("ix", "v1", VersionRef("f", "v1"), num_buckets=1)
    result = asyncio.run(
        ex.run(
            snap, one, snap.placement(INDEX), ShardQuery(np.zeros(4, np.float32), 3, "t"), [0], 5.0
        )
    )
    assert not result.completeness.partial and not result.errors
    assert [h.key.entity_id for h in result.hits] == ["e0", "e1", "e2"]
    assert a.calls == 1 and b.calls == 1


def _ring() -> tuple[InMemoryShard, InMemoryShard, InMemoryShard]:
    """Bucket 0 on a and b, bucket 1 on a and c; five rows a bucket, row i of
    bucket j at (10·j + i, 0)."""
    a, b, c = (InMemoryShard(n, Metric.L2, 2) for n in "abc")
    for bucket, holders in ((0, (a, b)), (1, (a, c))):
        for i in range(5):
            v = np.array([bucket * 10.0 + i, 0.0], np.float32)
            for s in holders:
                s.add(EntityKey("t", "item", f"b{bucket}-{i}"), v, bucket)
    return a, b, c


def test_failover_covers_every_bucket_when_no_single_replica_holds_them_all() -> None:
    """Ring placement: a's buckets 0 and 1 have their other replicas on
    different shards (b and c); losing a must not lose either bucket."""
    a, b, c = _ring()
    by_id = {"a": a, "b": b, "c": c}
    snap = snapshot_for([a, b, c], [["a", "b"], ["a", "c"]])
    two = IndexVersion("ix", "v1", VersionRef("f", "v1"), num_buckets=2)
    q = ShardQuery(np.array([7.0, 0.0], np.float32), 10, "t")

    def run_once() -> list[tuple[float, EntityKey]]:
        ex = SearchExecutor(
            lambda sid, addr: by_id[sid], ReplicaTracker(), settings=FanoutSettings(hedge=False)
        )
        res = asyncio.run(ex.run(snap, two, snap.placement(INDEX), q, [0, 1], 5.0))
        assert not res.completeness.partial
        return [(h.score, h.key) for h in res.hits]

    want = run_once()
    assert len(want) == 10
    a.error = Unavailable("shard a is down")
    assert run_once() == want
    assert b.calls >= 1 and c.calls >= 1


def test_the_next_page_after_a_failover_cover_asks_every_member_for_its_buckets() -> None:
    """Ring placement: a's buckets 0 and 1 are covered by b and c when a
    refuses. The trace labelled the whole cover with its first member, so the
    cursor pinned b to both buckets: page 2 asked b alone, lost bucket 1's
    rows and reported itself complete (found in review)."""
    a, b, c = _ring()
    by_id = {"a": a, "b": b, "c": c}
    snap = snapshot_for([a, b, c], [["a", "b"], ["a", "c"]])
    two = IndexVersion("ix", "v1", VersionRef("f", "v1"), num_buckets=2)
    q = np.array([4.0, 0.0], np.float32)

    def pages() -> list[list[str]]:
        ex = SearchExecutor(
            lambda sid, addr: by_id[sid], ReplicaTracker(), settings=FanoutSettings(hedge=False)
        )
        first = asyncio.run(
            ex.run(snap, two, snap.placement(INDEX), ShardQuery(q, 3, "t"), [0, 1], 5.0)
        )
        assert not first.completeness.partial
        cur = cursors.decode(
            cursors.next_cursor("r", "b", two.ref, "q", 0, first.hits, first.trace, None, 3)
        )
        a.error = None  # page 2 asks the pinned replicas, whoever is up
        last = first.hits[-1]
        after = ShardQuery(q, 3, "t", after=(last.score, last.key), served=3)
        second = asyncio.run(
            ex.run(snap, two, snap.placement(INDEX), after, [0, 1], 5.0, pins=cur.shards)
        )
        assert not second.completeness.partial
        return [[h.key.entity_id for h in r.hits] for r in (first, second)]

    want = pages()
    assert want == [["b0-4", "b0-3", "b0-2"], ["b0-1", "b0-0", "b1-0"]]
    a.error = Unavailable("shard a is down")
    assert pages() == want


def test_a_failover_member_that_fails_is_stood_in_for_by_the_replicas_left() -> None:
    """Bucket 0 on (a, b, c), 1 on (a, b, d), 2 on (a, c, d); a and b refuse.
    a's cover is b for {0, 1} and c for {2}; when b failed the whole cover
    failed — every bucket missing though c and d hold them all (found in
    review). b's buckets go to c (0) and d (1) now; none is missing."""
    shards = {n: InMemoryShard(n, Metric.L2, 2) for n in "abcd"}
    holders = {0: "abc", 1: "abd", 2: "acd"}
    for bucket, names in holders.items():
        for i in range(3):
            v = np.array([bucket * 10.0 + i, 0.0], np.float32)
            for n in names:
                shards[n].add(EntityKey("t", "item", f"b{bucket}-{i}"), v, bucket)
    snap = snapshot_for(list(shards.values()), [list(names) for names in holders.values()])
    three = IndexVersion("ix", "v1", VersionRef("f", "v1"), num_buckets=3)
    q = ShardQuery(np.array([0.0, 0.0], np.float32), 9, "t")

    def ranked() -> tuple[list[str], tuple[int, ...]]:
        ex = SearchExecutor(
            lambda sid, addr: shards[sid], ReplicaTracker(), settings=FanoutSettings(hedge=False)
        )
        res = asyncio.run(ex.run(snap, three, snap.placement(INDEX), q, [0, 1, 2], 5.0))
        return [h.key.entity_id for h in res.hits], res.completeness.missing_buckets

    want = ranked()
    assert len(want[0]) == 9 and want[1] == ()
    for n in "ab":
        shards[n].error = Unavailable(f"shard {n} is down")
    assert ranked() == want
    shards["d"].error = Unavailable("shard d is down")  # bucket 1's last holder
    hits, missing = ranked()
    assert missing == (1,) and hits == [h for h in want[0] if not h.startswith("b1-")]
