"""Lookups when replicas fail (found in review, each reproduced first): a
re-read on a fresh snapshot started a whole new time budget and overran the
caller's deadline; a failover cover's members never asked each other for a
failed member's keys, so keys a live replica held read `unavailable`; and
lookup latencies joined the window searches hedge by."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from coordinator.hedging import HedgeTimer, counted
from coordinator.replicas import ReplicaTracker
from coordinator.service import RetrievalEngine
from core.errors import Unavailable
from registry.model import ShardMember
from registry.placement import tenant_buckets_of
from registry.snapshot import Snapshot
from tests.inmemory import InMemoryShard
from tests.static_registry import FAMILY, registry_for
from tests.test_coordinator_writes import ME, RECORDS, cluster, run


class _Moving:
    """A registry whose re-read shows shard b at a new address."""

    def __init__(self, snap: Snapshot) -> None:
        self.snapshot = snap
        shards = {**snap.shards, "b": ShardMember("b", "mem://b-restarted")}
        self.fresh = dataclasses.replace(snap, revision=snap.revision + 1, shards=shards)

    def reread(self) -> Snapshot:
        self.snapshot = self.fresh
        return self.fresh


def test_a_re_read_after_shards_moved_stays_within_the_callers_timeout() -> None:
    reg = registry_for(["a", "b"], [("a",), ("b",)])
    shards = {s: InMemoryShard(s, registry=reg) for s in "ab"}
    engine = RetrievalEngine(_Moving(reg.snapshot), lambda sid, addr: shards[sid])

    async def lookup() -> float:
        await engine.upsert(ME, FAMILY, RECORDS, 5.0)
        shards["a"].delay = 0.7  # slow, within the budget
        shards["b"].error = Unavailable("shard b restarted elsewhere")
        start = time.monotonic()
        await engine.batch_get(ME, FAMILY, [r.key for r in RECORDS], False, 1.0)
        return time.monotonic() - start

    assert asyncio.run(lookup()) <= 1.0


def test_a_key_a_live_replica_holds_is_found_when_two_replicas_fail() -> None:
    """Bucket 0 on (a, b, c), 1 on (a, b, d), 2 on (a, c, d); a and b refuse.
    a's cover was b for {0, 1} and c for {2}; when b failed, c — answering in
    the same request — was excluded as tried, and bucket 0 read unavailable."""
    engine, shards, _ = cluster([("a", "b", "c"), ("a", "b", "d"), ("a", "c", "d")])
    run(lambda: engine.upsert(ME, FAMILY, RECORDS, 5.0))
    for sid in "ab":
        shards[sid].error = Unavailable(f"shard {sid} is down")
    keys = [r.key for r in RECORDS]
    assert 0 in tenant_buckets_of("t", [k.entity_id for k in keys], 3).tolist()
    _, found = run(lambda: engine.batch_get(ME, FAMILY, keys, False, 5.0))
    assert found.statuses() == ["found"] * len(keys)


def test_lookup_latencies_do_not_set_when_searches_hedge() -> None:
    tracker, hedges = ReplicaTracker(), HedgeTimer()

    async def lookup() -> str:
        await asyncio.sleep(0.02)
        return "ok"

    async def calls() -> None:
        for _ in range(25):
            await counted(tracker, hedges, "a", lookup)
        for _ in range(25):  # searches of 1 ms
            tracker.acquire("a")
            tracker.release("a", 0.001)

    asyncio.run(calls())
    assert hedges.delay("a", 10.0) is not None  # lookups keep their own p95
    delay = tracker.hedge_delay("a")
    assert delay is not None and delay < 0.01


def test_a_lookup_reads_the_index_version_that_serves() -> None:
    """Writes reach every index version of an embedding version, but one made
    later (another kind being tried, still building) lacks the rows written
    before it: lookups read the first by name and answered them `missing`
    (found in review)."""
    from coordinator.lookups import lookup_index
    from core.domain import VersionRef
    from registry.model import IndexVersion, Status

    def ix(name: str, status: Status) -> IndexVersion:
        return IndexVersion(name, "v1", VersionRef("items", "v1"), status=status)

    trying = ix("a-ivfpq", Status.BUILDING)
    serving = ix("b-hnsw", Status.PRODUCTION)
    assert lookup_index([trying, serving]) == serving
    assert lookup_index([trying, ix("c-flat", Status.READY)]).name == "c-flat"
    assert (
        lookup_index([ix("b", Status.READY), ix("a", Status.READY)]).name == "b"
    )  # registry order
