"""Bucket exclusion reads stats over every replica of a bucket (issue 14,
defect 3 with a write quorum below the replica count), from fresh summaries."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from coordinator.model import IndexSummary, ShardIndex
from coordinator.summaries import SummaryCache
from core.domain import Metric, VersionRef
from registry.model import Placement, ShardMember
from registry.snapshot import Snapshot

IX = VersionRef("ix", "v1")


@dataclass
class FakeCache:
    snapshot: Snapshot


def summary(tenants: set[str], lo: float, hi: float, sequence: int | None = 4) -> IndexSummary:
    return IndexSummary(
        Metric.L2,
        np.zeros((1, 2), np.float32),
        np.ones(1, np.float32),
        {0: ({"price": (lo, hi)}, frozenset(tenants))},
        sequence,
    )


def cache_with(answers: dict[str, IndexSummary], max_age: float = 5.0) -> SummaryCache:
    snap = Snapshot(
        revision=1,
        placements={IX: Placement(IX, (("r1", "r2"),))},
        shards={s: ShardMember(s, f"mem://{s}") for s in ("r1", "r2")},
    )

    async def describe(sid: str, address: str) -> list[ShardIndex]:
        if sid not in answers:
            raise ConnectionError(sid)
        return [ShardIndex(IX, 1, 0, answers[sid])]

    cache = SummaryCache(FakeCache(snap), describe, max_age=max_age)  # type: ignore[arg-type]  # reads only .snapshot
    asyncio.run(cache.refresh_once())
    return cache


def test_every_replica_must_vouch_for_the_bucket() -> None:
    assert cache_with({"r1": summary({"t"}, 1, 5)}).bucket(IX, 0) is None


def test_stats_are_the_union_over_replicas() -> None:
    cache = cache_with({"r1": summary({"t"}, 1, 5), "r2": summary({"t", "t2"}, 0, 3)})
    assert cache.bucket(IX, 0) == ({"price": (0, 5)}, frozenset({"t", "t2"}))


def test_expired_summaries_vouch_for_nothing() -> None:
    cache = cache_with({"r1": summary({"t"}, 1, 5), "r2": summary({"t"}, 1, 5)}, max_age=0.0)
    assert cache.bucket(IX, 0) is None
    assert cache.bounds("r1", IX, np.zeros((1, 2), np.float32)) is None


def test_a_write_drops_the_writers_summary_of_that_shard() -> None:
    cache = cache_with({"r1": summary({"t"}, 1, 5), "r2": summary({"t"}, 1, 5)})
    assert cache.bucket(IX, 0) is not None
    cache.invalidate("r2")
    assert cache.bucket(IX, 0) is None


def test_bounds_say_the_sequence_they_hold_for_and_an_older_shards_give_none() -> None:
    """A shard skipped on a summary is pinned at its sequence for the next
    pages (coordinator.cursor); a shard from before summary_sequence does
    not say it, so it is not skipped on its summary (its bucket stats still
    exclude: an excluded bucket is read on no page)."""
    cache = cache_with({"r1": summary({"t"}, 1, 5), "r2": summary({"t"}, 1, 5, sequence=None)})
    found = cache.bounds("r1", IX, np.zeros((1, 2), np.float32))
    assert found is not None and found.sequence == 4 and found.scores.shape == (1,)
    assert cache.bounds("r2", IX, np.zeros((1, 2), np.float32)) is None
    assert cache.bucket(IX, 0) is not None
