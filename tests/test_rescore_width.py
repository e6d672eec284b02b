"""Rescoring only the candidates that can still win (`core.scoring.rescore_width`).

An HNSW segment asks hnswlib for ef candidates (64) per query and used to
rescore all of them canonically for k of 10. hnswlib's distances are exact
float32 arithmetic on the stored vectors, so a candidate far enough below the
k-th approximate score cannot be among the k canonical best. These tests hold
the answers to exactly those of rescoring every candidate: on plain data with
errors up to the bound (ties included), and through real hnswlib segments of
every metric, including inner products of long vectors whose sums cancel.
"""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import Metric
from core.ordering import order_key
from core.scoring import canonical_scores, normalized, rescore_width
from registry.index_params import HnswParams
from shard_server.hnsw_segment import HnswIndex
from shard_server.model import Query
from shard_server.planner import PlannerPolicy
from shard_server.sealed_segment import BuildSettings, SealedSegment, build_sealed
from shard_server.segment import SearchOptions, SegmentHits, ranked_batch
from shard_server.segment_rows import SegmentRows


@settings(max_examples=200, deadline=None)
@given(
    b=st.integers(1, 6),
    n=st.integers(1, 40),
    k=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    levels=st.integers(2, 50),
)
def test_the_prefix_holds_the_k_best_of_every_candidate(
    b: int, n: int, k: int, seed: int, scale: float, levels: int
) -> None:
    """Canonical scores anywhere within half the window of the approximate
    ones (few distinct levels: many ties): the k best of the prefix, in the
    full order, are the k best of all candidates."""
    rng = np.random.default_rng(seed)
    approx = -np.sort(rng.integers(0, levels, size=(b, n)), axis=1).astype(np.float32) * scale
    window = np.full(b, 2.0 * scale)
    canonical = (approx + rng.uniform(-1.0, 1.0, size=(b, n)) * scale).astype(np.float32)
    rows = np.stack([rng.permutation(n) for _ in range(b)]).astype(np.int64)
    rank = rng.permutation(n).astype(np.int64)
    width = rescore_width(approx, k, window)
    assert min(k, n) <= width <= n
    top_all, picked_all = ranked_batch(canonical, rows, rank, k)
    top_few, picked_few = ranked_batch(canonical[:, :width], rows[:, :width], rank, k)
    assert picked_few.tolist() == picked_all.tolist()
    assert top_few.tobytes() == top_all.tobytes()


def test_rows_out_of_order_or_nan_get_every_candidate() -> None:
    window = np.zeros(1)
    assert rescore_width(np.array([[3.0, 2.0, 1.0, 0.0]], np.float32), 1, window) == 1
    assert rescore_width(np.array([[3.0, 2.0, 2.5, 0.0]], np.float32), 1, window) == 4
    assert rescore_width(np.array([[3.0, np.nan, 1.0, 0.0]], np.float32), 1, window) == 4
    # Ties with the k-th are kept whatever the window.
    assert rescore_width(np.array([[3.0, 2.0, 2.0, 2.0, 1.0]], np.float32), 2, window) == 4


