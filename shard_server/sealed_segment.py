"""Sealed segments: immutable rows plus an optional approximate index (hnsw,
ivfpq; none = flat), and how a sealed segment is built from rows.

A search computes the allowed rows (tenant, filter, not deleted) as one
vectorized mask, lets the planner choose exact scan or index, pushes the mask
down into the index, re-checks every candidate against it, and rescores the
survivors canonically over the stored float32 vectors (those that can still
be among the k best, when the index bounds its scores' error: `_rescored`).
The only mutable state is the deleted-row bitmap, written under the
partition's write lock; a search reads it without a lock (a row deleted
mid-search is a write that raced it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.domain import EntityKey, Metric
from core.filters import Filter
from core.scoring import canonical_scores, canonical_scores_rows, rescore_width
from registry.index_params import HnswParams, IndexParams, IvfPqParams
from shard_server.exact import exact_candidates
from shard_server.hnsw_segment import HnswIndex
from shard_server.ivfpq_segment import IvfPqIndex, IvfPqTemplate, set_faiss_threads
from shard_server.planner import Method, PlannerPolicy, plan_segment_search
from shard_server.segment import (
    EMPTY_HITS,
    QueryLike,
    SearchOptions,
    SegmentHits,
    no_hits,
    segment_hits,
    segment_hits_batch,
)
from shard_server.segment_rows import SegmentRows
from shard_server.summary import SegmentSummary, balls_for, bucket_stats, kmeans_balls

log = logging.getLogger(__name__)

AnnIndex = HnswIndex | IvfPqIndex


@dataclass(frozen=True)
class BuildSettings:
    # Fewer rows than this are sealed flat: an exact scan is as fast as an index.
    min_index_rows: int = 1000
    threads: int = 1
    # k-means centroids per flat/hnsw segment summary.
    summary_centroids: int = 16
    use_gpu: bool = False


class SealedSegment:
    state = "sealed"

    def __init__(
        self,
        seg_id: str,
        rows: SegmentRows,
        metric: Metric,
        index: AnnIndex | None,
        summary: SegmentSummary,
        planner: PlannerPolicy,
    ) -> None:
        self.id = seg_id
        self.rows = rows
        self.metric = metric
        self.index = index
        self.kind = index.kind if index is not None else "flat"
        self._summary = summary
        self.planner = planner
        self._deleted = np.zeros(len(rows), dtype=bool)
        self._n_deleted = 0
        self._single_tenant = len(rows.tenant_names) == 1
        # Each row's position in the global key order (DESIGN §6): the rows
        # never change, so ranking candidates is one lexsort, no key compared.
        self._key_rank = key_ranks(rows.keys)
        # The longest vector bounds an inner product's rounding (`_rescored`).
        self._max_norm = (
            float(np.sqrt(rows.sq_norms.astype(np.float64).max())) if len(rows) else 0.0
        )
        # Files holding the segment (set once persisted), deleted on release.
        self.files: dict[str, str] = {}
        self.directory: Path | None = None
        self.released = False

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def deleted_count(self) -> int:
        return self._n_deleted

    @property
    def live_count(self) -> int:
        return len(self.rows) - self._n_deleted

    @property
    def max_seq(self) -> int:
        return int(self.rows.seqs.max()) if len(self.rows) else 0

    def nbytes(self) -> int:
        """Memory the segment holds: its index, its rows (not the mapped
        vector file: `mapped_bytes`) and the deleted-row bitmap."""
        own = self.rows.nbytes() + self._deleted.nbytes
        return own + (self.index.nbytes() if self.index is not None else 0)

    def mapped_bytes(self) -> int:
        return self.rows.mapped_bytes()

    def delete(self, key: EntityKey) -> bool:
        return self.delete_many([key]) == 1

    def delete_many(self, keys: Sequence[EntityKey]) -> int:
        rows = self.rows.rows_of(keys)
        rows = rows[rows >= 0]
        if not rows.shape[0]:
            return 0
        picked = np.unique(rows)
        fresh = picked[~self._deleted[picked]]
        self._deleted[fresh] = True
        self._n_deleted += int(fresh.shape[0])
        return int(fresh.shape[0])

    def mark_deleted(self, mask: np.ndarray) -> None:
        """ORs rows into the bitmap (at a swap, or from RocksDB at load)."""
        self._deleted |= mask
        self._n_deleted = int(np.count_nonzero(self._deleted))

    def deleted_at(self, rows: np.ndarray) -> np.ndarray:
        return self._deleted[rows].copy()

    def live_row_numbers(self) -> np.ndarray:
        return np.flatnonzero(~self._deleted)

    def summary(self) -> SegmentSummary:
        return self._summary

    def _allowed(self, code: int, flt: Filter | None) -> np.ndarray | None:
        n = len(self.rows)
        mask = None if self._single_tenant else self.rows.tenants == code
        if self._n_deleted:
            alive = ~self._deleted
            mask = alive if mask is None else mask & alive
        if flt is not None:
            matched = self.rows.columns.mask(flt, n)
            mask = matched if mask is None else mask & matched
        return mask

    def search(
        self, query: np.ndarray, k: int, tenant_id: str, flt: Filter | None, options: SearchOptions
    ) -> SegmentHits:
        code = self.rows.tenant_code(tenant_id)
        if code is None or not len(self.rows):
            return EMPTY_HITS
        n = len(self.rows)
        mask = self._allowed(code, flt)
        count = n if mask is None else int(np.count_nonzero(mask))
        if count == 0:
            return no_hits(0)
        plan = plan_segment_search(n, count, self.index is not None, options.exact, self.planner)
        approximate = False
        found = None
        if plan.method is not Method.EXACT and self.index is not None:
            pushed = None if plan.method is Method.ANN else mask
            found = self.index.search(query, k, pushed, count, options, plan.boost)
            if found is not None and found[0].shape[0] < min(k, count):
                # The index reached fewer rows than exist (a filter left few
                # allowed rows in the probed lists or graph region): scan.
                found = None
        if found is None:
            method = Method.EXACT.value if plan.method is Method.EXACT else "exact_fallback"
            rows = exact_candidates(
                self.metric, query, self.rows.vectors, self.rows.sq_norms, mask, count, k
            )
            scores = canonical_scores(self.metric, query, self.rows.vectors[rows])
        else:
            method = plan.method.value
            rows, approx = found
            if mask is not None:  # the exact re-check: nothing the mask rejects survives
                keep = mask[rows]
                rows, approx = rows[keep], approx[keep]
            if options.skip_rerank:
                scores, approximate = approx, True
            else:
                rows = self._rescored(query[None, :], rows[None, :], approx[None, :], k)[0]
                scores = canonical_scores(self.metric, query, self.rows.vectors[rows])
        return segment_hits(
            scores,
            rows,
            self.rows.keys,
            self.rows.buckets,
            self.rows.seqs,
            k,
            count,
            method,
            approximate,
            self._key_rank,
        )

    def _whole_index(self) -> bool:
        """Whether a plain query (no filter, not exact, a tenant here) would
        search the whole index with nothing masked (ANN)."""
        return (
            self.index is not None
            and self._single_tenant
            and not self._n_deleted
            and len(self.rows) > self.planner.exact_below_rows
        )

    def search_batch(self, queries: np.ndarray, requests: Sequence[QueryLike]) -> list[SegmentHits]:
        """Queries the planner would answer by ANN over the whole index share
        one index call per (k, options); the rest go one by one."""
        out: list[SegmentHits | None] = [None] * len(requests)
        groups: dict[tuple[int, SearchOptions], list[int]] = {}
        if self._whole_index():
            code = self.rows.tenant_code
            for i, r in enumerate(requests):
                if not r.options.exact and r.filter is None and code(r.tenant_id) is not None:
                    groups.setdefault((r.k, r.options), []).append(i)
        for (k, options), members in groups.items():
            found = self._ann_batch(queries[members], k, options)
            if found is None:
                continue  # answered one by one below, with their fallbacks
            for j, hits in zip(members, found, strict=True):
                out[j] = hits
        return [
            hits if hits is not None else self.search(q, r.k, r.tenant_id, r.filter, r.options)
            for hits, q, r in zip(out, queries, requests, strict=True)
        ]

    def _ann_batch(
        self, queries: np.ndarray, k: int, options: SearchOptions
    ) -> list[SegmentHits] | None:
        """Unmasked ANN for a matrix of queries: one index call, one rerank
        product. None when the index fell short (the caller then searches
        each query alone, which scans exactly where it must)."""
        assert self.index is not None
        n = len(self.rows)
        found = self.index.search_many(queries, k, n, options)
        if found is None or found[0].shape[1] < min(k, n):
            return None
        rows, approx = found
        if options.skip_rerank:
            scores, approximate = approx, True
        else:
            rows = self._rescored(queries, rows, approx, k)
            scores = canonical_scores_rows(self.metric, queries, self.rows.vectors, rows)
            approximate = False
        return segment_hits_batch(
            scores,
            rows,
            self.rows.keys,
            self.rows.buckets,
            self.rows.seqs,
            k,
            n,
            "ann",
            approximate,
            self._key_rank,
        )

    def _rescored(
        self, queries: np.ndarray, rows: np.ndarray, approx: np.ndarray, k: int
    ) -> np.ndarray:
        """The leading candidates (columns of `rows`) that can hold each
        query's k canonical best: all of them unless the index bounds its
        scores' error (`core.scoring.rescore_width`)."""
        assert self.index is not None
        b, n = rows.shape
        if n <= k or b == 0:
            return rows
        window = self.index.rescore_window(queries, approx[:, k - 1], self._max_norm)
        if window is None:
            return rows
        return rows[:, : rescore_width(approx, k, window)]

    def release(self) -> None:
        """Deletes the segment's files; called when no search holds it and the
        manifest no longer lists it."""
        self.released = True
        if self.directory is None:
            return
        for name in self.files:
            try:
                (self.directory / name).unlink(missing_ok=True)
            except OSError as exc:  # a leftover file is collected at the next start
                log.warning("could not delete segment file %s: %s", self.directory / name, exc)


