"""The engine's pure functions: segments → shard merge, the search planner and
the compaction planner, on plain data."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import EntityKey
from core.ordering import order_key
from shard_server.aggregate import merge_segment_hits
from shard_server.compaction import CompactionPolicy, SegmentStat, plan_compaction
from shard_server.planner import Method, Plan, PlannerPolicy, plan_segment_search
from shard_server.segment import Hit

keys = st.builds(
    EntityKey, st.sampled_from(["t0", "t1"]), st.just("item"), st.sampled_from("abcdefgh")
)
hits = st.builds(
    Hit, st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]), keys, st.just(0), st.integers(0, 5)
)


@settings(max_examples=300)
@given(st.lists(st.lists(hits, max_size=8), max_size=5), st.integers(1, 10), st.randoms())
def test_merge_keeps_the_newest_version_of_each_key_in_the_global_order(
    per_segment: list[list[Hit]], k: int, rnd: random.Random
) -> None:
    got = merge_segment_hits(per_segment, k)
    # one hit per key, the newest write (best order among equal sequences)
    newest: dict[EntityKey, Hit] = {}
    for h in (h for seg in per_segment for h in seg):
        cur = newest.get(h.key)
        if cur is None or (h.seq, h.score) > (cur.seq, cur.score):
            newest[h.key] = h
    want = sorted(newest.values(), key=lambda h: order_key(h.score, h.key))[:k]
    assert got == want
    assert len({h.key for h in got}) == len(got)
    # whatever order segments answer in
    shuffled = [list(seg) for seg in per_segment]
    rnd.shuffle(shuffled)
    for seg in shuffled:
        rnd.shuffle(seg)
    assert merge_segment_hits(shuffled, k) == got


def test_planner_scans_small_or_selective_sets_exactly() -> None:
    p = PlannerPolicy(exact_below_selectivity=0.05, exact_below_rows=100, max_filter_boost=8)
    assert plan_segment_search(10_000, 10_000, False, False, p) == Plan(Method.EXACT)
    assert plan_segment_search(10_000, 10_000, True, True, p) == Plan(Method.EXACT)
    assert plan_segment_search(10_000, 10_000, True, False, p) == Plan(Method.ANN)
    assert plan_segment_search(10_000, 80, True, False, p).method is Method.EXACT
    assert plan_segment_search(100_000, 4_000, True, False, p).method is Method.EXACT
    assert plan_segment_search(100_000, 50_000, True, False, p) == Plan(Method.FILTERED_ANN, 2.0)
    assert plan_segment_search(100_000, 6_000, True, False, p) == Plan(Method.FILTERED_ANN, 8.0)


def test_compaction_rewrites_deleted_heavy_or_upgradable_then_merges_small_tiers() -> None:
    p = CompactionPolicy(min_segments=3, small_rows=1000, deleted_ratio=0.25)
    big = SegmentStat("big", 5000, 0)
    assert plan_compaction([big, SegmentStat("a", 100, 0), SegmentStat("b", 200, 0)], p) == []
    assert plan_compaction(
        [big, SegmentStat("c", 300, 0), SegmentStat("a", 100, 0), SegmentStat("b", 200, 0)], p
    ) == ["a", "b", "c"]
    assert plan_compaction([big, SegmentStat("d", 4000, 1000)], p) == ["d"]
    assert plan_compaction([big, SegmentStat("f", 1500, 0, upgradable=True)], p) == ["f"]
    assert plan_compaction([big], p, force=True) == []
    assert plan_compaction([big, SegmentStat("a", 1, 0)], p, force=True) == ["big", "a"]
    assert plan_compaction([SegmentStat("x", 10, 1)], p, force=True) == ["x"]
