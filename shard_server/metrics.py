"""Prometheus metrics of the storage engine (`vecshard_shard_*`).

Counters and histograms are observed where things happen; segment gauges
are computed at scrape time from the live partitions (a collector), so they
are never stale and need no bookkeeping on the write path. Labels name index
versions, kinds, states, plans and outcomes — never keys, tenants or vectors.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shard_server.growing_segment import GrowingSegment

RECORDS = Counter(
    "vecshard_shard_records_total",
    "Records handled by writes, by index version and outcome (written, ignored_stale, deleted)",
    ["index", "outcome"],
)
BUILD_SECONDS = Histogram(
    "vecshard_shard_build_seconds",
    "Time to build a sealed segment, by index version, operation (seal, compact, train) and kind",
    ["index", "operation", "kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
SEGMENT_SEARCH_SECONDS = Histogram(
    "vecshard_shard_segment_search_seconds",
    "Time one segment takes to answer one query, by segment kind and plan",
    ["kind", "plan"],
    buckets=(0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 1),
)

_SEGMENT_SEARCH_CHILDREN: dict[tuple[str, str], Histogram] = {}


class _Planned(Protocol):
    @property
    def plan(self) -> str: ...


def observe_segment_batch(kind: str, answers: Sequence[_Planned], seconds: float) -> None:
    """A segment answered a batch in `seconds`: each query is observed with
    its share, under its plan (children cached: `labels()` costs a lookup) —
    once per plan with the number of its queries, not once per query."""
    if not answers:
        return
    share = seconds / len(answers)
    per_plan: dict[str, int] = {}
    for a in answers:
        per_plan[a.plan] = per_plan.get(a.plan, 0) + 1
    for plan, times in per_plan.items():
        child = _SEGMENT_SEARCH_CHILDREN.get((kind, plan))
        if child is None:
            child = SEGMENT_SEARCH_SECONDS.labels(kind, plan)
            _SEGMENT_SEARCH_CHILDREN[(kind, plan)] = child
        observe_times(child, share, times)


def observe_times(child: Histogram, amount: float, times: int) -> None:
    """`child.observe(amount)` repeated `times` times, as two increments.
    prometheus_client has no counted observe, so this adds to the labelled
    histogram's own sum and bucket values (its attributes since 0.4). A
    release without them gets the repeated calls: a search never fails for
    a metric (`tests/test_shard_metrics.py` says when the fast path is lost)."""
    try:
        total, buckets, bounds = child._sum, child._buckets, child._upper_bounds
    except AttributeError:
        for _ in range(times):
            child.observe(amount)
        return
    child._raise_if_not_observable()
    total.inc(amount * times)
    buckets[bisect.bisect_left(bounds, amount)].inc(times)


STORAGE_WRITE_FAILURES = Counter(
    "vecshard_shard_storage_write_failures_total",
    "Write batches RocksDB refused, by reason (disk_full, io_error): after one, the shard "
    "refuses writes until it is restarted (with free space); reads go on",
    ["reason"],
)
LEASE_WAITS = Counter(
    "vecshard_shard_summary_lease_waits_total",
    "Writes whose acknowledgement waited for coordinators' summaries to expire "
    "(a row outside the summaries they may skip this shard on)",
    ["index"],
)
LEASE_WAIT_SECONDS = Histogram(
    "vecshard_shard_summary_lease_wait_seconds",
    "How long such a write's acknowledgement waited",
    ["index"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)


class SegmentLike(Protocol):
    kind: str

    @property
    def state(self) -> str: ...

    def __len__(self) -> int: ...

    @property
    def deleted_count(self) -> int: ...

    def nbytes(self) -> int: ...


class Observed(Protocol):
    """What the collector reads from a partition."""

    @property
    def metrics_label(self) -> str: ...

    def current_segments(self) -> Iterable[SegmentLike]: ...


class _SegmentCollector(Collector):
    def __init__(self) -> None:
        self._partitions: weakref.WeakSet[Observed] = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, partition: Observed) -> None:
        with self._lock:
            self._partitions.add(partition)

    def collect(self) -> Iterator[Metric]:
        labels = ["index", "kind", "state"]
        count = GaugeMetricFamily("vecshard_shard_segments", "Segments", labels=labels)
        rows = GaugeMetricFamily(
            "vecshard_shard_segment_rows", "Rows in segments, deleted ones included", labels=labels
        )
        deleted = GaugeMetricFamily(
            "vecshard_shard_segment_deleted_rows",
            "Deleted rows still held by segments (until compaction)",
            labels=labels,
        )
        size = GaugeMetricFamily(
            "vecshard_shard_segment_bytes", "Memory held by segments (estimate)", labels=labels
        )
        ratio = GaugeMetricFamily(
            "vecshard_shard_tombstone_ratio",
            "Deleted rows / rows across an index version's segments",
            labels=["index"],
        )
        # Read at every scrape, not when a seal completes (as the indexing lag
        # histogram is): when sealing stops, this one keeps growing.
        unindexed = GaugeMetricFamily(
            "vecshard_indexing_unsealed_age_seconds",
            "Age of the oldest row not yet in a sealed (indexed) segment, 0 when none waits: "
            "a write's wait to be indexed, as it grows",
            labels=["index"],
        )
        with self._lock:
            partitions = list(self._partitions)
        for part in partitions:
            totals: dict[tuple[str, str], list[int]] = {}
            oldest = 0.0
            for seg in part.current_segments():
                if isinstance(seg, GrowingSegment):  # growing, or frozen being sealed
                    oldest = max(oldest, seg.unindexed_age())
                t = totals.setdefault((seg.kind, seg.state), [0, 0, 0, 0])
                t[0] += 1
                t[1] += len(seg)
                t[2] += seg.deleted_count
                t[3] += seg.nbytes()
            label = part.metrics_label
            for (kind, state), (n, r, d, b) in sorted(totals.items()):
                for family, value in ((count, n), (rows, r), (deleted, d), (size, b)):
                    family.add_metric([label, kind, state], value)
            all_rows = sum(t[1] for t in totals.values())
            all_deleted = sum(t[2] for t in totals.values())
            ratio.add_metric([label], all_deleted / all_rows if all_rows else 0.0)
            unindexed.add_metric([label], oldest)
        yield from (count, rows, deleted, size, ratio, unindexed)


COLLECTOR = _SegmentCollector()
REGISTRY.register(COLLECTOR)


def watch(partition: Observed) -> None:
    """Includes a partition in the segment gauges for as long as it lives."""
    COLLECTOR.add(partition)


CATCH_UP = Counter(
    "vecshard_shard_catch_up_total",
    "What this shard copied from peer replicas when it started, by kind (records and "
    "tombstones of index versions, feature rows)",
    ["kind"],
)
CATCH_UP_SECONDS = Gauge(
    "vecshard_shard_catch_up_seconds",
    "How long this shard's catch-up from peer replicas took when it last started (both passes)",
)

ANTI_ENTROPY_ROUNDS = Counter(
    "vecshard_shard_anti_entropy_rounds_total",
    "Anti-entropy rounds this shard ran against its peer replicas, by outcome (done; failed: "
    "a peer could not be compared or copied from, retried next round)",
    ["outcome"],
)
ANTI_ENTROPY_BUCKETS = Counter(
    "vecshard_shard_anti_entropy_buckets_total",
    "Buckets an anti-entropy round compared with a peer replica, by kind (records, feature_rows) "
    "and result (same, differed: copied from the peer)",
    ["kind", "result"],
)
ANTI_ENTROPY_ROWS = Counter(
    "vecshard_shard_anti_entropy_rows_total",
    "Records, tombstones and feature rows anti-entropy copied from peer replicas (each one a "
    "write a replica of its bucket had missed)",
    ["kind"],
)
EXPIRY_SWEEPS = Counter(
    "vecshard_shard_expiry_sweeps_total",
    "Completed sweeps for records and feature rows past their lifetimes (one every "
    "expiry_interval_seconds: a flat line means the timer stopped)",
)
RECORDS_EXPIRED = Counter(
    "vecshard_shard_records_expired_total",
    "Embedding records deleted (without a tombstone) because they were older than their "
    "family's ttl_seconds or retention_days",
)
FEATURE_ROWS_EXPIRED = Counter(
    "vecshard_shard_feature_rows_expired_total",
    "Feature rows deleted from disk and the row cache because they were past their group's TTL",
)
FEATURE_GROUPS_DROPPED = Counter(
    "vecshard_shard_feature_groups_dropped_total",
    "Retired feature group versions whose rows this shard dropped",
)
FEATURE_BYTES_DROPPED = Counter(
    "vecshard_shard_feature_dropped_bytes_total",
    "Bytes of SST files freed by dropping retired feature group versions",
)
FEATURE_ROWS_ERASED = Counter(
    "vecshard_shard_feature_rows_erased_refused_total",
    "Feature rows refused (written or copied) because their entity was erased after their "
    "feature_timestamp: an erased subject's history replayed",
)


QUERIES_REFUSED = Counter(
    "vecshard_shard_queries_refused_total",
    "Queries of a search batch the shard's access checks refused while answering the rest "
    "(a coordinator and this shard disagreeing about a grant, or a coordinator's bug); "
    "calls refused whole count in vecshard_grpc_requests_total",
)
