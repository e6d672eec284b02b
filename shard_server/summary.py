"""Segment summaries: balls that cover every row (for score upper bounds, see
`core.bounds`) and per-bucket statistics (row counts, numeric attribute
min/max, tenants) for filter-aware bucket exclusion at the coordinator.

Computed once when a segment is sealed (cheap next to building its index) and
lazily for the growing segment. Rows deleted later stay inside the balls and
ranges: a summary is a superset bound, never an exact description.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import faiss
import numpy as np

from core.bounds import ball_radii
from registry.index_params import MIN_POINTS_PER_CENTROID
from shard_server.columns import AttributeColumns


@dataclass(frozen=True)
class BucketStats:
    rows: int
    # attribute → (min, max, rows having it)
    ranges: Mapping[str, tuple[float, float, int]] = field(default_factory=dict)
    tenants: frozenset[str] = frozenset()


@dataclass(frozen=True, eq=False)
class SegmentSummary:
    centroids: np.ndarray  # (c, d) float32
    radii: np.ndarray  # (c,) float32
    buckets: Mapping[int, BucketStats] = field(default_factory=dict)


def empty_summary(dim: int) -> SegmentSummary:
    return SegmentSummary(np.zeros((0, dim), np.float32), np.zeros(0, np.float32), {})


def kmeans_balls(
    vectors: np.ndarray, n_centroids: int, seed: int = 1234
) -> tuple[np.ndarray, np.ndarray]:
    """A few k-means centroids with radii. Fewer centroids on small segments so
    every one has enough points to be meaningful (and faiss stays quiet)."""
    n, dim = vectors.shape
    if n == 0:
        return np.zeros((0, dim), np.float32), np.zeros(0, np.float32)
    k = min(n_centroids, max(1, n // MIN_POINTS_PER_CENTROID))
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if k == 1:
        centroids = x.astype(np.float64).mean(axis=0, keepdims=True).astype(np.float32)
        assign = np.zeros(n, dtype=np.int64)
    else:
        km = faiss.Kmeans(dim, k, niter=10, seed=seed, verbose=False)
        km.train(x)
        centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
        _, a = km.index.search(x, 1)
        assign = a[:, 0].astype(np.int64)
    return balls_for(x, centroids, assign)


def balls_for(
    vectors: np.ndarray, centroids: np.ndarray, assign: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Radii for an assignment; centroids with no members are dropped."""
    radii = ball_radii(vectors, centroids, assign)
    used = np.bincount(assign, minlength=centroids.shape[0]) > 0
    return np.ascontiguousarray(centroids[used], dtype=np.float32), radii[used]


def bucket_stats(
    buckets: np.ndarray,
    tenants: np.ndarray,
    tenant_names: Iterable[str],
    columns: AttributeColumns,
) -> dict[int, BucketStats]:
    """Per bucket present in `buckets`: rows, numeric ranges, tenants."""
    n = buckets.shape[0]
    if n == 0:
        return {}
    names = list(tenant_names)
    size = int(buckets.max()) + 1
    counts = np.bincount(buckets, minlength=size)
    ranges = columns.numeric_ranges(buckets, size)
    out = {}
    for b in np.flatnonzero(counts):
        in_bucket = buckets == b
        codes = np.unique(tenants[in_bucket])
        out[int(b)] = BucketStats(
            rows=int(counts[b]),
            ranges={
                attr: (float(lo[b]), float(hi[b]), int(cnt[b]))
                for attr, (lo, hi, cnt) in ranges.items()
                if cnt[b] > 0
            },
            tenants=frozenset(names[c] for c in codes),
        )
    return out


def merge_bucket_stats(parts: Iterable[Mapping[int, BucketStats]]) -> dict[int, BucketStats]:
    out: dict[int, BucketStats] = {}
    for part in parts:
        for b, s in part.items():
            cur = out.get(b)
            if cur is None:
                out[b] = s
                continue
            ranges = dict(cur.ranges)
            for attr, (lo, hi, cnt) in s.ranges.items():
                if attr in ranges:
                    lo0, hi0, cnt0 = ranges[attr]
                    ranges[attr] = (min(lo, lo0), max(hi, hi0), cnt + cnt0)
                else:
                    ranges[attr] = (lo, hi, cnt)
            out[b] = BucketStats(cur.rows + s.rows, ranges, cur.tenants | s.tenants)
    return out
