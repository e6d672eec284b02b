"""The shard's counted histogram observation (`observe_times`) against
prometheus_client's own `observe`: it reaches into the histogram's values,
so an upstream change to them must fail here, not skew dashboards. And the
written vectors' metrics (norms, zero vectors), fed by both write forms; and
the age of the oldest row waiting to be indexed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from core.domain import EntityKey, Metric, VersionRef
from core.record_columns import PackedStrings, RecordColumns
from registry.model import EmbeddingFamily, EmbeddingVersion, IndexVersion, Placement
from registry.snapshot import Snapshot
from shard_server import metrics
from shard_server.feature_store import FeatureShardStore
from shard_server.records import Record
from shard_server.service import ShardNode

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


FAMILY = EmbeddingFamily("fz", "user", 4, Metric.INNER_PRODUCT)
WRITTEN = IndexVersion("ixz", "v1", VersionRef("fz", "v1"), num_buckets=1)


def _node(tmp_path: Path) -> ShardNode:
    snap = Snapshot(
        families={"fz": FAMILY},
        embedding_versions={VersionRef("fz", "v1"): EmbeddingVersion("fz", "v1")},
        indexes={WRITTEN.ref: WRITTEN},
        placements={WRITTEN.ref: Placement(WRITTEN.ref, (("s1",),))},
    )
    registry = SimpleNamespace(snapshot=snap, refresh=lambda: snap, reread=lambda: snap)
    store = FeatureShardStore(tmp_path / "db")
    return ShardNode("s1", store, registry, tmp_path / "segments")  # type: ignore[arg-type]


def _vector_metrics() -> tuple[float, ...]:
    labels = {"index": str(WRITTEN.ref)}
    return tuple(
        REGISTRY.get_sample_value(name, labels) or 0.0
        for name in (
            "vecshard_vectors_written_total",
            "vecshard_zero_vectors_total",
            "vecshard_vector_norm_count",
        )
    )


@pytest.mark.parametrize("form", ["records", "columns"])
def test_every_write_form_feeds_the_written_vector_metrics(tmp_path: Path, form: str) -> None:
    """Bulk writes (backfills, `upsert_matrix`) carry most vectors: the
    zero-vector alert must see them as it sees record-by-record writes."""
    n = 10
    vectors = np.zeros((n, 4), np.float32)
    vectors[:6] = np.random.default_rng(0).normal(size=(6, 4))  # 4 zero vectors
    ids = [f"u{i}" for i in range(n)]
    versions = np.arange(1, n + 1, dtype=np.int64)
    node = _node(tmp_path)
    before = _vector_metrics()
    try:
        if form == "records":
            node.upsert(
                WRITTEN.ref,
                [
                    Record(EntityKey("acme", "user", e), v, int(sv), created_at=1)
                    for e, v, sv in zip(ids, vectors, versions, strict=True)
                ],
            )
        else:
            columns = RecordColumns(PackedStrings.of(ids), vectors, versions, np.ones(n, np.int64))
            node.upsert_columns(WRITTEN.ref, "acme", columns, np.zeros(n, np.int64))
    finally:
        node.close()
    written, zeros, norms = (a - b for a, b in zip(_vector_metrics(), before, strict=True))
    assert (written, zeros, norms) == (n, 4, n)


def test_the_oldest_unsealed_row_ages_while_sealing_does_not_happen(tmp_path: Path) -> None:
    """vecshard_indexing_lag_seconds is observed when a seal completes: when
    sealing stops it stops moving, and the indexing-lag alert could not fire.
    The unsealed age is read at each scrape, so it keeps growing."""
    from shard_server.partition import IndexPartition
    from shard_server.storage import ShardStore

    now = [1000.0]
    index = IndexVersion("ixage", "v1", VersionRef("fz", "v1"), num_buckets=1)
    store = ShardStore(tmp_path / "db")
    part = IndexPartition(index, FAMILY, store, tmp_path / "seg", clock=lambda: now[0])
    part.load()
    labels = {"index": part.metrics_label}

    def age() -> float | None:
        return REGISTRY.get_sample_value("vecshard_indexing_unsealed_age_seconds", labels)

    try:
        assert age() == 0.0  # nothing waits
        key = EntityKey("acme", "user", "u1")
        part.upsert([Record(key, np.ones(4, np.float32), 1, created_at=1)])
        now[0] += 700  # no seal ran
        assert age() == 700.0
        assert part.lifecycle.seal(force=True)
        assert age() == 0.0
    finally:
        store.close()
