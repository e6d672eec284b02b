"""Exact ground truth (deterministic top-k in float64, cached on disk) and recall@k."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from benchmarks.datasets import REPO_ROOT, Dataset, Metric, check_metric
from benchmarks.vecs_files import read_ivecs, write_ivecs

DEFAULT_CACHE_DIR = REPO_ROOT / "benchmarks" / "results" / "cache"

# Bumped whenever the ground-truth computation changes, so stale cache files are never reused.
_GROUND_TRUTH_VERSION = b"vecshard-gt-v1"


def exact_ground_truth(
    base: NDArray[Any],
    queries: NDArray[Any],
    k: int,
    metric: Metric,
    chunk_size: int = 512,
    base_chunk_size: int = 32_768,
) -> NDArray[np.int32]:
    """Exact top-k base row ids per query, best first, ties broken by the lower id.

    Computed in float64 with numpy rather than faiss: faiss works in float32, whose rounding
    reorders near-ties (and even exact integer ties on uint8 data), and its heap does not
    promise the lower-id tie-break. Queries go in chunks of ``chunk_size`` and the base in
    chunks of ``base_chunk_size``, merging per-chunk winners, so the working set stays
    ``chunk_size * base_chunk_size * 8`` bytes (128 MiB by default) whatever the base size;
    1,000,000 x 128 fits comfortably (about 5 minutes for 10,000 queries on 2 cores, hence
    ``cached_ground_truth``). Cosine normalizes both sides, then ranks by inner product.
    """
    check_metric(metric)
    base, queries = np.asarray(base), np.asarray(queries)
    _check_exact_inputs(base, queries, k, chunk_size, base_chunk_size)
    prepared_queries = _prepare(queries, metric)
    # Sentinels sort after every real candidate; k <= len(base) guarantees all are replaced.
    best_dist = np.full((len(queries), k), np.inf)
    best_ids = np.full((len(queries), k), np.iinfo(np.int64).max, dtype=np.int64)
    for start in range(0, len(base), base_chunk_size):
        chunk = _prepare(base[start : start + base_chunk_size], metric)
        chunk_sq_norms = (chunk * chunk).sum(axis=1)
        for q0 in range(0, len(queries), chunk_size):
            rows = slice(q0, q0 + chunk_size)
            dist = _distances(prepared_queries[rows], chunk, chunk_sq_norms, metric)
            top_dist, top_cols = _block_topk(dist, k)
            best_dist[rows], best_ids[rows] = _merge_topk(
                (best_dist[rows], best_ids[rows]), (top_dist, top_cols + start), k
            )
    return best_ids.astype(np.int32)


def _check_exact_inputs(
    base: NDArray[Any], queries: NDArray[Any], k: int, chunk_size: int, base_chunk_size: int
) -> None:
    if base.ndim != 2 or queries.ndim != 2 or base.shape[1] != queries.shape[1]:
        raise ValueError(
            f"base and queries must be 2-D with the same dimension, got {base.shape} and "
            f"{queries.shape}"
        )
    if not 1 <= k <= len(base):
        raise ValueError(f"k must be in [1, {len(base)}] (the base size), got {k}")
    if chunk_size < 1 or base_chunk_size < 1:
        raise ValueError("chunk sizes must be >= 1")
    if not (np.isfinite(base).all() and np.isfinite(queries).all()):
        raise ValueError("base and queries must be finite (no NaN or Inf)")


def _prepare(vectors: NDArray[Any], metric: Metric) -> NDArray[np.float64]:
    as_float = vectors.astype(np.float64)
    return normalized(as_float) if metric == "cosine" else as_float


def normalized(vectors: NDArray[np.float64]) -> NDArray[np.float64]:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("cosine similarity is undefined for zero vectors")
    unit: NDArray[np.float64] = vectors / norms  # numpy types the quotient as Any
    return unit


def _distances(
    queries: NDArray[np.float64],
    chunk: NDArray[np.float64],
    chunk_sq_norms: NDArray[np.float64],
    metric: Metric,
) -> NDArray[np.float64]:
    """Smaller is better for every metric, so one top-k routine serves all three."""
    products = queries @ chunk.T
    if metric != "l2":
        return -products
    # ||q||^2 is the same for every column, so it cannot change the ranking; drop it.
    return chunk_sq_norms[None, :] - 2.0 * products


def _block_topk(dist: NDArray[np.float64], k: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Per-row k smallest columns, breaking ties at the k-th value by the lower column.

    ``argpartition`` alone picks an arbitrary member of a tie at the boundary, so every column
    at or below the k-th value is taken; rows with more than k such columns (ties) are settled
    one by one, which is rare on real data.
    """
    n_rows, n_cols = dist.shape
    kk = min(k, n_cols)
    if kk == n_cols:
        cols = np.broadcast_to(np.arange(n_cols, dtype=np.int64), dist.shape).copy()
        return dist, cols
    kth = np.partition(dist, kk - 1, axis=1)[:, kk - 1 : kk]
    within = dist <= kth
    counts = within.sum(axis=1)
    cols = np.empty((n_rows, kk), dtype=np.int64)
    exact = counts == kk
    cols[exact] = np.nonzero(within[exact])[1].reshape(-1, kk)
    for row in np.flatnonzero(~exact):
        candidates = np.flatnonzero(within[row])
        order = np.lexsort((candidates, dist[row, candidates]))
        cols[row] = candidates[order[:kk]]
    return np.take_along_axis(dist, cols, axis=1), cols


