"""The coordinator's write and lookup paths on plain data, with in-memory
shards: the quorum protocol (a bucket reaches its quorum while a replica
fails; too few acknowledgements fail the write; writes past the quorum finish
in the background), centroid move-deletes, and lookup failover by the same
rule searches use."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
import pytest

from coordinator.buckets import key_bucket
from coordinator.failover import alternates, failover_cover
from coordinator.fanout import FanoutSettings
from coordinator.model import Access, ShardQuery, WriteRecord
from coordinator.moves import MoveDelete, move_deletes
from coordinator.quorum import QuorumTally
from coordinator.replicas import ReplicaTracker
from coordinator.search import SearchExecutor
from coordinator.service import RetrievalEngine
from coordinator.shard import Shard
from coordinator.writes import INDEX_WRITES_IN_FLIGHT
from core.domain import EntityKey, VersionRef
from core.errors import FailedPrecondition, InvalidArgument, Unavailable
from registry.model import Placement, ShardMember, ShardState
from registry.placement import encode_centroids
from tests.inmemory import InMemoryShard
from tests.static_registry import FAMILY, INDEX, StaticRegistry, registry_for

T = TypeVar("T")
ME = Access("t", "test")


def cluster(
    buckets: list[tuple[str, ...]],
    registered: tuple[str, ...] | None = None,
    write_quorum: int = 0,
    placement: str = "hash",
    centroids: str = "",
) -> tuple[RetrievalEngine, dict[str, InMemoryShard], StaticRegistry]:
    """An engine over in-memory shards named in `buckets` (the replicas of
    each bucket), all registered and serving unless `registered` says."""
    ids = sorted({s for b in buckets for s in b})
    reg = registry_for(
        registered if registered is not None else ids,
        buckets,
        write_quorum=write_quorum,
        placement=placement,
        centroids=centroids,
    )
    shards = {s: InMemoryShard(s, registry=reg) for s in ids}

    def factory(shard_id: str, address: str) -> Shard:
        return shards[shard_id]

    return RetrievalEngine(reg, factory), shards, reg


def run(work: Callable[[], Awaitable[T]]) -> T:
    async def scenario() -> T:
        return await work()

    return asyncio.run(scenario())


def rec(eid: str, vec: list[float], version: int = 1) -> WriteRecord:
    return WriteRecord(EntityKey("t", "item", eid), np.array(vec, np.float32), version)


def keys_on(shard: InMemoryShard) -> set[str]:
    part = shard._partitions.get(INDEX)
    return {k.entity_id for k in part.records} if part else set()


RECORDS = [rec(f"e{i}", [float(i), 1.0, 0.0, 0.0], 10) for i in range(12)]
CENTROIDS = encode_centroids(np.array([[1, 0, 0, 0], [-1, 0, 0, 0]], np.float32))


# --- the quorum tally (pure) -------------------------------------------------------


def test_the_tally_counts_each_group_once_and_waits_for_every_bucket() -> None:
    tally = QuorumTally(2, frozenset({0, 1}))
    tally.ack({0, 1}, "abc", (5, 1))
    tally.ack({0, 1}, "abc", (5, 1))  # the same records on another replica
    assert tally.met and tally.result() == (5, 1)
    short = QuorumTally(2, frozenset({0, 1}))
    short.ack({0}, "a", (3, 0))
    short.ack({0, 1}, "b", (2, 0))
    short.fail(Unavailable("shard c is down"))
    assert not short.met
    with pytest.raises(Unavailable, match="shard c is down"):
        short.result()
    with pytest.raises(Unavailable, match=r"buckets \[0\] got fewer than 1"):
        QuorumTally(1, frozenset({0})).result()


# --- quorum writes through the engine ------------------------------------------------


def test_a_bucket_reaches_its_quorum_while_a_replica_fails() -> None:
    engine, shards, _ = cluster([("a", "b", "c"), ("b", "c", "a")], write_quorum=2)
    shards["c"].error = Unavailable("shard c is down")
    assert run(lambda: engine.upsert(ME, FAMILY, RECORDS, 5.0)) == (12, 0)  # counted once
    assert keys_on(shards["a"]) == keys_on(shards["b"]) == {r.key.entity_id for r in RECORDS}
    assert keys_on(shards["c"]) == set()
    shards["c"].error = None
    assert run(lambda: engine.upsert(ME, FAMILY, RECORDS[:3], 5.0)) == (3, 0)  # replay


def test_too_few_acknowledgements_fail_the_write() -> None:
    engine, shards, _ = cluster([("a", "b", "c")], write_quorum=2)
    shards["b"].error = shards["c"].error = Unavailable("shard down")
    with pytest.raises(Unavailable, match="shard down"):
        run(lambda: engine.upsert(ME, FAMILY, RECORDS, 5.0))
    # The default quorum is every replica.
    engine, shards, _ = cluster([("a", "b")])
    shards["b"].error = Unavailable("shard b is down")
    with pytest.raises(Unavailable):
        run(lambda: engine.delete(ME, FAMILY, [r.key for r in RECORDS], 20, 5.0))


def test_a_shard_refusing_the_write_fails_it_with_its_own_error() -> None:
    engine, shards, _ = cluster([("a", "b")])
    shards["a"].error = FailedPrecondition("shard a does not hold bucket(s) [0]")
    with pytest.raises(FailedPrecondition, match="does not hold"):
        run(lambda: engine.upsert(ME, FAMILY, RECORDS, 5.0))


def test_a_write_with_too_few_registered_replicas_sends_nothing() -> None:
    engine, shards, _ = cluster([("a", "b"), ("b", "a")], registered=("a",))
    with pytest.raises(Unavailable, match=r"replica\(s\) \['b'\] not registered"):
        run(lambda: engine.upsert(ME, FAMILY, RECORDS, 5.0))
    assert shards["a"].ops["upsert"] == shards["b"].ops["upsert"] == 0


def test_writes_past_the_quorum_finish_in_the_background() -> None:
    engine, shards, _ = cluster([("a", "b", "c")], write_quorum=2)
    shards["c"].delay = 0.3

    async def scenario() -> None:
        assert await engine.upsert(ME, FAMILY, RECORDS, 5.0) == (12, 0)
        assert shards["c"].ops["upsert"] == 1 and keys_on(shards["c"]) == set()
        await engine.drain_background()
        assert len(keys_on(shards["c"])) == 12

    asyncio.run(scenario())


def test_deletes_reach_every_replica_and_count_each_record_once() -> None:
    engine, shards, _ = cluster([("a", "b"), ("b", "c")])
    run(lambda: engine.upsert(ME, FAMILY, RECORDS, 5.0))
    doomed = [r.key for r in RECORDS[:5]] + [EntityKey("t", "item", "never")]
    assert run(lambda: engine.delete(ME, FAMILY, doomed, 11, 5.0)) == 5
    _, found = run(lambda: engine.batch_get(ME, FAMILY, [r.key for r in RECORDS], False, 5.0))
    assert found.statuses() == ["deleted"] * 5 + ["found"] * 7
    assert all(not keys_on(s) & {"e0", "e1", "e2", "e3", "e4"} for s in shards.values())


# --- centroid move-deletes -------------------------------------------------------------


def test_move_deletes_name_every_other_shard_and_the_version_below() -> None:
    placement = Placement(INDEX, (("a",), ("b",), ("a", "c")))
    records = [rec("x", [1, 0, 0, 0], 5), rec("y", [0, 1, 0, 0], 7), rec("z", [0, 0, 1, 0], 5)]
    assert move_deletes(placement, ["a", "b", "c", "b"], records, [0, 1, 2]) == [
        MoveDelete("a", (EntityKey("t", "item", "y"),), 6),
        MoveDelete("b", (EntityKey("t", "item", "x"), EntityKey("t", "item", "z")), 4),
        MoveDelete("c", (EntityKey("t", "item", "x"),), 4),
        MoveDelete("c", (EntityKey("t", "item", "y"),), 6),
    ]


def test_a_vector_that_moves_to_another_centroid_leaves_no_copy_behind() -> None:
    engine, shards, _ = cluster([("a",), ("b",)], placement="centroid", centroids=CENTROIDS)
    k = EntityKey("t", "item", "k")
    run(lambda: engine.upsert(ME, FAMILY, [rec("k", [0.9, 0.1, 0, 0], 5)], 5.0))
    assert (keys_on(shards["a"]), keys_on(shards["b"])) == ({"k"}, set())
    run(lambda: engine.upsert(ME, FAMILY, [rec("k", [-0.9, 0.1, 0, 0], 6)], 5.0))
    assert (keys_on(shards["a"]), keys_on(shards["b"])) == (set(), {"k"})
    _, found = run(lambda: engine.batch_get(ME, FAMILY, [k], True, 5.0))
    assert found.statuses() == ["found"] and found.source_version.tolist() == [6]
    assert np.allclose(found.vectors[0], [-0.9, 0.1, 0, 0])  # the family is L2: as written
    # The old copy's tombstone is below the new version: moving back works.
    run(lambda: engine.upsert(ME, FAMILY, [rec("k", [0.8, 0.0, 0.1, 0], 7)], 5.0))
    assert (keys_on(shards["a"]), keys_on(shards["b"])) == ({"k"}, set())


def test_a_failed_move_keeps_the_old_acknowledged_copy() -> None:
    """The move-delete of the old copy went out with the new write: with the
    new bucket's shard down the caller was told UNAVAILABLE, yet the
    acknowledged v5 copy was already deleted — the key gone everywhere
    (found in review). The delete now waits for the new copy to land."""
    engine, shards, _ = cluster([("a",), ("b",)], placement="centroid", centroids=CENTROIDS)
    k = EntityKey("t", "item", "k")
    run(lambda: engine.upsert(ME, FAMILY, [rec("k", [0.9, 0.1, 0, 0], 5)], 5.0))
    shards["b"].error = Unavailable("shard b is down")
    with pytest.raises(Unavailable):
        run(lambda: engine.upsert(ME, FAMILY, [rec("k", [-0.9, 0.1, 0, 0], 6)], 5.0))
    shards["b"].error = None
    assert shards["a"].ops["delete"] == 0 and keys_on(shards["a"]) == {"k"}
    _, found = run(lambda: engine.batch_get(ME, FAMILY, [k], False, 5.0))
    assert found.statuses() == ["found"] and found.source_version.tolist() == [5]


def test_a_move_delete_is_sent_only_once_the_new_copy_landed() -> None:
    """The order on the shards: b's write is acknowledged before a hears of
    the delete, though b answers slowly."""
    engine, shards, _ = cluster([("a",), ("b",)], placement="centroid", centroids=CENTROIDS)
    run(lambda: engine.upsert(ME, FAMILY, [rec("k", [0.9, 0.1, 0, 0], 5)], 5.0))
    order: list[str] = []
    shards["b"].delay = 0.1
    for sid, op in (("a", "delete"), ("b", "upsert")):
        shard, method = shards[sid], getattr(shards[sid], op)

        async def logged(*args: Any, _m: Any = method, _s: str = sid, **kw: Any) -> Any:
            order.append(f"{_s} sent")
            out = await _m(*args, **kw)
            order.append(f"{_s} done")
            return out

        setattr(shard, op, logged)
    run(lambda: engine.upsert(ME, FAMILY, [rec("k", [-0.9, 0.1, 0, 0], 6)], 5.0))
    run(lambda: engine.drain_background())
    assert order == ["b sent", "b done", "a sent", "a done"]
    assert (keys_on(shards["a"]), keys_on(shards["b"])) == (set(), {"k"})


# --- lookup failover: the rule searches use ------------------------------------------


def test_a_lookup_is_answered_by_another_replica_when_one_is_down() -> None:
    engine, shards, _ = cluster([("a", "b"), ("a", "b")])
    run(lambda: engine.upsert(ME, FAMILY, RECORDS, 5.0))
    shards["a"].error = Unavailable("shard a is down")
    _, found = run(lambda: engine.batch_get(ME, FAMILY, [r.key for r in RECORDS], False, 5.0))
    assert found.statuses() == ["found"] * len(RECORDS)
    assert shards["a"].ops["batch_get"] == 1 and shards["b"].ops["batch_get"] == 1


def test_lookups_and_searches_fail_over_to_the_same_replicas() -> None:
    """Ring placement: a's buckets have their other replicas on b and c. No
    single replica holds both, so only a cover of the two answers for a."""
    engine, shards, reg = cluster([("a", "b"), ("a", "c")])
    run(lambda: engine.upsert(ME, FAMILY, RECORDS, 5.0))
    shards["a"].error = Unavailable("shard a is down")
    snap, placement = reg.snapshot, reg.snapshot.placement(INDEX)
    cover = failover_cover([0, 1], alternates(snap, placement, [0, 1], {"a"}), {"a"})
    assert cover == [("b", "mem://b", (0,)), ("c", "mem://c", (1,))]

    _, found = run(lambda: engine.batch_get(ME, FAMILY, [r.key for r in RECORDS], True, 5.0))
    assert found.statuses() == ["found"] * len(RECORDS)
    asked = {s: [ref for op, ref in shards[s].log if op == "batch_get"] for s in "bc"}
    assert asked == {"b": [INDEX], "c": [INDEX]}

    executor = SearchExecutor(
        lambda sid, addr: shards[sid], ReplicaTracker(), settings=FanoutSettings(hedge=False)
    )
    query = ShardQuery(np.array([3.0, 1.0, 0.0, 0.0], np.float32), 12, "t")
    result = run(lambda: executor.run(snap, snap.index(INDEX), placement, query, [0, 1], 5.0))
    assert not result.completeness.partial
    assert {h.shard_id for h in result.hits} == {"b", "c"} and len(result.hits) == 12


def test_keys_no_replica_can_answer_are_unavailable_the_others_found() -> None:
    """Per-key statuses, never an error for the request (issue 14, defect 4):
    a's buckets cannot be covered (c drains), so their keys are unavailable."""
    engine, shards, reg = cluster([("a", "b"), ("a", "c")])
    run(lambda: engine.upsert(ME, FAMILY, RECORDS, 5.0))
    draining = ShardMember("c", "mem://c", ShardState.DRAINING)  # takes no reads
    reg.snapshot = replace(reg.snapshot, shards={**reg.snapshot.shards, "c": draining})
    shards["a"].error = Unavailable("shard a is down")
    keys = [r.key for r in RECORDS]
    _, found = run(lambda: engine.batch_get(ME, FAMILY, keys, True, 5.0))
    on_b = [key_bucket(reg.snapshot, 2, k) == 0 for k in keys]
    assert found.statuses() == ["found" if b else "unavailable" for b in on_b]
    assert not found.vectors[~np.array(on_b)].any()
    # Not even a's replicas serving: every key unavailable, still no error.
    gone = ShardMember("b", "mem://b", ShardState.DRAINING)
    reg.snapshot = replace(reg.snapshot, shards={**reg.snapshot.shards, "b": gone})
    _, found = run(lambda: engine.batch_get(ME, FAMILY, keys, False, 5.0))
    assert found.statuses() == ["unavailable"] * len(keys)
    # A problem with the request itself is still an error.
    shards["a"].error = InvalidArgument("bad key")
    reg.snapshot = replace(
        reg.snapshot, shards={**reg.snapshot.shards, "b": ShardMember("b", "mem://b")}
    )
    with pytest.raises(InvalidArgument):
        run(lambda: engine.batch_get(ME, FAMILY, keys, False, 5.0))


