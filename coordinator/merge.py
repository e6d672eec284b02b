"""Shards → one result: dedupe by key (keep the best), the global order, trim to k.

Pure: the same inputs in any arrival order give the same list.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterable, Sequence
from typing import NamedTuple, Protocol

import numpy as np

from core.domain import EntityKey
from core.ordering import OrderKey, global_order, order_key


class Hit(NamedTuple):
    """A winner of the merge. A named tuple, not a frozen dataclass: one is
    built for every hit a search returns, and a frozen dataclass's __init__
    (a guarded setattr per field) cost a fifth of a SearchBatch's merge."""

    score: float
    key: EntityKey
    shard_id: str
    bucket: int


# A Hit from a tuple, without NamedTuple's keyword-parsing __new__.
_hit = functools.partial(tuple.__new__, Hit)


def _total_key(h: Hit) -> tuple[OrderKey, str, int]:
    # Copies of one key from two replicas tie on the global order; shard and
    # bucket make the choice between them independent of arrival order too.
    return order_key(h.score, h.key), h.shard_id, h.bucket


def merge_topk(per_shard: Iterable[Sequence[Hit]], k: int) -> list[Hit]:
    best: dict[EntityKey, Hit] = {}
    for hits in per_shard:
        for h in hits:
            cur = best.get(h.key)
            if cur is None or _total_key(h) < _total_key(cur):
                best[h.key] = h
    return sorted(best.values(), key=_total_key)[:k]


class RankedHits(Protocol):
    """One shard's hits as arrays (`coordinator.model.ShardAnswer`)."""

    @property
    def scores(self) -> np.ndarray: ...
    @property
    def keys(self) -> Sequence[EntityKey]: ...
    @property
    def shard_ids(self) -> Sequence[str]: ...
    @property
    def buckets(self) -> np.ndarray: ...


def _best_of_each(
    slots: Sequence[Hashable],
    keys: Sequence[EntityKey],
    scores: Sequence[float],
    shard_ids: Sequence[str],
    buckets: Sequence[int],
) -> np.ndarray:
    """Per distinct slot (a key, or a query's key), the position of its best
    hit: the full total key decides, only when a slot repeats (rare: a key
    is in one bucket, and one replica answers a bucket, but for hedges and
    buckets moving) — so a set first tells whether any does."""
    if len(set(slots)) == len(slots):
        return np.arange(len(slots), dtype=np.int64)
    best: dict[Hashable, int] = {}
    for i, slot in enumerate(slots):
        cur = best.setdefault(slot, i)
        if cur != i and (order_key(scores[i], keys[i]), shard_ids[i], buckets[i]) < (
            order_key(scores[cur], keys[cur]),
            shard_ids[cur],
            buckets[cur],
        ):
            best[slot] = i
    return np.fromiter(best.values(), dtype=np.int64, count=len(best))


def merge_ranked(parts: Iterable[RankedHits], k: int) -> list[Hit]:
    """`merge_topk` over columnar answers, the same list: one dict pass drops
    duplicate keys (the full total key decides, only when a key repeats),
    numpy orders the rest (`core.ordering.global_order`), and only the k
    winners become `Hit`s. (One query's own path: `merge_ranked_many` of
    one costs a third more, on the single-search hot path.)"""
    found = [p for p in parts if len(p.keys)]
    if not found:
        return []
    scores = np.concatenate([np.asarray(p.scores, dtype=np.float64) for p in found])
    keys = [key for p in found for key in p.keys]
    shard_ids = [sid for p in found for sid in p.shard_ids]
    buckets = np.concatenate([np.asarray(p.buckets, dtype=np.int64) for p in found]).tolist()
    score_list = scores.tolist()
    keep = _best_of_each(keys, keys, score_list, shard_ids, buckets)
    order = global_order(scores[keep], [keys[i] for i in keep.tolist()])[:k]
    return [_hit((score_list[i], keys[i], shard_ids[i], buckets[i])) for i in keep[order].tolist()]


def merge_ranked_many(
    per_query: Sequence[Sequence[RankedHits]], ks: Sequence[int]
) -> list[list[Hit]]:
    """`merge_ranked` of each query's parts (a SearchBatch's queries, each
    answered by the same calls) in one pass for them all: duplicates are
    dropped per query, and one `global_order` with the query as the group
    orders every query's hits."""
    n = len(per_query)
    parts = [(qi, p) for qi, ps in enumerate(per_query) for p in ps if len(p.keys)]
    if not parts:
        return [[] for _ in range(n)]
    scores = np.concatenate([np.asarray(p.scores, dtype=np.float64) for _, p in parts])
    owner = np.repeat(
        np.fromiter((qi for qi, _ in parts), dtype=np.int64, count=len(parts)),
        [len(p.keys) for _, p in parts],
    )
    keys = [key for _, p in parts for key in p.keys]
    shard_ids = [sid for _, p in parts for sid in p.shard_ids]
    buckets = np.concatenate([np.asarray(p.buckets, dtype=np.int64) for _, p in parts]).tolist()
    score_list = scores.tolist()
    slots = list(zip(owner.tolist(), keys, strict=True))
    keep = _best_of_each(slots, keys, score_list, shard_ids, buckets)
    kept_owner = owner[keep]
    perm = global_order(scores[keep], [keys[i] for i in keep.tolist()], kept_owner)
    ordered = keep[perm]
    # Each query's first k, in order.
    sorted_owner = kept_owner[perm]
    starts = np.searchsorted(sorted_owner, np.arange(n), side="left")
    first = np.arange(ordered.shape[0]) - starts[sorted_owner] < np.asarray(ks)[sorted_owner]
    out: list[list[Hit]] = [[] for _ in range(n)]
    for i, q in zip(ordered[first].tolist(), sorted_owner[first].tolist(), strict=True):
        out[q].append(_hit((score_list[i], keys[i], shard_ids[i], buckets[i])))
    return out