def _clustered(metric: Metric, dim: int, seed: int, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """`offset` moves every vector far from the origin (long vectors)."""
    rng = np.random.default_rng(seed)
    n = 3000
    centres = rng.normal(size=(12, dim)) * 3
    x = (centres[rng.integers(0, 12, n)] + rng.normal(size=(n, dim)) + offset).astype(np.float32)
    q = (centres[rng.integers(0, 12, 40)] + rng.normal(size=(40, dim)) + offset).astype(np.float32)
    return x, q


def _shells(metric: Metric, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Near ties: around each query, 500 rows of one score in real numbers
    (at one distance; at one angle; of one inner product, however long), so
    float32 rounding alone orders them — hnswlib's order and the canonical
    one differ, and only the window keeps the answers equal."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, dim)) * 3
    parts = []
    for c in centres:
        axis = c / np.linalg.norm(c)
        u = rng.normal(size=(500, dim))
        if metric is Metric.L2:
            parts.append(c + 1.5 * u / np.linalg.norm(u, axis=1, keepdims=True))
            continue
        u -= np.outer(u @ axis, axis)  # orthogonal to the query
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        if metric is Metric.COSINE:
            parts.append(0.8 * axis + 0.6 * u)
        else:
            parts.append(2.0 * axis + u * rng.uniform(0.5, 3.0, size=(500, 1)))
    return np.concatenate(parts).astype(np.float32), centres.astype(np.float32)


def _segment(metric: Metric, x: np.ndarray, q: np.ndarray) -> tuple[SealedSegment, np.ndarray]:
    if metric is Metric.COSINE:
        x = np.stack([normalized(v) for v in x])
        q = np.stack([normalized(v) for v in q])
    params = HnswParams(M=8, ef_construction=64, ef_search=64)
    seg = build_sealed(
        "s", SegmentRows.numbered(x), metric, params, None, BuildSettings(), PlannerPolicy()
    )
    assert seg.kind == "hnsw"
    return seg, q


def _answers(seg: SealedSegment, queries: np.ndarray, k: int) -> list[tuple[object, ...]]:
    def flat(h: SegmentHits) -> tuple[object, ...]:
        return (h.scores.tobytes(), list(h.keys), h.buckets.tolist(), h.seqs.tolist(), h.plan)

    batch = seg.search_batch(queries, [Query(q, k, "t") for q in queries])
    alone = [seg.search(q, k, "t", None, SearchOptions()) for q in queries]
    return [flat(h) for h in batch] + [flat(h) for h in alone]


def _answers_by_width(
    seg: SealedSegment, queries: np.ndarray, k: int
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[int]]:
    """(answers as built, answers rescoring every candidate, widths used)."""
    widths: list[int] = []

    def spy(approx: np.ndarray, kk: int, window: np.ndarray) -> int:
        width = rescore_width(approx, kk, window)
        widths.append(width)
        return width

    with patch("shard_server.sealed_segment.rescore_width", spy):
        trimmed = _answers(seg, queries, k)
    with patch.object(HnswIndex, "rescore_window", lambda *_: None):
        every = _answers(seg, queries, k)
    assert all(h[4] == "ann" for h in every)  # hnswlib answered, not a scan
    return trimmed, every, widths


@pytest.mark.parametrize(
    ("metric", "dim", "offset"),
    [
        (Metric.L2, 16, 0.0),
        (Metric.L2, 128, 50.0),
        (Metric.COSINE, 128, 0.0),
        (Metric.INNER_PRODUCT, 16, 0.0),
        (Metric.INNER_PRODUCT, 64, 50.0),
    ],
)
@pytest.mark.parametrize("k", [1, 10])
def test_hnsw_answers_equal_rescoring_every_candidate(
    metric: Metric, dim: int, offset: float, k: int
) -> None:
    seg, queries = _segment(metric, *_clustered(metric, dim, dim + k, offset))
    trimmed, every, widths = _answers_by_width(seg, queries, k)
    assert trimmed == every
    # The trim happened: on clustered data few of the 64 candidates are rescored.
    assert widths and np.mean(widths) < 2 * k + 4


@pytest.mark.parametrize("metric", list(Metric), ids=lambda m: m.value)
@pytest.mark.parametrize("k", [1, 10])
def test_near_ties_keep_the_canonical_answer(metric: Metric, k: int) -> None:
    seg, queries = _segment(metric, *_shells(metric, 32, k))
    trimmed, every, _ = _answers_by_width(seg, queries, k)
    assert trimmed == every
    # Rescoring only hnswlib's own k best would have answered differently here.
    with patch("shard_server.sealed_segment.rescore_width", lambda _a, kk, _w: kk):
        assert _answers(seg, queries, k) != every


# -- float32's edges (found in review): overflow and underflow ------------------------


def _ip_overflow() -> tuple[np.ndarray, np.ndarray, int, int]:
    """hnswlib's float32 dot products of the best rows overflow to +inf."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, size=(2000, 16)).astype(np.float32)
    x[:, 0] = rng.uniform(-3.0, 3.0, size=2000)
    x[:100, 0] = rng.uniform(4.0, 5.0, size=100)
    q = np.zeros(16, np.float32)
    q[0] = 1e38
    return x, q, 64, 10


def _ip_overflow_inside() -> tuple[np.ndarray, np.ndarray, int, int]:
    """One product of the canonically best row overflows inside hnswlib's
    sum (its approximate score is -inf; its canonical one is finite)."""
    rng = np.random.default_rng(1)
    n, d = 1100, 16
    u = rng.normal(size=(20 * n, d))
    u = 3 * u / np.linalg.norm(u, axis=1, keepdims=True)
    x = u[u[:, 0] + u[:, 1] <= -0.5][:n].astype(np.float32)
    x[0] = 0
    x[0, 0], x[0, 1] = -7.0, 6.6
    q = np.zeros(d, np.float32)
    q[0] = q[1] = 5e37
    return x, q, n + 200, 1


def _ip_tiny_rows() -> tuple[np.ndarray, np.ndarray, int, int]:
    """Rows so short their float32 squared norms underflow to 0, a huge query."""
    rng = np.random.default_rng(3)
    n, d = 1100, 16
    base = rng.normal(size=(n, d)) * 1e-24
    base[:, 1] = -base[:, 0] + rng.normal(size=n) * 1e-31
    q = np.zeros(d, np.float32)
    q[0] = q[1] = 1e30
    return base.astype(np.float32), q, 64, 10


def _l2_underflow() -> tuple[np.ndarray, np.ndarray, int, int]:
    """Squares that underflow: hnswlib's distance errs absolutely."""
    rng = np.random.default_rng(2)
    n, d = 1100, 16
    x = (rng.normal(size=(n, d)) * 1e-19).astype(np.float32)
    for j in range(1, 6):
        x[j] = (np.where(rng.random(d) < 0.5, -1, 1) * (2.6e-23 - j * 1e-25)).astype(np.float32)
    x[0] = 0
    x[0, 0] = 4e-23
    return x, np.zeros(d, np.float32), 64, 1


EDGES = {
    "ip overflow": (Metric.INNER_PRODUCT, _ip_overflow),
    "ip overflow inside a sum": (Metric.INNER_PRODUCT, _ip_overflow_inside),
    "ip rows whose norms underflow": (Metric.INNER_PRODUCT, _ip_tiny_rows),
    "l2 underflow": (Metric.L2, _l2_underflow),
}


def _brute_force(metric: Metric, x: np.ndarray, q: np.ndarray, k: int) -> tuple[object, ...]:
    scores = canonical_scores(metric, q, x)
    keys = list(SegmentRows.numbered(x).keys)
    best = sorted(range(len(x)), key=lambda i: order_key(float(scores[i]), keys[i]))[:k]
    return scores[best].tobytes(), [keys[i] for i in best]


@pytest.mark.parametrize("case", list(EDGES))
def test_float32_edges_keep_the_canonical_answer(case: str) -> None:
    """Finite inputs (the API accepts them) whose float32 sums overflow or
    underflow: no error bound holds there, so every candidate is rescored —
    the HNSW answer equals rescoring all, and an exact search equals brute
    force in float64."""
    metric, make = EDGES[case]
    x, q, ef, k = make()
    params = HnswParams(M=16, ef_construction=64, ef_search=ef)
    seg = build_sealed(
        "s", SegmentRows.numbered(x), metric, params, None, BuildSettings(), PlannerPolicy()
    )
    trimmed = _answers(seg, q[None, :], k)
    with patch.object(HnswIndex, "rescore_window", lambda *_: None):
        every = _answers(seg, q[None, :], k)
    assert trimmed == every
    exact = seg.search(q, k, "t", None, SearchOptions(exact=True))
    assert (exact.scores.tobytes(), list(exact.keys)) == _brute_force(metric, x, q, k)


def test_the_near_tie_shells_scaled_into_subnormals_keep_their_answers() -> None:
    for scale in (1e-19, 1e-21):
        x, q = _shells(Metric.L2, 32, 1)
        seg, queries = _segment(
            Metric.L2, (x * scale).astype(np.float32), (q * scale).astype(np.float32)
        )
        for k in (1, 10):
            trimmed, every, _ = _answers_by_width(seg, queries, k)
            assert trimmed == every, (scale, k)