def _merge_topk(
    left: tuple[NDArray[np.float64], NDArray[np.int64]],
    right: tuple[NDArray[np.float64], NDArray[np.int64]],
    k: int,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Top-k of the union under (distance, id): the global top-k is within the chunk top-ks."""
    dist = np.concatenate([left[0], right[0]], axis=1)
    ids = np.concatenate([left[1], right[1]], axis=1)
    order = np.lexsort((ids, dist), axis=-1)[:, :k]
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(ids, order, axis=1)


def cached_ground_truth(
    dataset: Dataset, k: int, cache_dir: str | os.PathLike[str] | None = None
) -> NDArray[np.int32]:
    """Exact top-k for a dataset, cached as ``.ivecs`` keyed by a hash of data, k and metric.

    The key covers the vectors themselves (not the name), so regenerating a synthetic set with
    other parameters can never pick up a stale answer. A cache file that does not read back with
    the expected shape is recomputed rather than trusted.
    """
    path = (
        Path(cache_dir or DEFAULT_CACHE_DIR)
        / f"{_safe(dataset.name)}-k{k}-{dataset.metric}-{_data_key(dataset, k)}.ivecs"
    )
    if path.is_file():
        try:
            cached = read_ivecs(path)
        except ValueError:
            cached = None
        if cached is not None and cached.shape == (dataset.n_queries, k):
            return cached
    ground_truth = exact_ground_truth(dataset.base, dataset.queries, k, dataset.metric)
    write_ivecs(path, ground_truth)
    return ground_truth


def with_ground_truth(
    dataset: Dataset, k: int, cache_dir: str | os.PathLike[str] | None = None
) -> Dataset:
    """The same dataset with exact top-k ground truth (e.g. for synthetic sets)."""
    return replace(dataset, ground_truth=cached_ground_truth(dataset, k, cache_dir))


def _data_key(dataset: Dataset, k: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(_GROUND_TRUTH_VERSION)
    digest.update(f"|{dataset.metric}|{k}|{dataset.base.shape}|{dataset.queries.shape}|".encode())
    digest.update(np.ascontiguousarray(dataset.base).data)
    digest.update(np.ascontiguousarray(dataset.queries).data)
    return digest.hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "dataset"


# --------------------------------------------------------------------------------------------
# Recall
# --------------------------------------------------------------------------------------------


def recall_at_k(found_ids: ArrayLike, true_ids: ArrayLike, k: int) -> float:
    """Mean over queries of ``|set(found[:k]) & set(true[:k])| / k``.

    - ``found`` may have fewer than k columns or be padded with ``-1`` (a shard that returned
      fewer results); missing answers simply count as misses. Duplicate ids count once, so a
      system cannot earn recall by repeating a hit.
    - ``true`` needs at least k columns. Where it is padded with ``-1`` (fewer than k true
      neighbours exist, e.g. under a selective filter), the row's denominator is its number of
      real ids instead of k, so a perfect answer still scores 1.0; rows with no real ids are
      left out of the mean. With complete ground truth this is exactly the formula above.
    """
    found, true = _recall_inputs(found_ids, true_ids, k)
    true_k = true[:, :k]
    valid = true_k >= 0
    per_row_valid = valid.sum(axis=1)
    if not per_row_valid.any():
        raise ValueError("true_ids has no real ids (all -1) in its first k columns")
    # Offset ids by row so one isin over flat arrays matches ids within the same row only.
    width = int(max(true_k.max(initial=0), found.max(initial=0))) + 2
    row_offset = np.arange(len(true_k), dtype=np.int64)[:, None] * width
    found_keys = np.where(found[:, :k] >= 0, found[:, :k] + 1 + row_offset, -1)
    true_keys = true_k + 1 + row_offset
    hits = (np.isin(true_keys, found_keys) & valid).sum(axis=1)
    kept = per_row_valid > 0
    return float(np.mean(hits[kept] / per_row_valid[kept]))


def without_self_matches(
    base: ArrayLike, queries: ArrayLike, true_ids: ArrayLike
) -> NDArray[np.int64] | None:
    """The ground truth with each query's own row left out (as ``-1``), or None when no
    query is a base row.

    bigann10k's 100 queries are its base rows 0-99, so every query's first true neighbour is
    itself, at distance 0: any index finds it, and that free hit is 1 of recall@10's 10 — an
    index that finds 8 of the 9 others scores 0.9 instead of 0.89. ``recall_at_k`` over this
    ground truth counts only the other true neighbours (k - 1 of them where the query was a
    base row). A query counts as a base row when its first true neighbour is a row identical
    to it.
    """
    true = np.asarray(true_ids).astype(np.int64)
    first = true[:, 0]
    have = first >= 0
    same = np.zeros(len(true), dtype=bool)
    same[have] = np.all(np.asarray(base)[first[have]] == np.asarray(queries)[have], axis=1)
    if not same.any():
        return None
    others = true.copy()
    others[same, 0] = -1
    return others


def _recall_inputs(
    found_ids: ArrayLike, true_ids: ArrayLike, k: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    found = np.asarray(found_ids)
    true = np.asarray(true_ids)
    if found.ndim != 2 or true.ndim != 2 or len(found) != len(true):
        raise ValueError(
            f"found_ids and true_ids must be 2-D with one row per query, got {found.shape} "
            f"and {true.shape}"
        )
    if len(true) == 0:
        raise ValueError("recall needs at least one query")
    if k < 1 or true.shape[1] < k:
        raise ValueError(f"k must be in [1, {true.shape[1]}] (true_ids columns), got {k}")
    for what, ids in (("found_ids", found), ("true_ids", true)):
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < -1):
            raise ValueError(f"{what} must hold integer ids >= 0, or -1 as padding")
    return found.astype(np.int64), true.astype(np.int64)
