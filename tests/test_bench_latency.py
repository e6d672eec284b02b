"""The latency histogram must report what numpy would from the raw samples, within its error."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.latency import LatencyHistogram

# Slack for float rounding at bucket boundaries, far below any precision a report shows.
FLOAT_SLACK = 1e-9


def assert_matches_numpy(histogram: LatencyHistogram, samples: np.ndarray, p: float) -> None:
    expected = float(np.percentile(samples, p, method="higher"))
    got = histogram.percentile(p)
    bound = histogram.relative_error * (1 + FLOAT_SLACK) * expected
    assert abs(got - expected) <= bound, f"p{p}: got {got}, numpy says {expected}"


def lognormal_latencies(n: int, seed: int) -> np.ndarray:
    # Median ~2 ms with a long tail: the shape real request latencies have.
    return np.random.default_rng(seed).lognormal(mean=math.log(0.002), sigma=1.0, size=n)


@pytest.mark.parametrize("digits", [1, 2, 3])
def test_percentiles_match_numpy_on_lognormal_latencies(digits: int) -> None:
    samples = lognormal_latencies(50_000, seed=digits)
    histogram = LatencyHistogram(significant_digits=digits)
    histogram.record_many(samples)
    for p in (0, 1, 25, 50, 90, 95, 99, 99.9, 99.99, 100):
        assert_matches_numpy(histogram, samples, p)


def test_record_one_by_one_agrees_with_numpy_and_keeps_exact_stats() -> None:
    samples = lognormal_latencies(5_000, seed=7)
    histogram = LatencyHistogram()
    for value in samples:
        histogram.record(float(value))
    for p in (50, 90, 99, 99.9, 100):
        assert_matches_numpy(histogram, samples, p)
    assert histogram.count == len(samples)
    assert histogram.min == samples.min()
    assert histogram.max == samples.max()
    assert histogram.mean == pytest.approx(samples.mean(), rel=1e-12)
    assert histogram.percentile(0) == samples.min()
    assert histogram.percentile(100) == samples.max()


def test_definition_is_numpy_higher_not_interpolated() -> None:
    histogram = LatencyHistogram(significant_digits=3)
    histogram.record_many([1.0, 2.0, 3.0, 4.0])
    # rank ceil(3 * 0.5) = 2 -> 3.0; linear interpolation would give 2.5, nearest-rank 2.0.
    assert histogram.percentile(50) == pytest.approx(3.0, rel=1e-3)
    assert histogram.percentile(34) == pytest.approx(3.0, rel=1e-3)
    assert histogram.percentile(33) == pytest.approx(2.0, rel=1e-3)


def test_zero_latencies_from_a_coarse_timer_are_reported_as_zero() -> None:
    samples = np.array([0.0] * 60 + [0.001] * 40)
    histogram = LatencyHistogram()
    histogram.record_many(samples)
    assert histogram.percentile(50) == 0.0
    assert histogram.percentile(60) == pytest.approx(0.001, rel=0.01)
    assert histogram.percentile(99) == pytest.approx(0.001, rel=0.01)


latency_lists = st.lists(
    st.one_of(
        st.just(0.0),
        st.floats(min_value=1e-9, max_value=1e4, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(
    samples=latency_lists,
    ps=st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=5),
    digits=st.integers(min_value=1, max_value=4),
    one_by_one=st.booleans(),
)
def test_any_sample_set_matches_numpy_within_relative_error(
    samples: list[float], ps: list[float], digits: int, one_by_one: bool
) -> None:
    histogram = LatencyHistogram(significant_digits=digits)
    if one_by_one:
        for value in samples:
            histogram.record(value)
    else:
        histogram.record_many(samples)
    array = np.array(samples)
    for p in [*ps, 50, 90, 99, 99.9, 100]:
        assert_matches_numpy(histogram, array, p)


def summary_without_float_sums(histogram: LatencyHistogram) -> dict[str, object]:
    # Sums differ in the last bits with addition order, so compare them separately.
    summary = histogram.to_dict()
    summary.pop("sum")
    summary.pop("mean")
    return summary


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(latency_lists, min_size=1, max_size=5))
def test_merge_equals_recording_everything_into_one(parts: list[list[float]]) -> None:
    merged = LatencyHistogram()
    for part in parts:
        piece = LatencyHistogram()
        piece.record_many(part)
        merged.merge(piece)
    single = LatencyHistogram()
    single.record_many([value for part in parts for value in part])
    assert summary_without_float_sums(merged) == summary_without_float_sums(single)
    assert merged.mean == pytest.approx(single.mean, rel=1e-9)


def test_merging_an_empty_histogram_changes_nothing() -> None:
    histogram = LatencyHistogram()
    histogram.record_many([0.5, 0.25])
    before = histogram.to_dict()
    histogram.merge(LatencyHistogram())
    assert histogram.to_dict() == before


def test_to_dict_is_strict_json_and_round_trips() -> None:
    histogram = LatencyHistogram()
    histogram.record_many(lognormal_latencies(1_000, seed=3))
    histogram.record(0.0)
    text = json.dumps(histogram.to_dict(), allow_nan=False)
    restored = LatencyHistogram.from_dict(json.loads(text))
    assert restored.to_dict() == histogram.to_dict()
    assert set(histogram.to_dict()["percentiles"]) == {"p50", "p90", "p95", "p99", "p99.9", "p100"}


def test_empty_histogram_reports_nulls_and_refuses_percentiles() -> None:
    histogram = LatencyHistogram()
    summary = histogram.to_dict()
    assert summary["count"] == 0
    assert summary["min"] is None and summary["percentiles"] == {}
    json.dumps(summary, allow_nan=False)
    with pytest.raises(ValueError, match="empty"):
        histogram.percentile(50)
    with pytest.raises(ValueError, match="empty"):
        _ = histogram.mean


@pytest.mark.parametrize("bad", [-1e-6, math.nan, math.inf])
def test_invalid_latencies_are_refused(bad: float) -> None:
    histogram = LatencyHistogram()
    with pytest.raises(ValueError, match="finite"):
        histogram.record(bad)
    with pytest.raises(ValueError, match="finite"):
        histogram.record_many([0.1, bad])
    assert histogram.count == 0


def test_invalid_arguments_are_refused() -> None:
    histogram = LatencyHistogram(significant_digits=2)
    histogram.record(0.1)
    with pytest.raises(ValueError, match="percentile"):
        histogram.percentile(100.5)
    with pytest.raises(ValueError, match="bucket boundaries"):
        histogram.merge(LatencyHistogram(significant_digits=3))
    with pytest.raises(ValueError, match="significant_digits"):
        LatencyHistogram(significant_digits=0)
