"""The HNSW index of a sealed segment (hnswlib), labels = row numbers.

Why ef is never changed after build: hnswlib keeps ef on the index, shared by
every concurrent search. A query that wants a wider search asks for more
results instead (hnswlib searches with max(ef, k)), and the extra candidates
only improve the exact rerank.
"""

from __future__ import annotations

from pathlib import Path

import hnswlib
import numpy as np

from core.domain import Metric
from core.scoring import SUBNORMAL
from registry.index_params import HnswParams
from shard_server.segment import SearchOptions


def _space(metric: Metric) -> str:
    # Cosine vectors are normalized at ingest, so inner product ranks them.
    return "l2" if metric is Metric.L2 else "ip"


# A segment whose longest vector is shorter has squared norms (float32)
# that may have underflowed: its inner products get no error bound.
SMALLEST_NORM = 1e-15


class HnswIndex:
    kind = "hnsw"

    def __init__(self, index: hnswlib.Index, params: HnswParams, metric: Metric) -> None:
        self._index = index
        self.params = params
        self.metric = metric
        index.set_ef(params.ef_search)

    @classmethod
    def build(
        cls, vectors: np.ndarray, metric: Metric, params: HnswParams, threads: int
    ) -> HnswIndex:
        n, dim = vectors.shape
        index = hnswlib.Index(space=_space(metric), dim=dim)
        index.init_index(
            max_elements=max(n, 1),
            M=params.M,
            ef_construction=params.ef_construction,
            random_seed=params.seed,
        )
        index.add_items(vectors, np.arange(n), num_threads=threads)
        return cls(index, params, metric)

    @classmethod
    def load(cls, path: Path, dim: int, rows: int, metric: Metric, params: HnswParams) -> HnswIndex:
        index = hnswlib.Index(space=_space(metric), dim=dim)
        index.load_index(str(path), max_elements=max(rows, 1))
        if index.get_current_count() != rows:
            raise ValueError(f"{path}: holds {index.get_current_count()} vectors, expected {rows}")
        return cls(index, params, metric)

    def save(self, path: Path) -> None:
        self._index.save_index(str(path))

    def nbytes(self) -> int:
        """In memory: the saved size (vectors, graph, labels) plus what only
        lives in memory — the label map and a lock per element, measured at
        126–150 bytes per element (hnswlib 0.8)."""
        return int(self._index.index_file_size()) + 136 * int(self._index.get_current_count())

    def search(
        self,
        query: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        allowed_count: int,
        options: SearchOptions,
        boost: float,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Candidate rows and approximate scores; None when hnswlib cannot
        find enough allowed rows (the caller then scans them exactly)."""
        ef = options.ef_search or self.params.ef_search
        refine = options.refine_factor or self.params.refine_factor
        # hnswlib's filtered search already keeps going until it holds ef
        # allowed rows, so a filter needs only a modest widening.
        wanted = max(int(ef * min(boost, 2.0)), k * refine)
        n = min(wanted, allowed_count)
        try:
            labels, dist = self._index.knn_query(
                query,
                k=n,
                num_threads=1,
                filter=allowed.__getitem__ if allowed is not None else None,
            )
        except RuntimeError:
            return None
        rows = labels[0].astype(np.int64)
        d = dist[0].astype(np.float64)
        scores = -np.sqrt(np.maximum(d, 0.0)) if self.metric is Metric.L2 else 1.0 - d
        return rows, scores.astype(np.float32)

    def rescore_window(
        self, queries: np.ndarray, kth: np.ndarray, max_norm: float
    ) -> np.ndarray | None:
        """For `core.scoring.rescore_width`: twice the bound on how far one of
        hnswlib's scores can be from the canonical one near a query's k-th
        approximate score `kth`. hnswlib computes exact distances of the
        stored float32 vectors in float32 arithmetic, so the bound is
        rounding: a sum of d products (or squared differences) is within
        (d + 2) float32 units of its magnitude, plus the roundings of the
        conversions — 4 × (d + 8) units leaves twice that margin — and an
        absolute SUBNORMAL per term that underflows. L2 distances are
        non-negative sums, relative to the distance itself (a candidate
        further out may err more, but falls further below; the absolute part
        becomes its square root through the distance's); inner products are
        relative to |q| · |x|, x the segment's longest vector — None when
        that length underflowed in float32 (no bound to give)."""
        d = queries.shape[1]
        unit = 4.0 * (d + 8) * float(np.finfo(np.float32).eps / 2)
        tiny = 4.0 * (d + 2) * SUBNORMAL
        magnitude = np.abs(kth.astype(np.float64))
        if self.metric is Metric.L2:
            return magnitude * (2.0 * unit / (1.0 - unit)) + 2.5 * float(np.sqrt(tiny))
        if not max_norm > SMALLEST_NORM:
            return None
        q64 = queries.astype(np.float64)
        q_norms = np.sqrt(np.einsum("ij,ij->i", q64, q64))
        bound = unit * (1.0 + magnitude + q_norms * max_norm * 1.001) + tiny
        return 2.0 * bound

    def search_many(
        self, queries: np.ndarray, k: int, allowed_count: int, options: SearchOptions
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """`search` without a filter for a matrix of queries in one call:
        (rows, scores), one row per query, or None when hnswlib cannot find
        enough rows. hnswlib answers each row exactly as it would alone."""
        ef = options.ef_search or self.params.ef_search
        refine = options.refine_factor or self.params.refine_factor
        n = min(max(ef, k * refine), allowed_count)
        try:
            labels, dist = self._index.knn_query(queries, k=n, num_threads=1)
        except RuntimeError:
            return None
        rows = labels.astype(np.int64)
        d = dist.astype(np.float64)
        scores = -np.sqrt(np.maximum(d, 0.0)) if self.metric is Metric.L2 else 1.0 - d
        return rows, scores.astype(np.float32)
