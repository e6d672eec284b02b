"""Score upper bounds (core.bounds) on plain data, for every metric: the
bound of a set of balls is ≥ the canonical score of every member, for random
queries — on random partitions, and on the summaries real segments publish."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.bounds import ball_radii, score_upper_bound, score_upper_bounds
from core.domain import Metric
from core.scoring import canonical_scores, normalized, prepare_query
from registry.index_params import FlatParams, HnswParams, IndexParams, IvfPqParams
from shard_server.ivfpq_segment import IvfPqTemplate
from shard_server.planner import PlannerPolicy
from shard_server.sealed_segment import BuildSettings, build_sealed
from shard_server.segment_rows import SegmentRows


def _data(metric: Metric, rng: np.random.Generator, n: int, dim: int, scale: float) -> np.ndarray:
    x = (rng.normal(size=(n, dim)) * scale + rng.normal(size=dim) * scale).astype(np.float32)
    x[np.all(x == 0, axis=1)] = 1.0
    if metric is Metric.COSINE:
        x = np.stack([normalized(v) for v in x])
    return x


@settings(max_examples=150, deadline=None)
@given(
    metric=st.sampled_from(list(Metric)),
    n=st.integers(1, 80),
    dim=st.integers(1, 12),
    n_balls=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_bound_is_at_least_every_score_of_every_ball(
    metric: Metric, n: int, dim: int, n_balls: int, seed: int, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    x = _data(metric, rng, n, dim, scale)
    assign = rng.integers(0, n_balls, size=n)
    # Centroids need not be means: the bound must hold for any centre.
    centroids = (rng.normal(size=(n_balls, dim)) * scale).astype(np.float32)
    centroids[: min(n_balls, n)] = x[: min(n_balls, n)]
    radii = ball_radii(x, centroids, assign)
    for _ in range(5):
        q = prepare_query(
            (rng.normal(size=dim) * scale).astype(np.float32) + 1e-3,
            metric,
            metric is Metric.COSINE,
        )
        scores = canonical_scores(metric, q, x)
        assert score_upper_bound(metric, q, centroids, radii) >= scores.max()
        for j in range(n_balls):
            members = assign == j
            if members.any():
                bound = score_upper_bound(metric, q, centroids[j : j + 1], radii[j : j + 1])
                assert bound >= scores[members].max()


def test_bound_is_tight_for_a_ball_of_radius_zero() -> None:
    c = np.array([[3.0, 4.0]], np.float32)
    r = np.zeros(1, np.float32)
    q = np.array([0.0, 0.0], np.float32)
    assert score_upper_bound(Metric.L2, q, c, r) == pytest.approx(-5.0, rel=1e-5)
    assert score_upper_bound(Metric.INNER_PRODUCT, np.array([1.0, 0], np.float32), c, r) == (
        pytest.approx(3.0, rel=1e-5)
    )
    assert score_upper_bound(Metric.L2, q, np.zeros((0, 2), np.float32), np.zeros(0)) == float(
        "-inf"
    )


def test_radii_round_up_to_float32() -> None:
    x = np.array([[0.1, 0.2], [0.3, -0.7]], np.float32)
    c = np.zeros((1, 2), np.float32)
    radii = ball_radii(x, c, np.zeros(2, dtype=np.int64))
    exact = np.sqrt((x.astype(np.float64) ** 2).sum(axis=1)).max()
    assert radii.dtype == np.float32 and float(radii[0]) >= exact


def _rows(x: np.ndarray) -> SegmentRows:
    return SegmentRows.numbered(x)


@pytest.mark.parametrize("metric", list(Metric), ids=lambda m: m.value)
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_published_segment_summaries_bound_every_row(metric: Metric, kind: str) -> None:
    """The balls a sealed segment publishes (k-means for flat/hnsw, the IVF
    lists for ivfpq) bound every row's score."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(8, 16)) * 4
    x = (centres[rng.integers(0, 8, 3000)] + rng.normal(size=(3000, 16))).astype(np.float32)
    if metric is Metric.COSINE:
        x = np.stack([normalized(v) for v in x])
    params: IndexParams = FlatParams() if kind == "flat" else HnswParams(M=8)
    template = None
    if kind == "ivfpq":
        params = IvfPqParams(nlist=16, m=4, nbits=6, train_size=3000)
        template = IvfPqTemplate.train(x, metric, params)
    seg = build_sealed("s", _rows(x), metric, params, template, BuildSettings(), PlannerPolicy())
    assert seg.kind == kind
    summary = seg.summary()
    assert 1 <= summary.centroids.shape[0] <= 16
    for _ in range(20):
        q = prepare_query(
            (rng.normal(size=16) * 4).astype(np.float32), metric, metric is Metric.COSINE
        )
        best = canonical_scores(metric, q, x).max()
        assert score_upper_bound(metric, q, summary.centroids, summary.radii) >= best


@given(
    st.sampled_from(list(Metric)),
    st.integers(1, 70),
    st.integers(0, 40),
    st.integers(1, 200),
    st.integers(0, 2**32 - 1),
    st.floats(1e-3, 1e3),
)
@settings(max_examples=150, deadline=None)
def test_a_batch_of_queries_gets_exactly_the_bounds_each_would_alone(
    metric: Metric, n: int, m: int, dim: int, seed: int, scale: float
) -> None:
    """The coordinator bounds a SearchBatch's queries in one call and a
    lone Search's in another: the traces (and skip decisions) of the two
    must not differ by a rounding, so the rows are bitwise equal."""
    rng = np.random.default_rng(seed)
    centroids = (rng.normal(size=(m, dim)) * scale).astype(np.float32)
    radii = (rng.random(m) * scale).astype(np.float32)
    queries = (rng.normal(size=(n, dim)) * scale).astype(np.float32)
    queries[0] = 0.0  # a zero query (cosine leaves it unnormalized)
    batch = score_upper_bounds(metric, queries, centroids, radii)
    alone = np.array([score_upper_bound(metric, q, centroids, radii) for q in queries])
    assert batch.shape == (n,) and np.array_equal(batch, alone)
    with pytest.raises(ValueError, match="expected"):
        score_upper_bounds(metric, queries[:, :-1] if dim > 1 else queries[0], centroids, radii)


@pytest.mark.parametrize("metric", [Metric.INNER_PRODUCT, Metric.L2])
def test_a_bound_past_float32s_range_is_infinite_as_the_score_is(metric: Metric) -> None:
    """check_vector accepts any finite float32, and a canonical score past
    float32's range is ±inf; the bound was a finite float64 below a +inf
    score, so a shard holding an item that ties the k-th at +inf and wins
    on entity_id was skipped (found in review)."""
    from coordinator.fanout import can_skip
    from coordinator.merge import Hit
    from core.domain import EntityKey

    q = np.full(4, 1e20 if metric is Metric.INNER_PRODUCT else 3e38, np.float32)
    x = np.full((1, 4), 1e20 if metric is Metric.INNER_PRODUCT else -3e38, np.float32)
    score = float(canonical_scores(metric, q, x)[0])
    bound = score_upper_bound(metric, q, x.astype(np.float64), np.zeros(1))
    assert bound >= score, f"bound {bound} < score {score}"
    # The shard holding "a" at `score`, the k-th so far "z" at that score elsewhere.
    assert not can_skip(bound, [Hit(score, EntityKey("t", "item", "z"), "s0", 0)], 1)
