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
from dataclasses import dataclass

import numpy as np

from core.bounds import ball_radii
from core.domain import AttrType, AttrValue, EntityKey, Metric
from core.filters import Filter
from core.record_columns import AttributeColumn
from core.scoring import canonical_scores
from shard_server.columns import AttributeColumns
from shard_server.exact import exact_candidates
from shard_server.key_table import KeyTable
from shard_server.row_batch import row_dots
from shard_server.segment import (
    EMPTY_HITS,
    QueryLike,
    SearchOptions,
    SegmentHits,
    no_hits,
    segment_hits,
)
from shard_server.segment_rows import SegmentRows
from shard_server.summary import (
    SegmentSummary,
    balls_for,
    bucket_stats,
    empty_summary,
    merge_bucket_stats,
)


@dataclass(frozen=True)
class _GrowingSummary:
    rows: int  # rows it covers
    centred_at: int  # rows when its centre was the mean
    summary: SegmentSummary


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
        self._summary: _GrowingSummary | None = None
        # Monotonic time of the first write: the age threshold counts from it.
        self.first_write: float | None = None
        # Why a lock for reads and writes: an append may reallocate the arrays
        # and writes row n before publishing n; a search must see whole rows.
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        return "sealing" if self._frozen else "growing"

    def unindexed_age(self) -> float:
        """Seconds since its first row was written (0 when it holds none):
        how long that row has waited to be indexed in a sealed segment."""
        first = self.first_write
        return 0.0 if first is None else max(0.0, self._clock() - first)

    def __len__(self) -> int:
        return self._n

    @property
    def deleted_count(self) -> int:
        return self._n_deleted

    @property
    def live_count(self) -> int:
        return self._n - self._n_deleted

    def nbytes(self) -> int:
        """Arrays as allocated (capacity, not rows), and the keys with their
        row map (Python objects, about 300 bytes a key: the growing segment
        is bounded by the seal threshold, sealed ones hold keys in arrays)."""
        arrays = (self._vectors, self._sq, self._tenant, self._bucket, self._seq, self._deleted)
        return sum(a.nbytes for a in arrays) + self._columns.nbytes() + 300 * len(self._row_of)

    def mapped_bytes(self) -> int:
        return 0

    def _grow(self, minimum: int) -> None:
        cap = max(self._cap * 2, minimum)
        for name in ("_vectors", "_sq", "_tenant", "_bucket", "_seq", "_deleted"):
            old = getattr(self, name)
            new = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
            new[: self._cap] = old
            setattr(self, name, new)
        self._columns.grow(cap)
        self._cap = cap

    def extend_schema(self, added: Mapping[str, AttrType]) -> None:
        """New filterable attributes (the caller holds the write lock; the
        segment's own lock too, which searches and summaries read the columns
        under — adding to them unlocked could fail one mid-iteration)."""
        with self._lock:
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
        """One row (tests, in-memory shards); writes come in batches (`append`)."""
        columns = tuple(
            (name, AttributeColumn.of(kind, [attrs[name]]))
            for name, kind in self.schema.items()
            if attrs.get(name) is not None
        )
        self.append(
            [key],
            np.asarray(vector, dtype=np.float32).reshape(1, self.dim),
            np.zeros(1, dtype=np.int32),
            (key.tenant_id,),
            np.array([bucket]),
            np.array([seq]),
            columns,
        )

    def append(
        self,
        keys: Sequence[EntityKey],
        vectors: np.ndarray,
        tenants: np.ndarray,
        tenant_names: Sequence[str],
        buckets: np.ndarray,
        seqs: np.ndarray,
        columns: Sequence[tuple[str, AttributeColumn]] = (),
    ) -> None:
        """Rows for keys that are distinct within the call, in one step: the
        arrays are filled by slice, and each key's previous row (if any) is
        masked. `tenants` are codes into `tenant_names`."""
        n = len(keys)
        if not n:
            return
        if n > 1 and len(set(keys)) != n:
            raise ValueError("growing segment: a key appears twice in one append")
        sq = row_dots(vectors)
        with self._lock:
            if self._frozen:
                raise SegmentFrozen(f"segment {self.id} is frozen for sealing")
            start, end = self._n, self._n + n
            if end > self._cap:
                self._grow(end)
            codes = np.array(
                [self._tenant_codes.setdefault(t, len(self._tenant_codes)) for t in tenant_names],
                dtype=np.int32,
            )
            self._vectors[start:end] = vectors
            self._sq[start:end] = sq
            self._tenant[start:end] = codes[tenants]
            self._bucket[start:end] = buckets
            self._seq[start:end] = seqs
            self._columns.set_rows(start, n, columns)
            old = [r for r in map(self._row_of.get, keys) if r is not None]
            self._row_of.update(zip(keys, range(start, end), strict=True))
            self._keys.extend(keys)
            self._n = end
            if old:
                rows = np.array(old, dtype=np.int64)
                self._n_deleted += int(np.count_nonzero(~self._deleted[rows]))
                self._deleted[rows] = True
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

    def delete_many(self, keys: Sequence[EntityKey]) -> int:
        with self._lock:
            rows = [r for r in map(self._row_of.get, keys) if r is not None]
            if not rows:
                return 0
            picked = np.unique(np.array(rows, dtype=np.int64))
            fresh = picked[~self._deleted[picked]]
            self._deleted[fresh] = True
            self._n_deleted += int(fresh.shape[0])
            return int(fresh.shape[0])

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
        exactly, and each query's mask differs. An empty one (just sealed:
        the usual state under read load) answers the batch at once."""
        with self._lock:
            empty = self._n == 0
        if empty:
            return [EMPTY_HITS] * len(requests)
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
                keys=KeyTable.of([self._keys[i] for i in live.tolist()]),
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
        """One ball covering every row (deleted ones stay inside, which keeps
        it a valid bound) and per-bucket stats, cached per row count.

        Why incremental: coordinators ask for summaries every few hundred
        milliseconds while writes keep adding rows, and recomputing over every
        row each time cost a loaded shard half its CPU during a bulk load.
        New rows widen the cached ball (same centre) and merge into the cached
        stats; the centre moves to the mean again only when the rows have
        doubled since it was set, so the work stays proportional to the rows
        written."""
        with self._lock:
            n = self._n
            cached = self._summary
            if cached is not None and cached.rows == n:
                return cached.summary
            if n == 0:
                return empty_summary(self.dim)
            fresh = cached is None or n >= 2 * cached.centred_at
            start = 0 if fresh or cached is None else cached.rows
            # Views, not copies: rows below n never change, and a growing
            # array is replaced, never rewritten (see `search`).
            vectors = self._vectors[start:n]
            buckets = self._bucket[start:n]
            tenants = self._tenant[start:n]
            columns = self._columns.take(np.arange(start, n))
            names = sorted(self._tenant_codes, key=self._tenant_codes.__getitem__)
        stats = bucket_stats(buckets, tenants, names, columns)
        if fresh or cached is None:
            centre = vectors.mean(axis=0, dtype=np.float64, keepdims=True).astype(np.float32)
            centroids, radii = balls_for(vectors, centre, np.zeros(n, dtype=np.int64))
            state = _GrowingSummary(n, n, SegmentSummary(centroids, radii, stats))
        else:
            old = cached.summary
            wider = ball_radii(vectors, old.centroids, np.zeros(n - start, dtype=np.int64))
            state = _GrowingSummary(
                n,
                cached.centred_at,
                SegmentSummary(
                    old.centroids,
                    np.maximum(old.radii, wider),
                    merge_bucket_stats([old.buckets, stats]),
                ),
            )
        with self._lock:
            if self._summary is None or self._summary.rows < n:
                self._summary = state
        return state.summary

    def release(self) -> None:
        """Nothing on disk; memory goes with the last reference."""
