"""Shard node metrics for capacity and membership: bytes on disk under the
data directory and free on its filesystem (computed at scrape time), and
lease losses (the shard's registration expired and it re-registered: every
coordinator stopped routing to it meanwhile)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shard_server.feature_cache import FeatureRowCache

LEASE_LOSSES = Counter(
    "vecshard_shard_lease_losses_total",
    "Times the shard's registration lease expired (etcd unreachable longer than the TTL) "
    "and it registered again",
)
T = TypeVar("T")


def _tree_bytes(root: Path) -> int:
    total = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue  # removed while scanning (a compaction, a dropped index)
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                else:
                    total += e.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


class _Watched(Collector, Generic[T]):
    """A collector reading one object of the process (retargeted by `_watch`)."""

    def __init__(self, target: T) -> None:
        self.target = target


_WATCHED: dict[type[Any], _Watched[Any]] = {}


def _watch(kind: type[_Watched[T]], target: T) -> None:
    """Registers one collector of `kind` per process; the last target named
    wins (a shard process has one data directory and one feature store)."""
    collector = _WATCHED.get(kind)
    if collector is None:
        collector = _WATCHED[kind] = kind(target)
        REGISTRY.register(collector)
    collector.target = target


class _DiskCollector(_Watched[Path]):
    def collect(self) -> Iterator[Metric]:
        used = GaugeMetricFamily(
            "vecshard_shard_data_bytes",
            "Bytes under the shard's data directory (RocksDB, segments)",
        )
        used.add_metric([], _tree_bytes(self.target))
        free = GaugeMetricFamily(
            "vecshard_shard_disk_free_bytes", "Free bytes on the data directory's filesystem"
        )
        size = GaugeMetricFamily(
            "vecshard_shard_disk_size_bytes", "Size of the data directory's filesystem"
        )
        try:
            usage = shutil.disk_usage(self.target)
            free.add_metric([], usage.free)
            size.add_metric([], usage.total)
        except OSError:
            pass
        yield from (used, free, size)


def watch_data_dir(data_dir: Path) -> None:
    _watch(_DiskCollector, data_dir)


class _FeatureCacheCollector(_Watched[FeatureRowCache]):
    def collect(self) -> Iterator[Metric]:
        used = GaugeMetricFamily(
            "vecshard_feature_cache_bytes",
            "Bytes of feature rows kept in memory beside RocksDB (counted: keys, values and "
            "Python's per-row overhead)",
        )
        used.add_metric([], self.target.used_bytes)
        budget = GaugeMetricFamily(
            "vecshard_feature_cache_budget_bytes",
            "The feature cache's budget (VECSHARD__SHARD__FEATURE_CACHE_MIB)",
        )
        budget.add_metric([], self.target.budget)
        groups = GaugeMetricFamily(
            "vecshard_feature_cache_groups",
            "Feature group versions by where their rows are read from: in_memory, warming "
            "(being copied: read from RocksDB meanwhile), over_budget (read lately, from "
            "RocksDB: they do not fit), idle (not in memory and not read lately)",
            labels=["state"],
        )
        for state, n in self.target.census().items():
            groups.add_metric([state], n)
        evictions = CounterMetricFamily(
            "vecshard_feature_cache_evictions",
            "Group versions whose copy was given up because they were not read for "
            "VECSHARD__SHARD__FEATURE_CACHE_IDLE_SECONDS and another needed the room",
        )
        evictions.add_metric([], self.target.evictions)
        yield from (used, budget, groups, evictions)


def watch_feature_cache(cache: FeatureRowCache) -> None:
    _watch(_FeatureCacheCollector, cache)
