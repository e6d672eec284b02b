"""Shard metrics of retrieval quality and model changes (DESIGN §11):
the sampled exact re-check's recall estimate, indexing lag, and the vector
norm distribution and zero-vector rate of what each index version stores.

Norms arrive a batch at a time, so they are counted into fixed buckets with
numpy (one call per batch, not one `observe` per vector) and exported as a
Prometheus histogram at scrape time: p50/p99 come from `histogram_quantile`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

RECALL_ESTIMATE = Gauge(
    "vecshard_recall_estimate",
    "Recall@k of live queries against an exact re-run of the same query, mean of the last "
    "sampled ones (VECSHARD__SHARD__RECALL_SAMPLE_RATE)",
    ["index"],
)
RECALL_SAMPLES = Counter(
    "vecshard_recall_samples_total",
    "Live queries re-run exactly, by outcome (measured, dropped when the queue was full, "
    "over_budget when the re-checks had spent their CPU share, failed)",
    ["index", "outcome"],
)
INDEXING_LAG = Histogram(
    "vecshard_indexing_lag_seconds",
    "From a write's acknowledgement to its row being searchable in a sealed (indexed) segment: "
    "the age of the oldest row of each sealed growing segment",
    ["index"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
ZERO_VECTORS = Counter(
    "vecshard_zero_vectors_total",
    "Vectors written with a norm below 1e-6 (useless for inner product, refused for cosine)",
    ["index"],
)
VECTORS = Counter("vecshard_vectors_written_total", "Vectors written", ["index"])

# Log-spaced: norms of real models span orders of magnitude between families.
NORM_BUCKETS = tuple(float(b) for b in np.geomspace(1e-3, 1e4, 29))
ZERO_NORM = 1e-6


class _NormCollector(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}
        self._edges = np.array(NORM_BUCKETS)

    def observe(self, index: str, norms: np.ndarray) -> None:
        if not len(norms):
            return
        slots = np.searchsorted(self._edges, norms, side="left")  # le-bucket per value
        counts = np.bincount(slots, minlength=len(self._edges) + 1)
        with self._lock:
            if index not in self._counts:
                self._counts[index] = np.zeros(len(self._edges) + 1, dtype=np.int64)
                self._sums[index] = 0.0
            self._counts[index] += counts
            self._sums[index] += float(norms.sum())

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "vecshard_vector_norm",
            "L2 norm of written vectors (before normalization), per index version",
            labels=["index"],
        )
        with self._lock:
            items = [(k, v.copy(), self._sums[k]) for k, v in self._counts.items()]
        for index, counts, total in sorted(items, key=lambda t: t[0]):
            cumulative = np.cumsum(counts)
            buckets = [(repr(b), int(c)) for b, c in zip(NORM_BUCKETS, cumulative, strict=False)]
            buckets.append(("+Inf", int(cumulative[-1])))
            family.add_metric([index], buckets, total)
        yield family


NORMS = _NormCollector()
REGISTRY.register(NORMS)


def observe_vectors(index: str, vectors: np.ndarray) -> None:
    """Norm distribution and zero-vector count of one written batch."""
    if not len(vectors):
        return
    v64 = vectors.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", v64, v64))
    NORMS.observe(index, norms)
    VECTORS.labels(index).inc(len(norms))
    zeros = int((norms < ZERO_NORM).sum())
    if zeros:
        ZERO_VECTORS.labels(index).inc(zeros)
