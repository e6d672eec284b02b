"""Upper bounds on the score any vector in a set of balls can reach (DESIGN §4, §5).

A shard summarises each segment as balls: centroids c_j with radii r_j such
that every member x of ball j has ‖x − c_j‖ ≤ r_j. For a query q:

    inner product / cosine   q·x = q·c + q·(x − c) ≤ q·c + ‖q‖·r      (Cauchy–Schwarz)
    l2 (score = −‖q − x‖)    ‖q − x‖ ≥ ‖q − c‖ − r                   (triangle inequality)
                             so −‖q − x‖ ≤ −max(0, ‖q − c‖ − r)

so the coordinator can skip a shard whose bound cannot beat its current k-th
score. A bound must never be below a score the shard can return, including
float32 rounding of the canonical score: it is computed in float64 and padded
by a relative slack far above every rounding error involved (≈ 1e-6 of the
magnitudes), which costs nothing in pruning power; a bound past float32's
range is +inf, as the scores there are.

Pure functions over numpy arrays; shards use `ball_radii` to build summaries
and coordinators use `score_upper_bound` to read them, so the rounding rules
live in one place.
"""

from __future__ import annotations

import numpy as np

from core.domain import Metric

# Relative padding: float32 rounding of a score is ≤ 2^-24 relative, the
# float64 arithmetic here is ~1e-16; 2^-20 covers both with room to spare.
_SLACK = 2.0**-20
_F32_MAX = float(np.finfo(np.float32).max)
# float64 values of one chunk of L2 differences (256 KiB: under malloc's mmap
# threshold, so no page faults per call).
_CHUNK_VALUES = 32_768


def score_upper_bound(
    metric: Metric, query: np.ndarray, centroids: np.ndarray, radii: np.ndarray
) -> float:
    """The highest canonical score any member of any ball can have for `query`.

    `query` must be prepared as the shard prepares it (normalized for cosine
    and for families that normalize; cosine queries are normalized here again,
    harmlessly). No balls → −inf (an empty shard can return nothing).
    """
    q = np.asarray(query)
    c = np.asarray(centroids)
    if c.ndim == 2 and q.shape != (c.shape[1],):
        raise ValueError(f"query has shape {q.shape}, expected ({c.shape[1]},)")
    return float(score_upper_bounds(metric, q[None, :], centroids, radii)[0])


def score_upper_bounds(
    metric: Metric, queries: np.ndarray, centroids: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    """`score_upper_bound` of each row of `queries` (n × d), float64, with
    the same arithmetic row by row — a row's bound does not depend on the
    rows beside it (no BLAS: its blocking may round differently by shape),
    so a batch of queries gets exactly the bounds each would alone."""
    c = np.asarray(centroids, dtype=np.float64)
    r = np.asarray(radii, dtype=np.float64)
    if c.ndim != 2 or r.shape != (c.shape[0],):
        raise ValueError(f"centroids {c.shape} and radii {r.shape} do not describe the same balls")
    q = np.asarray(queries, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != c.shape[1]:
        raise ValueError(f"queries have shape {q.shape}, expected (n, {c.shape[1]})")
    if c.shape[0] == 0:
        return np.full(q.shape[0], -np.inf)
    if metric is Metric.COSINE:
        norms = np.sqrt(np.einsum("ij,ij->i", q, q))
        q = q / np.where(norms > 0, norms, 1.0)[:, None]
    if metric is Metric.L2:
        # Per query: the exact differences (no ‖c‖² − 2c·q + ‖q‖² shortcut,
        # whose cancellation near a centroid would outgrow the slack).
        # A chunk of queries at a time keeps the n × m × d differences small.
        step = max(1, _CHUNK_VALUES // max(1, c.size))
        dist = np.concatenate(
            [
                np.sqrt(np.einsum("kij,kij->ki", diff, diff))
                for diff in (
                    c[None, :, :] - q[a : a + step, None, :] for a in range(0, len(q), step)
                )
            ]
        )
        bound = -np.maximum(dist - r, 0.0)
        scale = dist + r
    else:
        qn = np.sqrt(np.einsum("ij,ij->i", q, q))[:, None]
        bound = np.einsum("kj,ij->ki", q, c) + qn * r
        scale = qn * (np.sqrt(np.einsum("ij,ij->i", c, c)) + r)
    out: np.ndarray = np.max(bound + _SLACK * (scale + np.abs(bound)) + 1e-30, axis=1)
    # A score past float32's range is +inf (core.scoring), and an item at
    # +inf can tie the k-th and win on entity_id: a bound that float32 would
    # not hold is +inf too, not a finite float64 below that score. (Bounds
    # below float32's range need nothing: such scores are -inf.)
    out[out > _F32_MAX] = np.inf
    return out


def ball_radii(vectors: np.ndarray, centroids: np.ndarray, assignment: np.ndarray) -> np.ndarray:
    """Per centroid, the largest distance of an assigned vector to it, rounded
    *up* to float32 so the stored (float32) ball still contains every member.
    Centroids with no members get radius 0."""
    x = np.asarray(vectors, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    assign = np.asarray(assignment, dtype=np.int64)
    diff = x - c[assign]
    dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    radii = np.zeros(c.shape[0], dtype=np.float64)
    np.maximum.at(radii, assign, dist)
    out = radii.astype(np.float32)
    low = out.astype(np.float64) < radii
    out[low] = np.nextafter(out[low], np.float32(np.inf))
    return out
