"""Waves ordered by bound only where they skip shards (`coordinator.fanout.WavePolicy`):
plain-data rules, and the executor over shards whose bounds tell them apart
(clustered: keeps its waves and skips) or not (every shard a sample of
everything: asks all at once after the warm-up) — the same answer either way."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client import REGISTRY

from coordinator.fanin import Execution
from coordinator.fanout import FanoutSettings, WavePolicy
from coordinator.model import ShardQuery
from coordinator.replicas import ReplicaTracker
from coordinator.search import SearchExecutor
from core.domain import EntityKey, Metric, VersionRef
from tests.inmemory import InMemoryShard, snapshot_for
from tests.static_registry import INDEX
from tests.test_coordinator_search import IX, clustered_shards

IXA, IXB = VersionRef("ix-a", "v1"), VersionRef("ix-b", "v1")


def test_the_warmup_goes_in_waves_whatever_it_finds() -> None:
    policy = WavePolicy(warmup=5, explore_every=1000)
    for _ in range(5):
        assert policy.use_waves(IXA)
        policy.record(IXA, later=3, skipped=0)
    assert not policy.use_waves(IXA)
    assert policy.skip_rate(IXA) == 0.0 and policy.skip_rate(IXB) is None


def test_without_skips_one_query_in_explore_every_still_goes_in_waves() -> None:
    policy = WavePolicy(warmup=0, explore_every=8)
    policy.record(IXA, later=1, skipped=0)
    asked = [policy.use_waves(IXA) for _ in range(64)]
    assert sum(asked) == 8 and asked[7] and asked[63]


def test_the_skip_rate_decides_and_follows_the_data() -> None:
    policy = WavePolicy(min_skip_rate=0.2, warmup=0, explore_every=10**6, decay=0.9)
    for _ in range(50):
        policy.record(IXA, later=4, skipped=2)  # half the later targets skipped
    assert policy.use_waves(IXA)
    for _ in range(50):
        policy.record(IXA, later=4, skipped=0)  # the data stopped clustering by shard
    assert not policy.use_waves(IXA)
    assert policy.use_waves(IXB)  # per index version: another has seen nothing
    for _ in range(50):
        policy.record(IXA, later=4, skipped=3)
    assert policy.use_waves(IXA)


@pytest.mark.parametrize(
    "kwargs",
    [{"min_skip_rate": 1.5}, {"warmup": -1}, {"explore_every": 0}, {"decay": 0.0}],
)
def test_settings_out_of_range_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        WavePolicy(**kwargs)  # type: ignore[arg-type]


def sampled_shards(n_shards: int, per_shard: int, dim: int, seed: int) -> list[InMemoryShard]:
    """Hash placement's shape: every shard a sample of the same distribution."""
    rng = np.random.default_rng(seed)
    shards = [InMemoryShard(f"s{i}", Metric.L2, dim) for i in range(n_shards)]
    for i, shard in enumerate(shards):
        for j in range(per_shard):
            v = rng.normal(size=dim).astype(np.float32)
            shard.add(EntityKey("t", "item", f"e{j}-{i}"), v, bucket=i)
    return shards


def searches(
    shards: list[InMemoryShard], queries: np.ndarray, k: int, slack: float = 0.0
) -> list[Execution]:
    """Each query through an executor with bounds (`slack` above the true
    best score: summaries' balls are that loose) and through a full fanout."""
    by_id = {s.shard_id: s for s in shards}
    ex = SearchExecutor(
        lambda sid, addr: by_id[sid],
        ReplicaTracker(),
        lambda sid, ix, qs: by_id[sid].true_bounds(qs, slack),
        FanoutSettings(first_wave=1, hedge=False),
        wave_policy=WavePolicy(warmup=8, explore_every=16),
    )
    full = SearchExecutor(lambda sid, addr: by_id[sid], ReplicaTracker())
    snap = snapshot_for(shards, [[s.shard_id] for s in shards])
    buckets = range(len(shards))

    async def go() -> list[Execution]:
        out = []
        for q in queries:
            query = ShardQuery(q, k, "t")
            got = await ex.run(snap, IX, snap.placement(INDEX), query, buckets, 5.0)
            want = await full.run(snap, IX, snap.placement(INDEX), query, buckets, 5.0)
            assert [(h.score, h.key) for h in got.hits] == [(h.score, h.key) for h in want.hits]
            out.append(got)
        return out

    return asyncio.run(go())


def test_shards_alike_are_asked_at_once_after_the_warmup() -> None:
    shards = sampled_shards(4, 40, 4, seed=5)
    rng = np.random.default_rng(6)
    runs = searches(shards, rng.normal(size=(64, 4)).astype(np.float32), 5, slack=1.0)
    in_waves = [max(t.wave for t in r.trace) > 0 for r in runs]
    assert all(in_waves[:8])  # the warm-up measured: nothing (or next to nothing) skipped
    assert sum(r.shards_skipped for r in runs[:8]) < 0.2 * 8 * 3
    later = in_waves[8:]
    # After it: one wave, every shard asked at once, but for the exploring queries.
    assert sum(later) <= len(later) // 16 + 1
    assert all(r.shards_searched == 4 for r, w in zip(runs[8:], later, strict=True) if not w)
    assert skip_rate_metric() < 0.2  # what /metrics shows an operator


def skip_rate_metric() -> float:
    value = REGISTRY.get_sample_value("vecshard_search_wave_skip_rate", {"index": str(IX.ref)})
    assert value is not None
    return value


def test_shards_that_differ_keep_their_waves_and_skip() -> None:
    shards = clustered_shards(Metric.L2, 6, 30, 6, seed=3)
    rng = np.random.default_rng(4)
    queries = np.stack([shards[i % 6].vectors[i % 30] for i in range(48)])
    runs = searches(shards, queries.astype(np.float32) + rng.normal(scale=0.01, size=(48, 6)), 5)
    assert all(max(t.wave for t in r.trace) > 0 for r in runs)
    assert sum(r.shards_skipped for r in runs[8:]) >= 3 * len(runs[8:])
    assert skip_rate_metric() >= 0.5
