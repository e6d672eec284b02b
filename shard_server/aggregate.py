"""Segments → one shard answer (the first of the three merges, STYLE §4).

A key has one live row, but a search racing a write can see the key's new
row in the growing segment and its old row in a sealed one before the old row
is masked. So hits are deduplicated by key, keeping the newest write (highest
sequence; on a tie the better order, which keeps the result deterministic),
then ordered globally (DESIGN §6) and cut to k. Pure function.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from core.domain import EntityKey
from core.ordering import order_key
from shard_server.segment import Hit


def merge_segment_hits(per_segment: Iterable[Sequence[Hit]], k: int) -> list[Hit]:
    best: dict[EntityKey, Hit] = {}
    for hits in per_segment:
        for h in hits:
            cur = best.get(h.key)
            if (
                cur is None
                or h.seq > cur.seq
                or (h.seq == cur.seq and order_key(h.score, h.key) < order_key(cur.score, cur.key))
            ):
                best[h.key] = h
    return sorted(best.values(), key=lambda h: order_key(h.score, h.key))[:k]
