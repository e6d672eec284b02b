"""The shard's counted histogram observation (`observe_times`) against
prometheus_client's own `observe`: it reaches into the histogram's values,
so an upstream change to them must fail here, not skew dashboards."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from shard_server import metrics

BUCKETS = (0.0001, 0.001, 0.01, 0.1, 1)


def _histograms() -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    a, b = CollectorRegistry(), CollectorRegistry()
    ha = Histogram("t_seconds", "t", ["plan"], buckets=BUCKETS, registry=a)
    hb = Histogram("t_seconds", "t", ["plan"], buckets=BUCKETS, registry=b)
    return a, ha, b, hb


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ann", "exact"]),
            st.one_of(st.sampled_from([0.0, *BUCKETS, 5.0]), st.floats(0, 2)),
            st.integers(1, 40),
        ),
        max_size=6,
    )
)
def test_observing_a_value_n_times_at_once_equals_observing_it_n_times(
    observations: list[tuple[str, float, int]],
) -> None:
    a, ha, b, hb = _histograms()
    for plan, amount, times in observations:
        for _ in range(times):
            ha.labels(plan).observe(amount)
        metrics.observe_times(hb.labels(plan), amount, times)
    assert _samples(a) == _samples(b)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], object]:
    """Every sample but creation times; sums compared to rounding (one
    multiplication against repeated additions)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): (
            pytest.approx(s.value, rel=1e-12, abs=1e-15) if s.name.endswith("_sum") else s.value
        )
        for m in registry.collect()
        for s in m.samples
        if not s.name.endswith("_created")
    }


def test_the_counted_path_is_the_one_taken() -> None:
    """prometheus_client still has what `observe_times` adds to: a release
    without it would fall back to one `observe` per query and fail here."""
    _, ha, _, _ = _histograms()
    child = ha.labels("ann")
    assert all(hasattr(child, a) for a in ("_sum", "_buckets", "_upper_bounds"))
    with patch.object(child, "observe") as observe:
        metrics.observe_times(child, 0.001, 5)
    observe.assert_not_called()


def test_a_batch_is_observed_per_query_under_its_plan() -> None:
    class Answer:
        def __init__(self, plan: str) -> None:
            self.plan = plan

    child = metrics.SEGMENT_SEARCH_SECONDS.labels("test-kind", "ann")
    other = metrics.SEGMENT_SEARCH_SECONDS.labels("test-kind", "exact")
    count = child._sum.get(), other._sum.get()
    metrics.observe_segment_batch("test-kind", [Answer("ann")] * 3 + [Answer("exact")], 0.004)
    assert child._sum.get() - count[0] == pytest.approx(0.003)
    assert other._sum.get() - count[1] == pytest.approx(0.001)
    samples = {
        (s.labels.get("plan"), s.name): s.value
        for m in metrics.SEGMENT_SEARCH_SECONDS.collect()
        for s in m.samples
        if s.labels.get("kind") == "test-kind" and s.name.endswith("_count")
    }
    assert samples == {
        ("ann", "vecshard_shard_segment_search_seconds_count"): 3.0,
        ("exact", "vecshard_shard_segment_search_seconds_count"): 1.0,
    }


def test_without_the_histogram_internals_each_query_is_observed() -> None:
    class Plain:  # a histogram child of a release without _sum/_buckets
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, amount: float) -> None:
            self.seen.append(amount)

    plain = Plain()
    metrics.observe_times(plain, 0.002, 3)  # type: ignore[arg-type]
    assert plain.seen == [0.002] * 3
