"""A search that met a refusing shard runs once more on a fresh snapshot if
the registry moved shards since (a restarted shard comes back on a new
address). Found in review, each reproduced first: with etcd unreachable the
re-read raised and the whole search failed, losing the partial answer the
other shards gave (DESIGN §3: keep serving from the last good snapshot)."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np

from coordinator.fanout import FanoutSettings
from coordinator.model import Access, SearchQuery, SearchResult
from coordinator.service import RetrievalEngine
from core.domain import EntityKey, Metric
from core.errors import Unavailable
from registry.model import Bundle, Route
from registry.snapshot import Snapshot
from tests.inmemory import InMemoryShard
from tests.static_registry import FAMILY, INDEX, registry_for
from tests.test_coordinator_writes import RECORDS

ME = Access("t", "test")


def routed() -> Snapshot:
    """Route `r` over INDEX, bucket 0 on shard a and bucket 1 on shard b."""
    snap = registry_for(["a", "b"], [["a"], ["b"]]).snapshot
    return dataclasses.replace(
        snap, bundles={"b": Bundle("b", FAMILY, FAMILY, INDEX)}, routes={"r": Route("r", "b")}
    )


class EtcdDown:
    """The watched snapshot, and etcd unreachable for a re-read."""

    def __init__(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.rereads = 0

    def reread(self) -> Snapshot:
        self.rereads += 1
        raise Unavailable("etcd at 127.0.0.1:2379 is unreachable")


def shards() -> dict[str, InMemoryShard]:
    """x in bucket 0 on a; y in bucket 1 on b."""
    a, b = InMemoryShard("a", Metric.L2, 4), InMemoryShard("b", Metric.L2, 4)
    a.add(EntityKey("t", "item", "x"), np.zeros(4, np.float32), 0)
    b.add(EntityKey("t", "item", "y"), np.ones(4, np.float32), 1)
    return {"a": a, "b": b}


def engine_over(source: object, by_id: dict[str, InMemoryShard]) -> RetrievalEngine:
    return RetrievalEngine(
        source,  # type: ignore[arg-type]  # a SnapshotSource
        lambda sid, addr: by_id[sid],
        fanout=FanoutSettings(hedge=False),
    )


def query() -> SearchQuery:
    return SearchQuery("r", ME, np.zeros(4, np.float32), 2)


def assert_partial_without_b(result: SearchResult) -> None:
    assert result.partial and result.missing_buckets == (1,)
    assert [h.key.entity_id for h in result.hits] == ["x"]


def test_a_search_answers_partially_when_a_shard_and_etcd_are_down() -> None:
    by_id = shards()
    by_id["b"].error = Unavailable("shard b at mem://b is unavailable: connection refused")
    etcd = EtcdDown(routed())
    engine = engine_over(etcd, by_id)
    assert_partial_without_b(asyncio.run(engine.search(query(), 2.0)))
    assert etcd.rereads == 1  # it did look whether b moved


def test_a_search_batch_answers_partially_when_a_shard_and_etcd_are_down() -> None:
    by_id = shards()
    by_id["b"].error = Unavailable("shard b at mem://b is unavailable: connection refused")
    engine = engine_over(EtcdDown(routed()), by_id)
    for result in asyncio.run(engine.search_many([query(), query()], 2.0)):
        assert_partial_without_b(result)


def test_a_lookup_answers_the_keys_it_can_when_a_shard_and_etcd_are_down() -> None:
    reg = registry_for(["a", "b"], [("a",), ("b",)])
    by_id = {s: InMemoryShard(s, registry=reg) for s in "ab"}
    etcd = EtcdDown(reg.snapshot)
    engine = engine_over(etcd, by_id)
    keys = [r.key for r in RECORDS]

    async def lookup() -> list[str]:
        await engine.upsert(ME, FAMILY, RECORDS, 5.0)
        by_id["b"].error = Unavailable("shard b at mem://b is unavailable: connection refused")
        _, found = await engine.batch_get(ME, FAMILY, keys, False, 2.0)
        return found.statuses()

    statuses = asyncio.run(lookup())
    assert etcd.rereads == 1
    assert set(statuses) == {"found", "unavailable"}, statuses
