"""What every segment is, whatever its kind, and what a search in one returns.

A segment holds rows of one index version on this shard. The growing segment
(exact, mutable) takes writes; sealed segments (flat, hnsw, ivfpq) are
immutable except for a deleted-row bitmap, so searches run on them without
locks. The partition keeps one live row per key across all of them and masks
an old row as soon as its key is written again or deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from core.domain import EntityKey
from core.filters import Filter
from core.ordering import order_key
from shard_server.key_table import KeyRows, KeyTable
from shard_server.summary import SegmentSummary


@dataclass(frozen=True)
class SearchOptions:
    """Per-query knobs; 0 means the index version's default."""

    ef_search: int = 0
    nprobe: int = 0
    refine_factor: int = 0
    # Search every segment exactly (ground truth, debugging).
    exact: bool = False
    # Return the index's own approximate scores instead of exact rescoring.
    skip_rerank: bool = False


DEFAULT_OPTIONS = SearchOptions()


@dataclass(frozen=True)
class Hit:
    score: float
    key: EntityKey
    bucket: int
    # Write sequence of the row: across segments the newest version of a key wins.
    seq: int = 0


@dataclass(frozen=True, eq=False)
class SegmentHits:
    """One segment's best hits for one query, in the global order, as arrays
    (row i: `scores[i]`, `keys[i]`, `buckets[i]`, `seqs[i]`): no object per
    hit on the search path; `hits` builds them where a caller wants them."""

    scores: np.ndarray  # float32
    keys: Sequence[EntityKey]
    buckets: np.ndarray  # int64
    seqs: np.ndarray  # int64
    # Rows that passed tenant, filter and deletes (what the planner saw).
    candidates: int
    plan: str = "exact"
    # Scores are the index's approximations, not canonical (skip_rerank).
    approximate: bool = False

    @property
    def hits(self) -> list[Hit]:
        return [
            Hit(s, key, b, q)
            for s, key, b, q in zip(
                self.scores.tolist(),
                self.keys,
                self.buckets.tolist(),
                self.seqs.tolist(),
                strict=True,
            )
        ]

    def __len__(self) -> int:
        return len(self.keys)


_F32 = np.zeros(0, np.float32)
_I64 = np.zeros(0, np.int64)


def no_hits(candidates: int, plan: str = "exact") -> SegmentHits:
    return SegmentHits(_F32, (), _I64, _I64, candidates, plan)


EMPTY_HITS = no_hits(0, "empty")


class QueryLike(Protocol):
    """What a segment reads of one query (`shard_server.model.Query`)."""

    @property
    def k(self) -> int: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def filter(self) -> Filter | None: ...
    @property
    def options(self) -> SearchOptions: ...


class Segment(Protocol):
    """A searchable set of rows. Implementations: `GrowingSegment` (state
    growing/sealing) and `SealedSegment` (kind flat/hnsw/ivfpq)."""

    id: str
    kind: str

    @property
    def state(self) -> str:
        """growing (takes writes), sealing (frozen, being built) or sealed."""
        ...

    def __len__(self) -> int:
        """Rows, deleted ones included."""
        ...

    @property
    def deleted_count(self) -> int: ...

    def search(
        self, query: np.ndarray, k: int, tenant_id: str, flt: Filter | None, options: SearchOptions
    ) -> SegmentHits:
        """The segment's top-k live rows of the tenant that match the filter,
        scored canonically (unless options.skip_rerank)."""
        ...

    def search_batch(self, queries: np.ndarray, requests: Sequence[QueryLike]) -> list[SegmentHits]:
        """`search` for every row of the (n, d) matrix `queries` with the
        matching request: the same answers, with the work done per batch
        where the segment can (one index call, one rerank product)."""
        ...

    def delete(self, key: EntityKey) -> bool:
        """Masks the key's live row, if this segment holds one."""
        ...

    def delete_many(self, keys: Sequence[EntityKey]) -> int:
        """Masks the live rows of many keys at once; returns how many."""
        ...

    def summary(self) -> SegmentSummary:
        """Balls covering every row (for score bounds) and per-bucket stats."""
        ...

    def nbytes(self) -> int:
        """Memory the segment holds in the process (not its mapped files)."""
        ...

    def mapped_bytes(self) -> int:
        """Bytes of the segment's files mapped into memory (vectors)."""
        ...

    def release(self) -> None:
        """Called once no search holds the segment any more and it has left the
        manifest: drops the index and deletes its files."""
        ...


