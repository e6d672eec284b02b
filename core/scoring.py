"""The one score function every shard uses (DESIGN §6).

Canonical scores are accumulated in float64 and rounded once to float32: the
products of float32 values are exact in float64, and the float64 sum's error is
far below a float32 ulp, so the same (query, vector) pair gets the same float32
score whatever BLAS kernel, batch shape or shard computed it. Candidate
generation may use fast float32 math; only these scores are ever returned.
"""

from __future__ import annotations

import numpy as np

from core.domain import Metric
from core.errors import InvalidArgument

F32 = np.float32


def normalized(vec: np.ndarray, *, what: str = "vector") -> np.ndarray:
    """Unit-length copy, computed in float64 then rounded (deterministic)."""
    v64 = vec.astype(np.float64)
    norm = float(np.sqrt(v64 @ v64))
    if norm == 0.0:
        raise InvalidArgument(
            f"{what}: zero vector cannot be normalized (cosine metric); expected norm > 0"
        )
    return (v64 / norm).astype(F32)


def prepare_query(vec: np.ndarray, metric: Metric, normalize: bool) -> np.ndarray:
    if metric is Metric.COSINE or normalize:
        return normalized(vec, what="query vector")
    return np.asarray(vec, dtype=F32)


def canonical_scores(metric: Metric, query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Higher-is-better scores: inner product, cosine (on normalized vectors), -L2 distance."""
    if vectors.shape[0] == 0:
        return np.empty(0, dtype=F32)
    q = query.astype(np.float64)
    x = vectors.astype(np.float64)
    with np.errstate(over="ignore"):  # a score past float32's range is ±inf
        if metric is Metric.L2:
            diff = x - q
            # Annotated: numpy's stubs type einsum's result as Any.
            distance: np.ndarray = np.sqrt(np.einsum("ij,ij->i", diff, diff))
            # "+ 0.0" turns -0.0 (an exact match) into 0.0, so equal scores are equal bytes.
            return (-distance + 0.0).astype(F32)
        return (x @ q).astype(F32)


def approx_scores(
    metric: Metric, query: np.ndarray, vectors: np.ndarray, sq_norms: np.ndarray
) -> tuple[np.ndarray, float]:
    """Fast float32 scores that order like the canonical ones, and a bound on
    how far apart two of them may be from their canonical order (for L2 the
    scale is -distance², monotone in the canonical score)."""
    d = vectors.shape[1] if vectors.ndim == 2 else 1
    # Overflow gives inf (or NaN): `exact_candidates` then rescores all.
    with np.errstate(over="ignore", invalid="ignore"):
        dots = vectors @ query
        qn = float(query @ query)
        max_sq = float(sq_norms.max()) if sq_norms.size else 0.0
        eps = 4.0 * d * float(np.finfo(F32).eps)
        # Products and squares that underflow err absolutely (SUBNORMAL each).
        tiny = 8.0 * (d + 2) * SUBNORMAL
        if metric is Metric.L2:
            return 2.0 * dots - sq_norms, eps * (qn + max_sq) * 4.0 + tiny
        return dots, eps * float(np.sqrt(qn * max_sq)) * 2.0 + tiny


def prepare_queries(queries: np.ndarray, metric: Metric, normalize: bool) -> np.ndarray:
    """`prepare_query` for a (n, d) matrix at once, row for row the same bytes.

    Why a loop for the norms: a row's norm must not depend on the batch it
    arrived in (a query's answer is the same alone or batched), and the
    per-row dot product is the exact computation `normalized` does."""
    if not (metric is Metric.COSINE or normalize):
        return np.asarray(queries, dtype=F32)
    q64 = queries.astype(np.float64)
    norms = np.array([float(np.sqrt(row @ row)) for row in q64])
    if not norms.all():
        bad = int(np.flatnonzero(norms == 0.0)[0])
        raise InvalidArgument(
            f"query {bad}: zero vector cannot be normalized (cosine metric); expected norm > 0"
        )
    out: np.ndarray = (q64 / norms[:, None]).astype(F32)
    return out


# Temporaries of one chunk of `canonical_scores_rows` stay well below the
# shards' fixed mmap threshold (1 MiB, shard_server.memory): a block above it
# is mapped and unmapped on every call, and its page faults cost a batch of
# 16 queries × 64 candidates × 128 dims (1 MiB in float64, twice) more CPU
# than the scoring itself (~25 % of the shard's CPU per batched call).
CHUNK_BYTES = 128 * 1024


def canonical_scores_rows(
    metric: Metric, queries: np.ndarray, vectors: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """`canonical_scores` of many queries at once: query i against its own
    candidates `vectors[i]` ((n, c, d) → (n, c)) — or, with `rows` ((n, c)
    ints), against `vectors[rows[i]]` gathered a chunk at a time — by the
    same float64 kernels, so each score has the bytes the one-query
    function gives it, whatever the batch or chunk."""
    n, c = rows.shape if rows is not None else vectors.shape[:2]
    if c == 0 or n == 0:
        return np.empty((n, c), dtype=F32)
    d = vectors.shape[-1]
    step = max(1, CHUNK_BYTES // (c * d * 8))
    out = np.empty((n, c), dtype=F32)
    with np.errstate(over="ignore"):  # a score past float32's range is ±inf
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            x = (vectors[rows[lo:hi]] if rows is not None else vectors[lo:hi]).astype(np.float64)
            q = queries[lo:hi].astype(np.float64)
            if metric is Metric.L2:
                diff = x - q[:, None, :]
                out[lo:hi] = -np.sqrt(np.einsum("qcd,qcd->qc", diff, diff)) + 0.0
            else:
                out[lo:hi] = np.matmul(x, q[:, :, None])[..., 0]
    return out


# Approximate scores at or above this magnitude (or not finite) get no
# trimming: a float32 sum this close to overflow may have overflowed.
LARGEST_TRUSTED = 1e36
# float32's smallest subnormal: the absolute rounding of a product or square
# that underflows, which no relative bound covers.
SUBNORMAL = float(np.finfo(F32).smallest_subnormal)


def rescore_width(approx: np.ndarray, k: int, window: np.ndarray) -> int:
    """How many leading candidates of each row need canonical scores for the
    row's k best to be exactly those that rescoring every candidate gives.

    `approx` (b, n) holds approximate scores, each row best first; `window`
    (b,) how far below a row's k-th approximate score a candidate may still
    score canonically at least as well as one of the k above it (twice the
    approximation's error bound there). A candidate further down is
    canonically below k others, so no tie-break can rank it among the k best
    — and in a row in order, those that are not are a prefix. Why: an
    index's candidate list is ef long (64) for k of 10, and rescoring it
    whole cost more of a batched shard search than the index itself. Rows
    out of order (or holding NaN) get every candidate."""
    b, n = int(approx.shape[0]), int(approx.shape[1])
    if n <= k or b == 0:
        return n
    # Scores near float32's range overflowed somewhere (an infinite or NaN
    # score, or one that may hide such a sum): no bound holds, rescore all.
    if not (bool(np.isfinite(window).all()) and bool((np.abs(approx) < LARGEST_TRUSTED).all())):
        return n
    if not bool((approx[:, :-1] >= approx[:, 1:]).all()):
        return n
    floor = approx[:, k - 1].astype(np.float64) - window
    within = approx >= floor[:, None]
    return int(within.sum(axis=1).max())
