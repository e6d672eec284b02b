"""Latency histogram for load-test reports: bounded relative error, mergeable, JSON-friendly.

Keeping every sample of a long load test costs memory and makes merging the histograms of
several load-generator processes awkward; a fixed-precision histogram does neither. Like
HdrHistogram, precision is set in significant digits: with ``significant_digits = s`` every
reported percentile is within a relative error of ``10**-s`` of the true sample (1% for s=2).

Buckets are logarithmic (the DDSketch layout): bucket ``i`` holds values in
``(gamma**(i-1), gamma**i]`` with ``gamma = (1 + a) / (1 - a)`` and ``a = 10**-s``, and reports
``2 * gamma**i / (gamma + 1)``, which is within ``a`` of anything in the bucket. Unlike
HdrHistogram this needs no lowest/highest trackable value: any positive float has a bucket,
and buckets are stored sparsely. Exact zeros (a coarse timer) get a bucket of their own.

Percentile definition: the order statistic that ``numpy.percentile(samples, p,
method="higher")`` returns, i.e. the sorted sample at 0-based rank ``ceil((n - 1) * p / 100)``,
computed with the same float64 arithmetic as numpy so both always pick the same rank.
``percentile(0)`` and ``percentile(100)`` are the exact min and max.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from itertools import accumulate
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

REPORT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9, 100.0)


class LatencyHistogram:
    """Mergeable log-bucketed histogram of durations in seconds."""

    __slots__ = (
        "significant_digits",
        "relative_error",
        "_log_gamma",
        "_gamma",
        "_buckets",
        "_zeros",
        "_count",
        "_sum",
        "_min",
        "_max",
        "_cumulative",
    )

    def __init__(self, significant_digits: int = 2) -> None:
        if not 1 <= significant_digits <= 6:
            raise ValueError(f"significant_digits must be in [1, 6], got {significant_digits}")
        self.significant_digits = significant_digits
        self.relative_error = 10.0**-significant_digits
        self._gamma = (1 + self.relative_error) / (1 - self.relative_error)
        self._log_gamma = math.log(self._gamma)
        self._buckets: dict[int, int] = {}
        self._zeros = 0
        self._count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf
        # (sorted bucket indexes, cumulative counts), rebuilt lazily after writes.
        self._cumulative: tuple[list[int], list[int]] | None = None

    # -- writing -------------------------------------------------------------------------------

    def record(self, value_seconds: float) -> None:
        """Add one duration; negative or non-finite values are refused, never clamped."""
        value = float(value_seconds)
        _check_value(value)
        if value == 0.0:
            self._zeros += 1
        else:
            index = math.ceil(math.log(value) / self._log_gamma)
            self._buckets[index] = self._buckets.get(index, 0) + 1
        self._note(1, value, value, value)

    def record_many(self, values_seconds: ArrayLike) -> None:
        """Add many durations at numpy speed (e.g. a load generator's per-second batch)."""
        values = np.asarray(values_seconds, dtype=np.float64).ravel()
        if values.size == 0:
            return
        if not np.isfinite(values).all() or (values < 0).any():
            raise ValueError("latencies must be finite and >= 0 seconds")
        positive = values[values > 0]
        indexes, counts = np.unique(
            np.ceil(np.log(positive) / self._log_gamma).astype(np.int64), return_counts=True
        )
        for index, count in zip(indexes.tolist(), counts.tolist(), strict=True):
            self._buckets[index] = self._buckets.get(index, 0) + count
        self._zeros += int(values.size - positive.size)
        self._note(int(values.size), float(values.sum()), float(values.min()), float(values.max()))

    def merge(self, other: LatencyHistogram) -> None:
        """Fold another histogram in, e.g. one per load-generator process or worker."""
        if other.significant_digits != self.significant_digits:
            raise ValueError(
                f"cannot merge a {other.significant_digits}-digit histogram into a "
                f"{self.significant_digits}-digit one: bucket boundaries differ"
            )
        if other._count == 0:
            return
        for index, count in other._buckets.items():
            self._buckets[index] = self._buckets.get(index, 0) + count
        self._zeros += other._zeros
        self._note(other._count, other._sum, other._min, other._max)

    def _note(self, count: int, total: float, low: float, high: float) -> None:
        self._count += count
        self._sum += total
        self._min = min(self._min, low)
        self._max = max(self._max, high)
        self._cumulative = None

    # -- reading -------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return self._count

    @property
    def min(self) -> float:
        """Exact smallest recorded value."""
        self._require_samples()
        return self._min

    @property
    def max(self) -> float:
        """Exact largest recorded value."""
        self._require_samples()
        return self._max

    @property
    def mean(self) -> float:
        """Exact mean: the running sum is kept alongside the buckets."""
        self._require_samples()
        return self._sum / self._count

    def percentile(self, p: float) -> float:
        """Value at percentile ``p`` in [0, 100], within ``relative_error`` (see module doc)."""
        self._require_samples()
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {p}")
        rank = min(max(math.ceil((self._count - 1) * (p / 100.0)), 0), self._count - 1)
        if rank == 0:
            return self._min
        if rank == self._count - 1:
            return self._max
        if rank < self._zeros:
            return 0.0
        indexes, cumulative = self._cumulative_counts()
        index = indexes[bisect.bisect_right(cumulative, rank - self._zeros)]
        representative = 2.0 * math.exp(index * self._log_gamma) / (self._gamma + 1.0)
        # The true sample lies in [min, max]; clamping can only move the estimate closer.
        return min(max(representative, self._min), self._max)

    def percentiles(self, ps: Iterable[float] = REPORT_PERCENTILES) -> dict[str, float]:
        """Several percentiles keyed ``"p50"``, ``"p99.9"``, ... for reports."""
        return {f"p{p:g}": self.percentile(p) for p in ps}

    def _cumulative_counts(self) -> tuple[list[int], list[int]]:
        if self._cumulative is None:
            indexes = sorted(self._buckets)
            counts = list(accumulate(self._buckets[i] for i in indexes))
            self._cumulative = (indexes, counts)
        return self._cumulative

    def _require_samples(self) -> None:
        if self._count == 0:
            raise ValueError("the histogram is empty: record a value first")

    # -- serialization -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary plus the raw buckets, so reports can be merged later."""
        summary: dict[str, Any] = {
            "unit": "seconds",
            "significant_digits": self.significant_digits,
            "relative_error": self.relative_error,
            "count": self._count,
            "min": None,
            "max": None,
            "mean": None,
            "sum": self._sum,
            "percentiles": {},
        }
        if self._count:
            summary.update(min=self._min, max=self._max, mean=self.mean)
            summary["percentiles"] = self.percentiles()
        summary["zeros"] = self._zeros
        summary["buckets"] = {str(index): self._buckets[index] for index in sorted(self._buckets)}
        return summary

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyHistogram:
        """Rebuild a histogram written by ``to_dict`` (e.g. from another process's report)."""
        histogram = cls(int(data["significant_digits"]))
        histogram._buckets = {int(index): int(count) for index, count in data["buckets"].items()}
        histogram._zeros = int(data["zeros"])
        count = int(data["count"])
        if count != histogram._zeros + sum(histogram._buckets.values()):
            raise ValueError("inconsistent histogram: count differs from the bucket total")
        if count:
            histogram._note(count, float(data["sum"]), float(data["min"]), float(data["max"]))
        return histogram


def _check_value(value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"latency must be finite and >= 0 seconds, got {value}")


SUMMARY_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)


def summarize_ms(values_seconds: ArrayLike) -> dict[str, Any]:
    """What every report says about a set of latencies: count, mean, p50/p90/p95/p99/p99.9
    and max in milliseconds (from a ``LatencyHistogram``, so within its 1%), plus the
    histogram itself so reports from several runs or processes can be merged later.

    NaN entries (requests that never completed) are left out; negative values (two clock
    reads that tie) count as zero.
    """
    values = np.asarray(values_seconds, dtype=np.float64).ravel()
    histogram = LatencyHistogram()
    histogram.record_many(np.maximum(values[~np.isnan(values)], 0.0))
    out: dict[str, Any] = {"count": histogram.count}
    if histogram.count:
        out["mean_ms"] = histogram.mean * 1e3
        out.update({f"p{p:g}_ms": histogram.percentile(p) * 1e3 for p in SUMMARY_PERCENTILES})
        out["max_ms"] = histogram.max * 1e3
    out["histogram"] = histogram.to_dict()
    return out
