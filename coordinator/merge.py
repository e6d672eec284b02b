"""Shards → one result: dedupe by key (keep the best), the global order, trim to k.

Pure: the same inputs in any arrival order give the same list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from core.domain import EntityKey
from core.ordering import OrderKey, global_order, order_key


@dataclass(frozen=True)
class Hit:
    score: float
    key: EntityKey
    shard_id: str
    bucket: int


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


def merge_ranked(parts: Iterable[RankedHits], k: int) -> list[Hit]:
    """`merge_topk` over columnar answers, the same list: one dict pass drops
    duplicate keys (the full total key decides, only when a key repeats),
    numpy orders the rest (`core.ordering.global_order`), and only the k
    winners become `Hit`s."""
    found = [p for p in parts if len(p.keys)]
    if not found:
        return []
    scores = np.concatenate([np.asarray(p.scores, dtype=np.float64) for p in found])
    keys = [key for p in found for key in p.keys]
    shard_ids = [sid for p in found for sid in p.shard_ids]
    buckets = np.concatenate([np.asarray(p.buckets, dtype=np.int64) for p in found]).tolist()
    score_list = scores.tolist()
    best: dict[EntityKey, int] = {}
    for i, key in enumerate(keys):
        cur = best.setdefault(key, i)
        if cur != i and (order_key(score_list[i], key), shard_ids[i], buckets[i]) < (
            order_key(score_list[cur], key),
            shard_ids[cur],
            buckets[cur],
        ):
            best[key] = i
    keep = np.fromiter(best.values(), dtype=np.int64, count=len(best))
    order = global_order(scores[keep], [keys[i] for i in keep.tolist()])[:k]
    return [Hit(score_list[i], keys[i], shard_ids[i], buckets[i]) for i in keep[order].tolist()]
