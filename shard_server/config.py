"""Shard server settings (defaults → file → VECSHARD__SHARD__* → flags).

Flat fields (so every one is settable from TOML, environment and flags);
`lifecycle_policy()` turns the storage-engine ones into the small frozen
objects the engine takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from registry.keys import DEFAULT_PREFIX
from shard_server.compaction import CompactionPolicy
from shard_server.lifecycle import LifecyclePolicy
from shard_server.planner import PlannerPolicy
from shard_server.sealed_segment import BuildSettings
from shard_server.storage import MIB, StoreMemory


@dataclass(frozen=True)
class ShardConfig:
    shard_id: str
    data_dir: Path
    etcd: str = "127.0.0.1:2379"
    etcd_prefix: str = DEFAULT_PREFIX
    listen: str = "127.0.0.1:0"
    # Address coordinators dial; defaults to the bound listen address.
    advertise: str = ""
    # A plaintext port with gRPC health only (Kubernetes probes cannot do
    # TLS); empty: none.
    health_listen: str = ""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    lease_ttl: int = 10
    max_workers: int = 16
    grace_seconds: float = 20.0
    log_level: str = "info"
    # -- storage engine ---------------------------------------------------
    # The growing segment is sealed at this many rows or this age.
    seal_rows: int = 20_000
    seal_age_seconds: float = 60.0
    # Smaller sealed segments stay flat (exact scan beats an index there).
    min_index_rows: int = 1_000
    # Threads of one index build (hnswlib add_items, faiss training).
    build_threads: int = 1
    # k-means centroids summarising a flat/hnsw segment (for score bounds).
    summary_centroids: int = 16
    # Compaction: merge once this many segments have < compact_small_rows
    # live rows; rewrite a segment once this share of its rows is deleted.
    compact_min_segments: int = 4
    compact_small_rows: int = 80_000
    compact_deleted_ratio: float = 0.2
    # Planner: scan a segment exactly when a filter leaves fewer rows than this
    # share (or count) of it.
    exact_below_selectivity: float = 0.03
    exact_below_rows: int = 1024
    # How often the maintenance thread checks the age threshold.
    maintenance_interval_seconds: float = 1.0
    # Search IVF-PQ segments on a GPU when faiss sees one (CPU is the default).
    use_gpu: bool = False
    # Share of live queries re-run exactly in the background to estimate
    # recall (vecshard_recall_estimate); 0 turns the re-check off.
    recall_sample_rate: float = 0.01
    # CPU the re-checks may use, as a share of one core: an exact re-check
    # scans the whole shard, so its cost grows with it (recall_check.CpuBudget).
    recall_sample_cpu_share: float = 0.02
    # Anti-entropy (shard_server.anti_entropy): how often this shard compares
    # its replicated buckets with a peer replica's and copies what differs;
    # each round reads every replicated row once. 0 turns it off.
    anti_entropy_interval_seconds: float = 300.0
    # How often embedding records past their family's ttl_seconds or
    # retention_days, and feature rows past their group's TTL, are deleted
    # (they read as missing already; this takes them out of search results,
    # disk and memory). 0: never.
    expiry_interval_seconds: float = 600.0
    # -- RocksDB's own memory (shard_server.storage.StoreMemory) -------------
    # Memtables of all column families together, one memtable, block cache.
    rocksdb_memtable_mib: int = 64
    rocksdb_write_buffer_mib: int = 16
    rocksdb_block_cache_mib: int = 32
    # Feature rows kept in memory beside RocksDB (shard_server.feature_cache):
    # groups that fit are read from a dict; 0 reads every group from RocksDB.
    feature_cache_mib: int = 256
    # A group version not read for this long gives its memory up to one that
    # is read (a model change's new version replacing the old one).
    feature_cache_idle_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not self.shard_id or "/" in self.shard_id:
            raise ValueError(f"shard_id {self.shard_id!r} must be non-empty and contain no '/'")
        if self.lease_ttl < 2:
            raise ValueError(f"lease_ttl {self.lease_ttl} must be ≥ 2 seconds")
        if self.max_workers < 1:
            raise ValueError("max_workers must be ≥ 1")
        if self.min_index_rows < 1 or self.build_threads < 1 or self.summary_centroids < 1:
            raise ValueError("min_index_rows, build_threads and summary_centroids must be ≥ 1")
        if not 0.0 <= self.recall_sample_rate <= 1.0:
            raise ValueError(f"recall_sample_rate {self.recall_sample_rate} must be in [0, 1]")
        if not 0.0 < self.recall_sample_cpu_share <= 1.0:
            raise ValueError(
                f"recall_sample_cpu_share {self.recall_sample_cpu_share} must be in (0, 1]"
            )
        for name in ("anti_entropy_interval_seconds", "expiry_interval_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} {getattr(self, name)} must be ≥ 0 (0 turns it off)")
        if self.maintenance_interval_seconds <= 0:
            raise ValueError("maintenance_interval_seconds must be > 0")
        self.lifecycle_policy()  # validates the engine settings
        self.store_memory()

    def store_memory(self) -> StoreMemory:
        return StoreMemory(
            memtable_bytes=self.rocksdb_memtable_mib * MIB,
            write_buffer_bytes=self.rocksdb_write_buffer_mib * MIB,
            block_cache_bytes=self.rocksdb_block_cache_mib * MIB,
            feature_cache_bytes=self.feature_cache_mib * MIB,
            feature_cache_idle_seconds=self.feature_cache_idle_seconds,
        )

    def lifecycle_policy(self) -> LifecyclePolicy:
        return LifecyclePolicy(
            seal_rows=self.seal_rows,
            seal_age_seconds=self.seal_age_seconds,
            build=BuildSettings(
                min_index_rows=self.min_index_rows,
                threads=self.build_threads,
                summary_centroids=self.summary_centroids,
                use_gpu=self.use_gpu,
            ),
            compaction=CompactionPolicy(
                min_segments=self.compact_min_segments,
                small_rows=self.compact_small_rows,
                deleted_ratio=self.compact_deleted_ratio,
            ),
            planner=PlannerPolicy(
                exact_below_selectivity=self.exact_below_selectivity,
                exact_below_rows=self.exact_below_rows,
            ),
        )