def key_ranks(keys: Sequence[EntityKey]) -> np.ndarray:
    """Each key's position among `keys` in the global order (unique keys)."""
    by_order = sorted(
        range(len(keys)),
        key=lambda i: (
            keys[i].entity_id.encode(),
            keys[i].tenant_id.encode(),
            keys[i].entity_type.encode(),
        ),
    )
    rank = np.empty(len(keys), dtype=np.int64)
    rank[by_order] = np.arange(len(keys), dtype=np.int64)
    return rank


def build_sealed(
    seg_id: str,
    rows: SegmentRows,
    metric: Metric,
    params: IndexParams,
    template: IvfPqTemplate | None,
    settings: BuildSettings,
    planner: PlannerPolicy,
) -> SealedSegment:
    """Builds the segment of the index version's kind, or flat when it is too
    small for an index (or IVF-PQ has no trained template yet)."""
    index: AnnIndex | None = None
    # The faiss calls below (IVF-PQ add, coarse assignment, k-means) run on
    # the build threads of whichever thread seals or compacts.
    set_faiss_threads(settings.threads)
    indexed = len(rows) >= settings.min_index_rows
    if indexed and isinstance(params, HnswParams):
        index = HnswIndex.build(rows.vectors, metric, params, settings.threads)
    elif indexed and isinstance(params, IvfPqParams) and template is not None:
        index = IvfPqIndex.build(template, rows.vectors, settings.use_gpu)
    if isinstance(index, IvfPqIndex):
        centroids, assign = index.coarse_assignment(rows.vectors)
        balls = balls_for(rows.vectors, centroids, assign)
    else:
        balls = kmeans_balls(rows.vectors, settings.summary_centroids)
    summary = SegmentSummary(
        *balls, bucket_stats(rows.buckets, rows.tenants, rows.tenant_names, rows.columns)
    )
    return SealedSegment(seg_id, rows, metric, index, summary, planner)