def test_the_failover_rule_prefers_one_replica_that_holds_everything() -> None:
    candidates = [("b", "B", (0,)), ("c", "C", (0, 1)), ("d", "D", (1,))]
    assert failover_cover([0, 1], candidates, {"a"}) == [("c", "C", (0, 1))]
    assert failover_cover([0, 1], candidates, {"a", "c"}) == [("b", "B", (0,)), ("d", "D", (1,))]
    assert failover_cover([0, 1], candidates, {"a", "c", "d"}) is None
    assert failover_cover([], candidates, set()) == []


def test_lookups_reconcile_answers_and_expire_by_ttl() -> None:
    """found beats deleted beats unavailable beats missing; of two found
    copies the newer; past the family's TTL a record reads as missing."""
    from core.embedding_columns import FOUND, EmbeddingColumns, expire, reconcile, unanswered

    def one(status: int, sv: int = 0, created: int = 0) -> EmbeddingColumns:
        c = unanswered(1, 2, status)
        c.source_version[0], c.created_at[0] = sv, created
        c.vectors[0] = sv
        return c

    at = np.array([0])
    missing, deleted, unavailable = one(2), one(3), one(4)
    old, new = one(FOUND, 1, 1_000_000), one(FOUND, 2, 30_000_000)
    for parts, want in [
        ([missing, deleted, old], ("found", 1)),
        ([old, new, deleted], ("found", 2)),
        ([new, old], ("found", 2)),
        ([missing, unavailable], ("unavailable", 0)),
        ([unavailable, deleted], ("deleted", 0)),
        ([missing], ("missing", 0)),
        ([], ("unavailable", 0)),
    ]:
        got = reconcile([(at, p) for p in parts], 1, 2)
        assert (got.statuses()[0], int(got.source_version[0])) == want, parts
        assert got.vectors[0].tolist() == [want[1]] * 2
    both = reconcile([(at, old), (np.array([1]), new)], 2, 2)
    aged = expire(both, 10, 20_000_000)
    assert aged.statuses() == ["missing", "found"] and aged.vectors[0].tolist() == [0, 0]
    assert expire(both, 0, 20_000_000) is both


