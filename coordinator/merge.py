"""Shards → one result: dedupe by key (keep the best), the global order, trim to k.

Pure: the same inputs in any arrival order give the same list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.domain import EntityKey
from core.ordering import OrderKey, order_key


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
