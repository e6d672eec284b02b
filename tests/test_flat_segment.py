"""The exact segments (the growing one, and a sealed flat one built from its
live rows) against brute force, on plain data, for every metric: same keys,
same order (ties included), scores from the one canonical function."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import AttrType, AttrValue, EntityKey, Metric
from core.filters import Eq, Range, matches
from core.ordering import order_key
from core.scoring import canonical_scores, normalized, prepare_query
from registry.index_params import FlatParams
from shard_server.growing_segment import GrowingSegment
from shard_server.planner import PlannerPolicy
from shard_server.sealed_segment import BuildSettings, build_sealed
from shard_server.segment import DEFAULT_OPTIONS

SCHEMA = {"cat": AttrType.STRING, "p": AttrType.FLOAT}


def brute_force(metric, q, keys, vecs, attrs, tenant, k, flt=None):
    idx = [i for i, key in enumerate(keys) if key.tenant_id == tenant and matches(flt, attrs[i])]
    if not idx:
        return []
    scores = canonical_scores(metric, q, vecs[idx])
    ranked = sorted(
        zip(scores.tolist(), [keys[i] for i in idx], strict=True), key=lambda t: order_key(*t)
    )
    return ranked[:k]


@settings(max_examples=60, deadline=None)
@given(
    metric=st.sampled_from(list(Metric)),
    n=st.integers(1, 120),
    k=st.integers(1, 15),
    seed=st.integers(0, 2**32 - 1),
    deletes=st.integers(0, 20),
)
def test_search_equals_brute_force_with_ties_and_deletes(
    metric: Metric, n: int, k: int, seed: int, deletes: int
) -> None:
    rng = np.random.default_rng(seed)
    dim = 6
    base = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)  # small ints: many exact ties
    base[np.all(base == 0, axis=1)] = 1.0
    if metric is Metric.COSINE:
        base = np.stack([normalized(v) for v in base])
    keys = [
        EntityKey(f"t{i % 2}", "item", f"id{rng.integers(0, 10_000):05d}-{i}") for i in range(n)
    ]
    attrs: list[dict[str, AttrValue]] = [{"cat": "ab"[i % 2], "p": float(i % 7)} for i in range(n)]
    seg = GrowingSegment("g", dim, metric, SCHEMA, capacity=4)
    for i in range(n):
        seg.upsert(keys[i], base[i], attrs[i], bucket=i % 3, seq=i)
    alive = list(range(n))
    for j in rng.choice(n, size=min(deletes, n), replace=False):
        assert seg.delete(keys[j])
        alive.remove(int(j))
    assert not seg.delete(EntityKey("t0", "item", "never-there"))
    rows, _ = seg.live_rows()
    sealed = build_sealed("s", rows, metric, FlatParams(), None, BuildSettings(), PlannerPolicy())
    keys_a = [keys[i] for i in alive]
    vecs_a = base[alive] if alive else np.zeros((0, dim), np.float32)
    attrs_a = [attrs[i] for i in alive]
    q = prepare_query(
        rng.integers(-2, 3, size=dim).astype(np.float32) + 0.5, metric, metric is Metric.COSINE
    )
    for flt in (None, Eq("cat", "a"), Range("p", gte=2.0, lt=5.0)):
        want = brute_force(metric, q, keys_a, vecs_a, attrs_a, "t0", k, flt)
        for segment in (seg, sealed):
            got = segment.search(q, k, "t0", flt, DEFAULT_OPTIONS)
            assert [(h.score, h.key) for h in got.hits] == want
            assert all(h.key.tenant_id == "t0" for h in got.hits)


def test_upsert_replaces_and_masks_the_old_row() -> None:
    seg = GrowingSegment("g", 2, Metric.INNER_PRODUCT, {})
    key = EntityKey("t", "item", "x")
    seg.upsert(key, np.array([1, 0], np.float32), {}, 0, seq=1)
    seg.upsert(key, np.array([0, 1], np.float32), {}, 0, seq=2)
    assert (len(seg), seg.live_count, seg.deleted_count) == (2, 1, 1)
    (hit,) = seg.search(np.array([1, 1], np.float32), 5, "t", None, DEFAULT_OPTIONS).hits
    assert (hit.score, hit.seq) == (1.0, 2)
    rows, source = seg.live_rows()
    assert tuple(rows.keys) == (key,) and source.tolist() == [1]


@pytest.mark.parametrize("metric", list(Metric))
def test_canonical_scores_match_float64_math(metric: Metric) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 16)).astype(np.float32)
    q = rng.normal(size=16).astype(np.float32)
    got = canonical_scores(metric, q, x).astype(np.float64)
    if metric is Metric.L2:
        want = -np.linalg.norm(x.astype(np.float64) - q, axis=1)
    else:
        want = x.astype(np.float64) @ q.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # The score of a vector does not depend on which other vectors are scored with it.
    singles = np.array([canonical_scores(metric, q, x[i : i + 1])[0] for i in range(50)])
    assert singles.tobytes() == canonical_scores(metric, q, x).tobytes()
