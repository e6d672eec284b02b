"""Retrieval quality measures shared by evaluation gates (offline), the
scheduled canary queries (coordinator) and the sampled exact re-checks
(shards), so every place that says "recall" means the same number."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence

from core.errors import InvalidArgument

# Stored vectors per shard that one recall check searches, approximately and
# exactly: each exact search reads every row of the shard, so a sample of
# 10,000 on a million rows is already minutes of a shard's CPU — past it, a
# mistyped sample would hold a shard (its RPC threads) for hours.
MAX_RECALL_SAMPLE = 10_000


def check_recall_sample(sample: int) -> None:
    if not 1 <= sample <= MAX_RECALL_SAMPLE:
        raise InvalidArgument(
            f"sample_per_shard={sample}: expected 1..{MAX_RECALL_SAMPLE} stored vectors per shard"
        )


def recall_at_k(found: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Share of the relevant items (at most k of them count) among the first
    k found. With more than k relevant items the best possible is 1.0, not
    k/len(relevant): a labelled set may list more relevant items than k.
    Items are distinct: an id listed twice is one relevant item (counted
    twice, a perfect answer scored below 1.0)."""
    if k <= 0:
        raise ValueError(f"k={k}: expected k > 0")
    wanted = set(relevant)
    if not wanted:
        return 1.0
    hits = len(set(found[:k]) & wanted)
    return hits / min(k, len(wanted))


def overlap_at_k(a: Sequence[Hashable], b: Sequence[Hashable], k: int) -> float:
    """|top-k(a) ∩ top-k(b)| / k (1.0 when both are empty): how much of one
    ranking's head the other keeps."""
    if k <= 0:
        raise ValueError(f"k={k}: expected k > 0")
    head_a, head_b = set(a[:k]), set(b[:k])
    if not head_a and not head_b:
        return 1.0
    return len(head_a & head_b) / max(min(k, max(len(head_a), len(head_b))), 1)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
