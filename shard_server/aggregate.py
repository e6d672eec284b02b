"""Segments → one shard answer (the first of the three merges, STYLE §4).

A key has one live row, but a search racing a write can see the key's new
row in the growing segment and its old row in a sealed one before the old row
is masked. So hits are deduplicated by key, keeping the newest write (highest
sequence; on a tie the better order, which keeps the result deterministic),
then ordered globally (DESIGN §6) and cut to k. Pure function.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from core.domain import EntityKey
from core.ordering import global_order, order_key
from shard_server.segment import Hit, SegmentHits


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


def merge_segment_columns(
    parts: Sequence[SegmentHits], k: int
) -> tuple[np.ndarray, Sequence[EntityKey], np.ndarray, np.ndarray]:
    """`merge_segment_hits` over columnar answers: (scores, keys, buckets,
    seqs) of the k best. One answering segment (the usual case) is passed
    through; otherwise keys are deduplicated (newest write, then the better
    order) and the survivors ordered by `core.ordering.global_order`."""
    found = [p for p in parts if len(p)]
    if not found:
        return (
            np.zeros(0, np.float32),
            [],
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
        )
    if len(found) == 1:
        p = found[0]
        return p.scores[:k], p.keys[:k], p.buckets[:k], p.seqs[:k]
    scores = np.concatenate([p.scores for p in found])
    keys = [key for p in found for key in p.keys]
    buckets = np.concatenate([p.buckets for p in found])
    seqs = np.concatenate([p.seqs for p in found])
    seq_list, score_list = seqs.tolist(), scores.tolist()
    best: dict[EntityKey, int] = {}
    for i, key in enumerate(keys):
        cur = best.get(key)
        if (
            cur is None
            or seq_list[i] > seq_list[cur]
            or (
                seq_list[i] == seq_list[cur]
                and order_key(score_list[i], key) < order_key(score_list[cur], key)
            )
        ):
            best[key] = i
    keep = np.fromiter(best.values(), dtype=np.int64, count=len(best))
    kept_keys = [keys[i] for i in keep.tolist()]
    order = global_order(scores[keep], kept_keys)[:k]
    chosen = keep[order]
    return scores[chosen], [keys[i] for i in chosen.tolist()], buckets[chosen], seqs[chosen]
