"""The growing segment: where writes land, searched exactly.

Append-only with a deleted-row bitmap: an upsert appends a row and masks the
key's previous row, a delete masks it. Rows never move, so when the segment is
frozen for sealing, the builder reads them without a lock while searches and
deletes go on; the bitmap is all that still changes, and the swap copies it
onto the sealed segment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from core.domain import AttrType, AttrValue, EntityKey, Metric
from core.filters import Filter
from core.scoring import canonical_scores
from shard_server.columns import AttributeColumns
from shard_server.exact import exact_candidates
from shard_server.segment import (
    EMPTY_HITS,
    QueryLike,
    SearchOptions,
    SegmentHits,
    no_hits,
    segment_hits,
)
from shard_server.segment_rows import SegmentRows
from shard_server.summary import SegmentSummary, balls_for, bucket_stats, empty_summary


class SegmentFrozen(RuntimeError):
    """A write reached a growing segment after it was frozen for sealing (a bug)."""


class GrowingSegment:
    kind = "flat"

    def __init__(
        self,
        seg_id: str,
        dim: int,
        metric: Metric,
        schema: Mapping[str, AttrType],
        capacity: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = seg_id
        self.dim = dim
        self.metric = metric
        self.schema = dict(schema)
        self._clock = clock
        self._cap = max(1, capacity)
        self._vectors = np.zeros((self._cap, dim), dtype=np.float32)
        self._sq = np.zeros(self._cap, dtype=np.float32)
        self._tenant = np.zeros(self._cap, dtype=np.int32)
        self._bucket = np.zeros(self._cap, dtype=np.int32)
        self._seq = np.zeros(self._cap, dtype=np.int64)
        self._deleted = np.zeros(self._cap, dtype=bool)
        self._columns = AttributeColumns(schema, self._cap)
        self._keys: list[EntityKey] = []
        self._row_of: dict[EntityKey, int] = {}
        self._tenant_codes: dict[str, int] = {}
        self._n = 0
        self._n_deleted = 0
        self._frozen = False
        self._summary: tuple[int, SegmentSummary] | None = None
        # Monotonic time of the first write: the age threshold counts from it.
        self.first_write: float | None = None
        # Why a lock for reads and writes: an append may reallocate the arrays
        # and writes row n before publishing n; a search must see whole rows.
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        return "sealing" if self._frozen else "growing"

    def __len__(self) -> int:
        return self._n

    @property
    def deleted_count(self) -> int:
        return self._n_deleted

    @property
    def live_count(self) -> int:
        return self._n - self._n_deleted

    def nbytes(self) -> int:
        return self._n * (self.dim * 4 + 4 + 4 + 4 + 8 + 1)

    def _grow(self) -> None:
        cap = self._cap * 2
        for name in ("_vectors", "_sq", "_tenant", "_bucket", "_seq", "_deleted"):
            old = getattr(self, name)
            new = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
            new[: self._cap] = old
            setattr(self, name, new)
        self._columns.grow(cap)
        self._cap = cap

    def extend_schema(self, added: Mapping[str, AttrType]) -> None:
        """New filterable attributes (the caller holds the write lock)."""
        self.schema.update(added)
        self._columns.add_columns(added, self._cap)

    def upsert(
        self,
        key: EntityKey,
        vector: np.ndarray,
        attrs: Mapping[str, AttrValue],
        bucket: int,
        seq: int = 0,
    ) -> None:
        with self._lock:
            if self._frozen:
                raise SegmentFrozen(f"segment {self.id} is frozen for sealing")
            if self._n == self._cap:
                self._grow()
            row = self._n
            self._vectors[row] = vector
            self._sq[row] = float(vector @ vector)
            self._tenant[row] = self._tenant_codes.setdefault(
                key.tenant_id, len(self._tenant_codes)
            )
            self._bucket[row] = bucket
            self._seq[row] = seq
            self._columns.set_row(row, attrs)
            self._keys.append(key)
            old = self._row_of.get(key)
            self._row_of[key] = row
            self._n += 1
            if old is not None and not self._deleted[old]:
                self._deleted[old] = True
                self._n_deleted += 1
            if self.first_write is None:
                self.first_write = self._clock()

    def delete(self, key: EntityKey) -> bool:
        with self._lock:
            row = self._row_of.get(key)
            if row is None or self._deleted[row]:
                return False
            self._deleted[row] = True
            self._n_deleted += 1
            return True

    def freeze(self) -> None:
        """No more appends: the segment is about to be sealed."""
        with self._lock:
            self._frozen = True

    def search(
        self, query: np.ndarray, k: int, tenant_id: str, flt: Filter | None, options: SearchOptions
    ) -> SegmentHits:
        with self._lock:
            n = self._n
            code = self._tenant_codes.get(tenant_id)
            if code is None or n == 0:
                return EMPTY_HITS
            mask: np.ndarray | None = None
            if len(self._tenant_codes) > 1:
                mask = self._tenant[:n] == code
            if self._n_deleted:
                alive = ~self._deleted[:n]
                mask = alive if mask is None else mask & alive
            if flt is not None:
                matched = self._columns.mask(flt, n)
                mask = matched if mask is None else mask & matched
            count = n if mask is None else int(np.count_nonzero(mask))
            if count == 0:
                return no_hits(0)
            rows = exact_candidates(
                self.metric, query, self._vectors[:n], self._sq[:n], mask, count, k
            )
            vectors = self._vectors[rows]
            # Rows never move and arrays are only replaced (on growth), never
            # rewritten, so these references stay valid outside the lock.
            keys, buckets, seqs = self._keys, self._bucket, self._seq
        scores = canonical_scores(self.metric, query, vectors)
        return segment_hits(scores, rows, keys, buckets, seqs, k, count)

    def search_batch(self, queries: np.ndarray, requests: Sequence[QueryLike]) -> list[SegmentHits]:
        """One query at a time: the growing segment is small and searched
        exactly, and each query's mask differs."""
        return [
            self.search(q, r.k, r.tenant_id, r.filter, r.options)
            for q, r in zip(queries, requests, strict=True)
        ]

    def live_rows(self) -> tuple[SegmentRows, np.ndarray]:
        """Copies of the live rows (for sealing) and their row numbers here."""
        with self._lock:
            n = self._n
            live = np.flatnonzero(~self._deleted[:n])
            names = sorted(self._tenant_codes, key=self._tenant_codes.__getitem__)
            rows = SegmentRows(
                keys=tuple(self._keys[i] for i in live),
                vectors=self._vectors[live],
                sq_norms=self._sq[live],
                tenants=self._tenant[live],
                tenant_names=tuple(names),
                buckets=self._bucket[live],
                seqs=self._seq[live],
                columns=self._columns.take(live),
            )
        return rows, live

    def deleted_at(self, rows: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._deleted[rows].copy()

    def summary(self) -> SegmentSummary:
        """One ball around the mean (cheap, computed on demand and cached per
        row count; deleted rows stay inside, which keeps it a valid bound)."""
        with self._lock:
            n = self._n
            if self._summary is not None and self._summary[0] == n:
                return self._summary[1]
            if n == 0:
                return empty_summary(self.dim)
            vectors = self._vectors[:n].copy()
            buckets = self._bucket[:n].copy()
            tenants = self._tenant[:n].copy()
            columns = self._columns.take(np.arange(n))
            names = sorted(self._tenant_codes, key=self._tenant_codes.__getitem__)
        centre = vectors.astype(np.float64).mean(axis=0, keepdims=True).astype(np.float32)
        centroids, radii = balls_for(vectors, centre, np.zeros(n, dtype=np.int64))
        summary = SegmentSummary(centroids, radii, bucket_stats(buckets, tenants, names, columns))
        with self._lock:
            self._summary = (n, summary)
        return summary

    def release(self) -> None:
        """Nothing on disk; memory goes with the last reference."""