class AnnIndex(Protocol):
    """The approximate structure inside a sealed segment (hnswlib or faiss)."""

    kind: str

    def search(
        self,
        query: np.ndarray,
        n: int,
        allowed: np.ndarray | None,
        options: SearchOptions,
        boost: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Up to `n` candidate rows (only `allowed` ones when given) and their
        approximate higher-is-better scores. `boost` ≥ 1 widens the search
        when a filter removes most rows."""
        ...

    def save(self, path: Path) -> None: ...

    def nbytes(self) -> int: ...


def ranked(
    scores: np.ndarray,
    rows: np.ndarray,
    keys: Sequence[EntityKey],
    buckets: np.ndarray,
    seqs: np.ndarray,
    k: int,
    key_rank: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best of one segment's scored candidates (`rows` index `keys`,
    `buckets`, `seqs`), in the global order: (their scores, their rows).

    With `key_rank` (each row's position in the global key order, fixed for
    an immutable segment) the order is one numpy lexsort. Without it only the
    candidates scoring at least the k-th best are compared by their keys
    (ties at the boundary included, so the full order key decides them)."""
    n = scores.shape[0]
    if n > k:
        kth = np.partition(scores, n - k)[n - k]
        chosen = np.flatnonzero(scores >= kth)
    else:
        chosen = np.arange(n)
    picked = rows[chosen]
    top = scores[chosen]
    if key_rank is not None:
        order = np.lexsort((key_rank[picked], -top.astype(np.float64)))[:k]
    else:
        order = np.array(
            sorted(
                range(len(picked)),
                key=lambda i: order_key(float(top[i]), keys[int(picked[i])]),
            )[:k],
            dtype=np.int64,
        )
    return top[order], picked[order]


def segment_hits(
    scores: np.ndarray,
    rows: np.ndarray,
    keys: Sequence[EntityKey],
    buckets: np.ndarray,
    seqs: np.ndarray,
    k: int,
    candidates: int,
    plan: str = "exact",
    approximate: bool = False,
    key_rank: np.ndarray | None = None,
) -> SegmentHits:
    top, picked = ranked(scores, rows, keys, buckets, seqs, k, key_rank)
    rows_list = picked.tolist()
    return SegmentHits(
        top.astype(np.float32, copy=False),
        [keys[r] for r in rows_list],
        buckets[picked].astype(np.int64, copy=False),
        seqs[picked].astype(np.int64, copy=False),
        candidates,
        plan,
        approximate,
    )


# Up to this many candidates in a batch, one lexsort over all of them costs
# less than the packed keys' dozen numpy calls (36 queries x 64: 141 vs 37 us;
# 1 query: 7 vs 18 us); they cross near 16 queries of 64 candidates.
LEXSORT_MAX_CANDIDATES = 768


def ranked_batch(
    scores: np.ndarray, rows: np.ndarray, key_rank: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """`ranked` for a batch of queries with the same number of candidates
    each (row i of `scores` and `rows` is query i's), in a few numpy calls
    for the whole batch; every query's k best are exactly `ranked`'s.
    Small batches: one lexsort, the query as its first key. Large ones:
    each candidate's place in the global order (score descending, then
    key) is one unsigned 64-bit number — the float32 score's bits made
    order-preserving and flipped, above the key's rank (unique) — so a
    per-row partial sort is the exact order. Returns (B, min(k, m))."""
    b, m = rows.shape
    kk = min(k, m)
    # Ranks past 32 bits (no segment is this big) cannot be packed either.
    if rows.size <= LEXSORT_MAX_CANDIDATES or key_rank.shape[0] >> 32:
        query = np.repeat(np.arange(b), m)
        flat = np.lexsort((key_rank[rows].ravel(), -scores.astype(np.float64).ravel(), query))
        picked = flat.reshape(b, m)[:, :kk]
        return scores.ravel()[picked], rows.ravel()[picked]
    order_keys = (descending_bits(scores).astype(np.uint64) << np.uint64(32)) | key_rank[
        rows
    ].astype(np.uint64)
    if kk < m:
        best = np.argpartition(order_keys, kk - 1, axis=1)[:, :kk]
        order = np.take_along_axis(
            best, np.argsort(np.take_along_axis(order_keys, best, 1), axis=1), 1
        )
    else:
        order = np.argsort(order_keys, axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


def descending_bits(scores: np.ndarray) -> np.ndarray:
    """uint32 per float32 score, ordered as the scores descending (equal
    scores equal; -0.0 is 0.0): the IEEE bits made monotonic (negatives
    inverted, positives above them), then inverted."""
    bits = (scores.astype(np.float32, copy=False) + np.float32(0.0)).view(np.uint32)
    ascending = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(1 << 31))
    return ~ascending


def segment_hits_batch(
    scores: np.ndarray,
    rows: np.ndarray,
    keys: KeyTable,
    buckets: np.ndarray,
    seqs: np.ndarray,
    k: int,
    candidates: int,
    plan: str,
    approximate: bool,
    key_rank: np.ndarray,
) -> list[SegmentHits]:
    """`segment_hits` of every query of a batch (row i of `scores`/`rows`):
    ranked together, the hits' keys built in one pass."""
    top, picked = ranked_batch(scores, rows, key_rank, k)
    b, kk = picked.shape
    flat_keys = KeyRows(keys, picked.ravel())
    top32 = top.astype(np.float32, copy=False)
    hit_buckets = buckets[picked].astype(np.int64, copy=False)
    hit_seqs = seqs[picked].astype(np.int64, copy=False)
    return [
        SegmentHits(
            top32[i],
            flat_keys[i * kk : (i + 1) * kk],
            hit_buckets[i],
            hit_seqs[i],
            candidates,
            plan,
            approximate,
        )
        for i in range(b)
    ]
