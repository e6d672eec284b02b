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
from core.scoring import normalized, rescore_width
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
