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


@dataclass(frozen=True)
class SegmentHits:
    """One segment's best hits for one query, in the global order."""

    hits: list[Hit]
    # Rows that passed tenant, filter and deletes (what the planner saw).
    candidates: int
    plan: str = "exact"
    # Scores are the index's approximations, not canonical (skip_rerank).
    approximate: bool = False


EMPTY_HITS = SegmentHits([], 0, "empty")


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


def ranked_hits(
    scores: np.ndarray,
    rows: np.ndarray,
    keys: Sequence[EntityKey],
    buckets: np.ndarray,
    seqs: np.ndarray,
    k: int,
) -> list[Hit]:
    """The k best of one segment's scored candidates (`rows` index `keys`,
    `buckets`, `seqs`), in the global order. Only candidates scoring at least
    the k-th best become Hit objects (ties at the boundary included, so the
    order among them is decided by the full order key)."""
    n = scores.shape[0]
    if n > k:
        kth = np.partition(scores, n - k)[n - k]
        chosen = np.flatnonzero(scores >= kth)
    else:
        chosen = np.arange(n)
    picked = rows[chosen]
    hits = [
        Hit(s, keys[r], b, q)
        for s, r, b, q in zip(
            scores[chosen].tolist(),
            picked.tolist(),
            buckets[picked].tolist(),
            seqs[picked].tolist(),
            strict=True,
        )
    ]
    hits.sort(key=lambda h: order_key(h.score, h.key))
    return hits[:k]
