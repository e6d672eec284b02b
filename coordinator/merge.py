"""Shards → one result: dedupe by key (keep the best), the global order, trim to k.

Pure: the same inputs in any arrival order give the same list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from registry.model import EntityKey
from registry.ordering import order_key


@dataclass(frozen=True)
class Hit:
    score: float
    key: EntityKey
    shard_id: str
    bucket: int


def merge_topk(per_shard: Iterable[Sequence[Hit]], k: int) -> list[Hit]:
    best: dict[EntityKey, Hit] = {}
    for hits in per_shard:
        for h in hits:
            cur = best.get(h.key)
            if cur is None or (order_key(h.score, h.key), h.shard_id) < (order_key(cur.score, cur.key), cur.shard_id):
                best[h.key] = h
    ordered = sorted(best.values(), key=lambda h: (order_key(h.score, h.key), h.shard_id))
    return ordered[:k]
