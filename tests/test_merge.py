"""Property tests of the shards → result merge (DESIGN §6)."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.merge import Hit, merge_ranked, merge_ranked_many, merge_topk
from coordinator.model import ShardAnswer
from core.domain import EntityKey
from core.ordering import global_order, order_key

# Few distinct scores and ids, so ties and duplicate keys are common.
keys = st.builds(
    EntityKey,
    st.sampled_from(["", "t1", "t2"]),
    st.sampled_from(["item", "user"]),
    st.sampled_from(["a", "b", "ab", "B", "é", "z9", "10", "9"]),
)
hits = st.builds(
    Hit,
    score=st.sampled_from([-1.5, 0.0, 0.25, 0.25, 1.0, 3.0]),
    key=keys,
    shard_id=st.sampled_from(["s0", "s1", "s2"]),
    bucket=st.integers(0, 3),
)
shard_lists = st.lists(st.lists(hits, max_size=12), max_size=5)


def reference(lists: list[list[Hit]], k: int) -> list[tuple[float, EntityKey]]:
    best: dict[EntityKey, float] = {}
    for hs in lists:
        for h in hs:
            best[h.key] = max(best.get(h.key, float("-inf")), h.score)
    ordered = sorted(best.items(), key=lambda kv: order_key(kv[1], kv[0]))
    return [(s, key) for key, s in ordered[:k]]


@settings(max_examples=300)
@given(shard_lists, st.integers(1, 20), st.randoms(use_true_random=False))
def test_merge_is_global_topk_of_union_whatever_the_arrival_order(
    lists: list[list[Hit]], k: int, rnd: random.Random
) -> None:
    per_shard = [sorted(hs, key=lambda h: order_key(h.score, h.key)) for hs in lists]
    merged = merge_topk(per_shard, k)
    assert [(h.score, h.key) for h in merged] == reference(lists, k)
    shuffled = [list(hs) for hs in per_shard]
    rnd.shuffle(shuffled)
    for hs in shuffled:
        rnd.shuffle(hs)
    assert merge_topk(shuffled, k) == merged
    assert len({h.key for h in merged}) == len(merged)


def test_ties_break_by_entity_id_bytes_then_tenant_then_type() -> None:
    a = Hit(1.0, EntityKey("t2", "item", "a"), "s0", 0)
    b = Hit(1.0, EntityKey("t1", "item", "a"), "s1", 0)
    c = Hit(1.0, EntityKey("t1", "item", "B"), "s1", 0)  # "B" (0x42) < "a" (0x61)
    d = Hit(1.0, EntityKey("t1", "user", "a"), "s1", 0)
    e = Hit(2.0, EntityKey("t9", "item", "zzz"), "s2", 0)
    assert merge_topk([[a, d], [b, c], [e]], 10) == [e, c, b, d, a]


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.lists(st.lists(hits, max_size=10), max_size=4), st.integers(1, 12)),
        max_size=8,
    )
)
def test_a_batch_merged_at_once_equals_each_query_merged_alone(
    queries: list[tuple[list[list[Hit]], int]],
) -> None:
    """`merge_ranked_many` (a SearchBatch's queries in one pass) gives every
    query exactly `merge_ranked`'s list: duplicates, score ties and k each
    per query, never across queries."""
    per_query, per_query_hits = [], []
    for lists, _ in queries:
        answers, shard_hits = [], []
        for hs in lists:
            unique = list({h.key: h for h in hs}.values())  # a shard answers a key once
            answers.append(ShardAnswer.of(unique, len(unique)))
            shard_hits.append(unique)
        per_query.append(answers)
        per_query_hits.append(shard_hits)
    ks = [k for _, k in queries]
    alone = [merge_ranked(answers, k) for answers, k in zip(per_query, ks, strict=True)]
    assert merge_ranked_many(per_query, ks) == alone
    # ... and each is the reference merge of the same hits (a key from two
    # shards kept once, the better copy).
    assert alone == [merge_topk(hs, k) for hs, k in zip(per_query_hits, ks, strict=True)]


def test_equal_scores_in_two_queries_stay_in_their_queries() -> None:
    # The last hit of one query and the first of the next tie on score: the
    # key order applies within a query only.
    def one(eid: str, score: float) -> ShardAnswer:
        return ShardAnswer.of([Hit(score, EntityKey("t", "item", eid), "s0", 0)], 1)

    per_query = [[one("b", 1.0)], [one("a", 1.0)], [one("c", 2.0), one("0", 1.0)]]
    got = merge_ranked_many(per_query, [5, 5, 5])
    assert [[h.key.entity_id for h in hs] for hs in got] == [["b"], ["a"], ["c", "0"]]
    # The order itself: groups ascending, keys ordering ties within a group only.
    b, a = EntityKey("t", "item", "b"), EntityKey("t", "item", "a")
    perm = global_order(np.array([1.0, 1.0, 1.0]), [b, a, b], np.array([0, 1, 1]))
    assert perm.tolist() == [0, 1, 2]  # in group 1, "a" before "b"