class Overlap(InMemoryShard):
    """Counts the upserts in progress at once (each one held `delay` s, as a
    shard holds an acknowledgement for a summary lease)."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.now = self.most = 0

    async def upsert(self, index: VersionRef, records: Any, timeout: float) -> tuple[int, int]:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await super().upsert(index, records, timeout)
        finally:
            self.now -= 1


@pytest.mark.parametrize("versions", [1, 3, 9])
def test_the_index_versions_of_a_write_are_written_together_a_few_at_a_time(
    versions: int,
) -> None:
    """One after another, each index version could add a lease wait on the
    shard: 11 of them made a 20-row upsert take 9–10 s."""
    reg = registry_for(["s0"], [("s0",)])
    extra = [replace(reg.snapshot.indexes[INDEX], name=f"ix{i}") for i in range(versions - 1)]
    reg.snapshot = replace(
        reg.snapshot,
        indexes={**reg.snapshot.indexes, **{x.ref: x for x in extra}},
        placements={
            **reg.snapshot.placements,
            **{x.ref: Placement(x.ref, (("s0",),)) for x in extra},
        },
    )
    shard = Overlap("s0", registry=reg)
    shard.delay = 0.02
    engine = RetrievalEngine(reg, lambda sid, addr: shard)
    assert run(lambda: engine.upsert(ME, FAMILY, [rec("a", [1, 0, 0, 0])], 5.0)) == (1, 0)
    assert shard.most == min(versions, INDEX_WRITES_IN_FLIGHT)
    assert {ref for op, ref in shard.log if op == "upsert"} == {INDEX, *(x.ref for x in extra)}


def test_a_lookup_whose_vectors_cannot_fit_one_answer_is_refused_before_any_shard() -> None:
    """10,000 keys of 2,048 dimensions are 82 MB of vectors: the shards did
    the work, then the coordinator failed to send it (RESOURCE_EXHAUSTED
    "Sent message larger than max", retried by callers) — ten seconds
    through a real cluster. Now INVALID_ARGUMENT up front, naming how many
    keys fit."""
    reg = registry_for(["a"], [("a",)], dim=2048)
    shard = InMemoryShard("a", registry=reg)
    engine = RetrievalEngine(reg, lambda sid, address: shard)
    keys = [EntityKey("t", "item", f"e{i}") for i in range(10_000)]
    with pytest.raises(
        InvalidArgument, match=r"10000 keys × 2048 dimensions: 82 MB .* at most 7680"
    ):
        run(lambda: engine.batch_get(ME, FAMILY, keys, True, 5.0))
    assert shard.ops.get("batch_get", 0) == 0
    _, found = run(lambda: engine.batch_get(ME, FAMILY, keys, False, 5.0))  # without vectors
    _, some = run(lambda: engine.batch_get(ME, FAMILY, keys[:7680], True, 5.0))
    assert found.statuses() == ["missing"] * 10_000 and len(some.statuses()) == 7680
