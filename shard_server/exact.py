"""Exact candidate selection: which rows can be in the top-k, found with fast
float32 math, before the canonical rescoring decides their order.

Every row whose approximate score lies within the float32 error band of the
k-th best is kept, so rescoring only those rows with `canonical_scores` gives
exactly the brute-force top-k, ties included. Used by the growing segment,
sealed flat segments, and by the planner's exact path on indexed segments.
"""

from __future__ import annotations

import numpy as np

from core.domain import Metric
from core.scoring import approx_scores

# Below this share of allowed rows, gathering them first is cheaper than
# scoring every row and masking.
_GATHER_BELOW = 0.25


def exact_candidates(
    metric: Metric,
    query: np.ndarray,
    vectors: np.ndarray,
    sq_norms: np.ndarray,
    mask: np.ndarray | None,
    count: int,
    k: int,
) -> np.ndarray:
    """Row numbers (into `vectors`) that may hold the top-k among `mask` rows
    (all rows when `mask` is None; `count` is how many are allowed)."""
    n = vectors.shape[0]
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if mask is not None and count <= k:
        return np.flatnonzero(mask)
    if mask is None and n <= k:
        return np.arange(n, dtype=np.int64)
    if mask is not None and count < _GATHER_BELOW * n:
        rows = np.flatnonzero(mask)
        approx, tol = approx_scores(metric, query, vectors[rows], sq_norms[rows])
        finite = bool(np.isfinite(approx).all())
    else:
        rows = np.arange(n, dtype=np.int64)
        approx, tol = approx_scores(metric, query, vectors, sq_norms)
        finite = bool(np.isfinite(approx).all())
        if mask is not None:
            approx = np.where(mask, approx, -np.inf)
    if not (finite and np.isfinite(tol)):
        # A float32 sum overflowed (inf, or inf - inf): no band holds; the
        # canonical (float64) scores of every allowed row decide.
        return rows if mask is None or rows.shape[0] == count else np.flatnonzero(mask)
    m = approx.shape[0]
    kth = np.partition(approx, m - k)[m - k]
    return rows[np.flatnonzero(approx >= kth - 2.0 * tol)]
