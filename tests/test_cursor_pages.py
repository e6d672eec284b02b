"""Later pages through the request path (`run_search`) on in-memory shards
whose summaries a real `SummaryCache` holds (bounds and bucket stats as a
coordinator uses them): what page 1's cursor pins, and what later pages
then read and report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coordinator.fanout import FanoutSettings
from coordinator.model import Access, SearchQuery, SearchResult, ShardIndex, WriteRecord
from coordinator.replicas import ReplicaTracker
from coordinator.search import SearchExecutor
from coordinator.search_request import run_search
from coordinator.snapshots import RegistryView
from coordinator.summaries import SummaryCache
from core.domain import EntityKey, Metric
from registry.model import Bundle, Route
from registry.snapshot import ResolvedRoute
from tests.inmemory import InMemoryShard
from tests.static_registry import FAMILY, INDEX, StaticRegistry, registry_for

QUERY = np.array([1.0, 0.0], np.float32)


@dataclass
class Pager:
    """Two shards, `a` holding bucket 0 and `b` bucket 1, behind one
    coordinator's executor and summary cache."""

    registry: StaticRegistry
    shards: dict[str, InMemoryShard]
    summaries: SummaryCache
    executor: SearchExecutor

    def write(self, sid: str, rows: Sequence[tuple[str, float]], version: int = 1) -> None:
        """Rows of tenant `t` (vector `[x, 0]`: score x) into the shard's
        bucket, then fresh summaries, as a coordinator has after a write."""
        records = [
            (WriteRecord(EntityKey("t", "item", e), np.array([x, 0.0], np.float32), version), 0)
            for e, x in rows
        ]
        bucket = 0 if sid == "a" else 1
        shard = self.shards[sid]
        asyncio.run(shard.upsert(INDEX, [(r, bucket) for r, _ in records], 5.0))
        self.refresh(sid)

    def delete(self, sid: str, entity_id: str, version: int) -> None:
        asyncio.run(
            self.shards[sid].delete(INDEX, [EntityKey("t", "item", entity_id)], version, 5.0)
        )
        self.refresh(sid)

    def refresh(self, sid: str) -> None:
        self.summaries.invalidate(sid)
        asyncio.run(self.summaries.refresh_once())

    def page(self, cursor: str = "", k: int = 2, require_complete: bool = False) -> SearchResult:
        snap = self.registry.snapshot
        index, family = snap.indexes[INDEX], snap.families[FAMILY.name]
        resolved = ResolvedRoute(
            Route("r", "b"),
            Bundle("b", FAMILY, FAMILY, INDEX),
            index,
            family,
            family,
            snap.placements[INDEX],
        )
        q = SearchQuery(
            "r",
            Access("t", "ranking", principal="svc"),
            QUERY,
            k,
            cursor=cursor,
            require_complete=require_complete,
        )
        view = RegistryView(self.registry)

        async def search() -> SearchResult:
            deadline = asyncio.get_running_loop().time() + 5.0  # event-loop time
            return await run_search(view, self.executor, q, resolved, deadline, time.perf_counter())

        return asyncio.run(search())


def pager() -> Pager:
    reg = registry_for(["a", "b"], [["a"], ["b"]], dim=2, metric=Metric.INNER_PRODUCT)
    shards = {sid: InMemoryShard(sid, registry=reg) for sid in ("a", "b")}

    async def describe(sid: str, address: str) -> list[ShardIndex]:
        return await shards[sid].describe()

    summaries = SummaryCache(reg, describe, max_age=60.0)  # type: ignore[arg-type]  # reads only .snapshot
    executor = SearchExecutor(
        lambda sid, addr: shards[sid],
        ReplicaTracker(),
        summaries.bounds,
        FanoutSettings(first_wave=1, hedge=False),
        stats=summaries.bucket,
    )
    return Pager(reg, shards, summaries, executor)


def ids(result: SearchResult) -> list[str]:
    return [h.key.entity_id for h in result.hits]


def test_a_bucket_excluded_by_its_stats_is_not_missing_on_later_pages() -> None:
    """Page 1 excluded bucket 1 (no row of tenant t): exact, never asked,
    not missing. Its cursor listed it missing — every bucket no pin covered —
    so page 2 came back partial, and UNAVAILABLE to require_complete
    (found in review)."""
    p = pager()
    p.write("a", [(f"a{i}", 10.0 - i) for i in range(6)])
    u = WriteRecord(EntityKey("u", "item", "other"), np.array([1.0, 1.0], np.float32), 1)
    asyncio.run(p.shards["b"].upsert(INDEX, [(u, 1)], 5.0))
    p.refresh("b")
    first = p.page(require_complete=True)
    assert ids(first) == ["a0", "a1"] and not first.partial
    assert p.shards["b"].calls == 0  # excluded, not asked
    second = p.page(first.next_cursor, require_complete=True)
    assert ids(second) == ["a2", "a3"]
    assert not second.partial and second.missing_buckets == ()
    third = p.page(second.next_cursor)
    assert ids(third) == ["a4", "a5"] and not third.partial


def test_a_shard_skipped_on_page_one_is_read_at_its_summarys_sequence() -> None:
    """Page 1 skipped `b` by bound and pinned it at 0, which a shard read as
    "no limit"; later pages read `b` as it was then: an item written after
    page 1 leaked in, and one page 1 served that moved to b's bucket since
    (centroid placement) was served twice (found in review). `b` is now
    pinned at the sequence of the summary it was skipped on."""
    p = pager()
    p.write("a", [(f"a{i}", 10.0 - i) for i in range(4)])
    p.write("b", [("b0", 1.0)])
    first = p.page()
    assert ids(first) == ["a0", "a1"]
    assert [(t.shard_id, t.outcome) for t in first.trace][1] == ("b", "skipped_by_bound")
    # After page 1: a new item on b, and a0 moved to b's bucket at a lower score.
    p.write("b", [("new", 8.5), ("a0", 7.5)], version=2)
    p.delete("a", "a0", version=2)
    served, cursor = ids(first), first.next_cursor
    while cursor:
        page = p.page(cursor)
        served += ids(page)
        cursor = page.next_cursor
    assert served == ["a0", "a1", "a2", "a3", "b0"]


def test_a_shard_empty_on_page_one_stays_empty_on_later_pages() -> None:
    """A shard with no write yet is at sequence 0, which pinned nothing."""
    p = pager()
    p.write("a", [(f"a{i}", 10.0 - i) for i in range(4)])
    first = p.page()
    assert ids(first) == ["a0", "a1"]
    p.write("b", [("new", 8.5)])
    second = p.page(first.next_cursor)
    assert ids(second) == ["a2", "a3"]
    assert p.page(second.next_cursor).hits == []
