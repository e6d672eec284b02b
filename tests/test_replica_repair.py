"""Replica writes that failed, retried in the background
(`coordinator.quorum.ReplicaRepair`), on in-memory shards: a replica that
missed a write for a passing reason gets it once it answers again, without
a restart — under a write quorum below the replicas and when the write was
refused to its caller — while an error about the request is never retried,
the number held is bounded, and closing abandons them."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

import numpy as np
import pytest
from prometheus_client import REGISTRY

from coordinator.buckets import key_bucket
from coordinator.quorum import ReplicaCall, ReplicaRepair
from core.errors import InvalidArgument, Unavailable
from registry.model import ShardMember
from registry.placement import FEATURE_BUCKETS, encode_centroids, feature_placement_ref
from tests.feature_catalog import PROFILE, T0, row, user
from tests.inmemory import InMemoryShard
from tests.static_registry import FAMILY
from tests.test_coordinator_features import ME as FEATURE_ME
from tests.test_coordinator_features import feature_cluster, get
from tests.test_coordinator_writes import ME, RECORDS, cluster, keys_on, rec, run

ALL = {r.key.entity_id for r in RECORDS}


def repairs(outcome: str) -> float:
    labels = {"outcome": outcome}
    return REGISTRY.get_sample_value("vecshard_replica_write_repairs_total", labels) or 0.0


async def until(done: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return done()


@pytest.mark.parametrize("write_quorum", [1, 0])
def test_a_replica_that_missed_a_write_gets_it_when_it_answers_again(write_quorum: int) -> None:
    """Quorum 1 of 2: the write is acknowledged by a; quorum 0 (every
    replica): it is refused to the caller, though a has it. Either way b
    gets it once its blip has passed."""
    engine, shards, _ = cluster([("a", "b"), ("a", "b")], write_quorum=write_quorum)
    before = repairs("repaired")

    async def scenario() -> None:
        shards["b"].error = Unavailable("shard b: a passing failure")
        if write_quorum:
            await engine.upsert(ME, FAMILY, RECORDS, 5.0)
        else:
            with pytest.raises(Unavailable):
                await engine.upsert(ME, FAMILY, RECORDS, 5.0)
        assert keys_on(shards["a"]) == ALL and keys_on(shards["b"]) == set()
        shards["b"].error = None
        assert await until(lambda: keys_on(shards["b"]) == ALL)

    asyncio.run(scenario())
    assert repairs("repaired") == before + 1


def test_a_feature_write_is_repaired_too() -> None:
    """Quorum 1 of 2 on a feature group: s1 missed the write, then answers
    again; once s0 and s2 refuse, the rows only s1 can answer are there."""
    ids = ("s0", "s1", "s2")
    engine, shards, reg = feature_cluster(ids, replicas=2, write_quorum=1)
    people = [user(f"u{i}") for i in range(24)]

    async def scenario() -> None:
        shards["s1"].error = Unavailable("shard s1: a passing failure")
        rows = [row(u, T0, age_bucket="x") for u in people]
        assert await engine.put(FEATURE_ME, PROFILE, rows, 5.0) == (24, 0)
        sent = shards["s1"].ops["put_features"]
        shards["s1"].error = None
        assert await until(lambda: shards["s1"].ops["put_features"] > sent)
        await engine.background.drain()

    asyncio.run(scenario())
    shards["s0"].error = shards["s2"].error = Unavailable("down")
    placement = reg.snapshot.placement(feature_placement_ref(PROFILE.name, PROFILE.version))
    on_s1 = [
        "s1" in placement.buckets[key_bucket(reg.snapshot, FEATURE_BUCKETS, u)] for u in people
    ]
    result = get(engine, people)
    got = [result[n]["user_profile__age_bucket"][:2] for n in range(24)]
    assert got == [("x", None) if mine else ("unknown", "unavailable") for mine in on_s1]
    assert any(on_s1) and not all(on_s1)


def test_a_replica_that_restarted_on_a_new_address_is_repaired_there() -> None:
    """A shard killed mid-write comes back on a new address, and its
    catch-up copies only what its peers held when it ran: a retry sent to
    the old address could never land, and a write that reached the peer just
    after the catch-up stayed missing on it for good (the chaos soak)."""
    engine, shards, reg = cluster([("a", "b"), ("a", "b")], write_quorum=1)
    engine.repair.delays = (0.05, 0.05, 0.1, 0.2)
    by_address = {f"mem://{sid}": shard for sid, shard in shards.items()}
    engine.writes.shards = lambda sid, address: by_address[address]
    restarted = InMemoryShard("b", registry=reg)
    by_address["mem://b-restarted"] = restarted

    async def scenario() -> None:
        shards["b"].error = Unavailable("shard b at mem://b was killed")
        await engine.upsert(ME, FAMILY, RECORDS, 5.0)  # a acknowledged it
        members = {**reg.snapshot.shards, "b": ShardMember("b", "mem://b-restarted")}
        reg.snapshot = dataclasses.replace(reg.snapshot, shards=members)
        assert await until(lambda: keys_on(restarted) == ALL)

    asyncio.run(scenario())
    assert shards["b"].ops["upsert"] <= 2  # the old address: only before the move was seen


def test_a_write_whose_caller_gave_up_is_still_repaired() -> None:
    """The caller's deadline or cancellation ended the request while a
    replica's call was out: that call ran on and failed unseen, and a write
    one replica had stayed missing on the other."""
    engine, shards, _ = cluster([("a", "b"), ("a", "b")], write_quorum=0)
    engine.repair.delays = (0.05, 0.05, 0.1, 0.5, 1.0)

    async def scenario() -> None:
        # b's call fails after the caller is gone.
        shards["b"].delay, shards["b"].error = 0.3, Unavailable("shard b: a passing failure")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(engine.upsert(ME, FAMILY, RECORDS, 5.0), 0.1)
        assert keys_on(shards["a"]) == ALL and keys_on(shards["b"]) == set()
        await asyncio.sleep(0.4)  # b's call has failed by now
        shards["b"].delay, shards["b"].error = 0.0, None
        assert await until(lambda: keys_on(shards["b"]) == ALL)

    asyncio.run(scenario())


def test_a_write_no_replica_acknowledged_is_not_completed_on_one() -> None:
    """Both replicas failed the write: retrying each on its own could land
    it on one alone, seconds later — after the other restarted and caught
    up without it — and the replicas would disagree where they agreed."""
    engine, shards, _ = cluster([("a", "b"), ("a", "b")], write_quorum=0)
    engine.repair.delays = (0.05, 0.05, 0.05)

    async def scenario() -> None:
        shards["a"].error = Unavailable("shard a: a passing failure")
        shards["b"].error = Unavailable("shard b is down")
        with pytest.raises(Unavailable):
            await engine.upsert(ME, FAMILY, RECORDS, 5.0)
        shards["a"].error = None  # a answers again, b stays down
        await asyncio.sleep(0.4)
        assert engine.repair.held == 0

    asyncio.run(scenario())
    assert keys_on(shards["a"]) == set() == keys_on(shards["b"])
    assert shards["a"].ops["upsert"] == 1  # never retried


def test_an_error_about_the_request_is_never_retried() -> None:
    engine, shards, _ = cluster([("a", "b"), ("a", "b")], write_quorum=0)

    async def scenario() -> None:
        shards["b"].error = InvalidArgument("shard b refuses the record")
        with pytest.raises(InvalidArgument):
            await engine.upsert(ME, FAMILY, RECORDS, 5.0)
        shards["b"].error = None
        await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert shards["b"].ops["upsert"] == 1 and keys_on(shards["b"]) == set()


def test_the_repairs_held_are_bounded_and_closing_abandons_them() -> None:
    calls = 0

    async def refused() -> tuple[int, int]:
        nonlocal calls
        calls += 1
        raise Unavailable("still down")

    async def scenario() -> None:
        tasks: list[asyncio.Future[None]] = []
        repair = ReplicaRepair(lambda w: tasks.append(asyncio.ensure_future(w)), limit=2,
                               delays=(0.05, 0.05, 10.0))  # fmt: skip
        call = ReplicaCall("b", frozenset({0}), refused, group="set-ab")
        acked: set[object] = {"set-ab"}  # replica a has the write
        dropped = repairs("dropped")
        for _ in range(3):
            repair.failed(call, Unavailable("down"), acked)
        # The oldest was abandoned for the newest.
        assert repair.held == 2 and repairs("dropped") == dropped + 1
        await asyncio.sleep(0.3)  # the two held retried twice each, now waiting 10 s
        assert calls == 4 and tasks[0].cancelled()
        repair.close()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 1.0)
        assert repair.held == 0
        repair.failed(call, Unavailable("down"), acked)  # closed: not held
        assert repair.held == 0

    asyncio.run(scenario())


CENTROIDS = encode_centroids(np.array([[1, 0, 0, 0], [-1, 0, 0, 0]], np.float32))


@pytest.mark.parametrize("new_copy_lands", [True, False])
def test_a_failed_move_delete_is_repaired_once_the_new_copy_landed(new_copy_lands: bool) -> None:
    """Centroid placement, one replica a bucket: an upsert that moves a key
    to another shard deletes its older copy on the first. That delete
    failing for a passing reason was acknowledged and never retried, so the
    old copy — its old vector — stayed searchable for good (no peer of its
    bucket for anti-entropy to compare with; found in review). It is now
    repaired, but only once the new copy was acknowledged: deleting the old
    one of a write that failed would lose the key."""
    engine, shards, _ = cluster([("a",), ("b",)], placement="centroid", centroids=CENTROIDS)
    engine.repair.delays = (0.05, 0.05, 0.1, 0.2)
    run(lambda: engine.upsert(ME, FAMILY, [rec("k", [0.9, 0.1, 0, 0], 5)], 5.0))
    assert keys_on(shards["a"]) == {"k"}

    async def scenario() -> None:
        shards["a"].error = Unavailable("shard a: a passing failure")
        if not new_copy_lands:
            shards["b"].error = Unavailable("shard b is down")
            with pytest.raises(Unavailable):
                await engine.upsert(ME, FAMILY, [rec("k", [-0.9, 0.1, 0, 0], 6)], 5.0)
        else:
            assert await engine.upsert(ME, FAMILY, [rec("k", [-0.9, 0.1, 0, 0], 6)], 5.0) == (1, 0)
        assert keys_on(shards["a"]) == {"k"}  # the old copy, for now
        shards["a"].error = None
        if new_copy_lands:
            assert await until(lambda: keys_on(shards["a"]) == set())
            assert keys_on(shards["b"]) == {"k"}
        else:
            assert await until(lambda: engine.repair.held == 0)  # b's retries ended
            assert keys_on(shards["a"]) == {"k"} and keys_on(shards["b"]) == set()
            assert shards["a"].ops["delete"] == 0  # held for the new copy: never sent

    asyncio.run(scenario())


def test_a_move_delete_whose_caller_gave_up_is_sent_once_the_new_copy_landed() -> None:
    """The caller's deadline ended the request while the new copy's write
    was out: the held delete of the old copy follows it when it lands."""
    engine, shards, _ = cluster([("a",), ("b",)], placement="centroid", centroids=CENTROIDS)
    run(lambda: engine.upsert(ME, FAMILY, [rec("k", [0.9, 0.1, 0, 0], 5)], 5.0))

    async def scenario() -> None:
        shards["b"].delay = 0.3
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                engine.upsert(ME, FAMILY, [rec("k", [-0.9, 0.1, 0, 0], 6)], 5.0), 0.1
            )
        assert keys_on(shards["a"]) == {"k"}  # b has not answered yet
        assert await until(lambda: keys_on(shards["a"]) == set())
        assert keys_on(shards["b"]) == {"k"}

    asyncio.run(scenario())


def test_a_move_delete_is_repaired_where_the_shard_restarted() -> None:
    """The retry of a failed move-delete went to the shard at the address it
    had when the write began: restarted elsewhere, it never got the delete,
    and the old copy stayed searchable for good (found in review)."""
    engine, shards, reg = cluster([("a",), ("b",)], placement="centroid", centroids=CENTROIDS)
    engine.repair.delays = (0.05, 0.05, 0.1, 0.2, 0.3)
    run(lambda: engine.upsert(ME, FAMILY, [rec("k", [0.9, 0.1, 0, 0], 5)], 5.0))
    killed = InMemoryShard("a", registry=reg)
    killed.error = Unavailable("shard a at mem://a was killed")
    by_address = {"mem://a": killed, "mem://b": shards["b"], "mem://a-restarted": shards["a"]}
    engine.writes.shards = lambda sid, address: by_address[address]

    async def scenario() -> None:
        assert await engine.upsert(ME, FAMILY, [rec("k", [-0.9, 0.1, 0, 0], 6)], 5.0) == (1, 0)
        # a restarts, its data kept, on a new address
        members = {**reg.snapshot.shards, "a": ShardMember("a", "mem://a-restarted")}
        reg.snapshot = dataclasses.replace(reg.snapshot, shards=members)
        assert await until(lambda: keys_on(shards["a"]) == set())

    asyncio.run(scenario())
    assert keys_on(shards["b"]) == {"k"} and killed.ops["delete"] >= 1
