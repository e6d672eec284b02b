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
magnitudes), which costs nothing in pruning power.

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


def score_upper_bound(
    metric: Metric, query: np.ndarray, centroids: np.ndarray, radii: np.ndarray
) -> float:
    """The highest canonical score any member of any ball can have for `query`.

    `query` must be prepared as the shard prepares it (normalized for cosine
    and for families that normalize; cosine queries are normalized here again,
    harmlessly). No balls → −inf (an empty shard can return nothing).
    """
    c = np.asarray(centroids, dtype=np.float64)
    r = np.asarray(radii, dtype=np.float64)
    if c.ndim != 2 or r.shape != (c.shape[0],):
        raise ValueError(f"centroids {c.shape} and radii {r.shape} do not describe the same balls")
    if c.shape[0] == 0:
        return float("-inf")
    q = np.asarray(query, dtype=np.float64)
    if q.shape != (c.shape[1],):
        raise ValueError(f"query has shape {q.shape}, expected ({c.shape[1]},)")
    if metric is Metric.COSINE:
        norm = float(np.sqrt(q @ q))
        if norm > 0:
            q = q / norm
    if metric is Metric.L2:
        dist = np.sqrt(np.einsum("ij,ij->i", c - q, c - q))
        bound = -np.maximum(dist - r, 0.0)
        scale = dist + r
    else:
        qn = float(np.sqrt(q @ q))
        bound = c @ q + qn * r
        scale = qn * (np.sqrt(np.einsum("ij,ij->i", c, c)) + r)
    return float(np.max(bound + _SLACK * (scale + np.abs(bound)) + 1e-30))


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
