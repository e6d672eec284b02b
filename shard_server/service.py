"""The shard node: which index partitions it holds, opened from the registry,
RocksDB and the segment files, the maintenance thread that seals and compacts
them, and the operations the servicer calls. No protobuf here."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import tracing
from core.domain import EntityKey, Metric, VersionRef
from core.embedding_columns import EmbeddingColumns
from core.errors import FailedPrecondition, VecshardError
from core.limits import DEFAULT_LIMITS, Limits, check_summary_lease
from core.record_columns import RecordColumns
from registry.model import Status
from registry.snapshot import Snapshot
from registry.watcher import SnapshotCache
from shard_server.errors import UnknownIndex
from shard_server.lifecycle import LifecyclePolicy
from shard_server.lookup_columns import read_embeddings, record_keys
from shard_server.maintenance import Maintainer
from shard_server.memory import release_free_memory
from shard_server.model import Lookup, Query, SearchResult, WriteResult
from shard_server.partition import IndexPartition
from shard_server.quality_metrics import observe_vectors
from shard_server.recall_check import RecallCheck, RecallSampler, check_recall
from shard_server.records import Record
from shard_server.retention import drop_index_data
from shard_server.segment import Segment
from shard_server.storage import ShardStore
from shard_server.summary import BucketStats, SegmentSummary, merge_bucket_stats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentInfo:
    id: str
    kind: str
    state: str
    rows: int
    deleted: int
    nbytes: int
    summary: SegmentSummary | None = None
    mapped_bytes: int = 0


@dataclass(frozen=True)
class IndexStats:
    index: VersionRef
    kind: str
    live_count: int
    tombstone_count: int
    metric: Metric | None = None
    dimension: int = 0
    segments: list[SegmentInfo] = field(default_factory=list)
    # Only with summaries.
    buckets: dict[int, BucketStats] = field(default_factory=dict)
    # The write sequence the summaries cover (IndexPartition.serve_summaries).
    summary_sequence: int | None = None

    @property
    def memory_bytes(self) -> int:
        return sum(s.nbytes for s in self.segments)

    @property
    def mapped_bytes(self) -> int:
        return sum(s.mapped_bytes for s in self.segments)

    @property
    def bytes_per_vector(self) -> float:
        """Memory per row held (deleted rows not yet compacted away count)."""
        rows = sum(s.rows for s in self.segments)
        return self.memory_bytes / rows if rows else 0.0


def _segment_info(seg: Segment, summary: SegmentSummary | None) -> SegmentInfo:
    return SegmentInfo(
        seg.id,
        seg.kind,
        seg.state,
        len(seg),
        seg.deleted_count,
        seg.nbytes(),
        summary,
        seg.mapped_bytes(),
    )


# How long a caller that does not say may use a summary (coordinators say).
DEFAULT_SUMMARY_LEASE = 2.0


class ShardNode:
    def __init__(
        self,
        shard_id: str,
        store: ShardStore,
        registry: SnapshotCache,
        segments_dir: Path,
        policy: LifecyclePolicy | None = None,
        maintenance_interval: float = 1.0,
        limits: Limits = DEFAULT_LIMITS,
        recall_sample_rate: float = 0.0,
        recall_sample_cpu_share: float = 0.02,
    ) -> None:
        self.shard_id = shard_id
        self.limits = limits
        self.store = store
        self.registry = registry
        self.segments_dir = segments_dir
        self.policy = policy or LifecyclePolicy()
        self._partitions: dict[VersionRef, IndexPartition] = {}
        self._open_lock = threading.Lock()
        self._drop_lock = threading.Lock()
        self.maintainer = Maintainer(lambda: list(self._partitions.values()), maintenance_interval)
        self.sampler = RecallSampler(recall_sample_rate, cpu_share=recall_sample_cpu_share)
        # Per index version: attribute names writes carry that the registry
        # does not declare (metadata), confirmed by a re-read.
        self._metadata_only: dict[VersionRef, set[str]] = {}

    def start_maintenance(self) -> None:
        self.maintainer.start()
        self.sampler.start()

    def close(self, timeout: float = 5.0) -> None:
        self.sampler.stop()
        self.maintainer.stop(timeout)

    def on_registry_change(self, snap: Snapshot) -> None:
        self.drop_archived(snap)
        self.extend_schemas(snap)

    def extend_schemas(self, snap: Snapshot) -> None:
        """Open partitions whose index version gained attributes take them."""
        for ref, part in list(self._partitions.items()):
            index = snap.indexes.get(ref)
            if index is not None and set(index.attributes) > set(part.index.attributes):
                part.extend_schema(index)
                self._metadata_only.get(ref, set()).difference_update(index.attributes)

    def open_partitions(self) -> list[VersionRef]:
        return list(self._partitions)

    def drop_archived(self, snap: Snapshot) -> list[VersionRef]:
        """Closes and deletes the data of every index version the registry
        archived (registry listener; also at start-up, for a drop cut short)."""
        dropped = []
        # One drop at a time: a second caller (a registry listener on another
        # thread) found the partition popped, its directory still there, and
        # deleted it while the first waited for a seal that was writing files.
        with self._drop_lock:
            for ref, index in snap.indexes.items():
                if index.status is not Status.ARCHIVED:
                    continue
                with self._open_lock:
                    part = self._partitions.pop(ref, None)
                if part is not None:
                    part.retire()  # a write, copy or seal in progress lands first, none after
                directory = self._directory(ref)
                if part is None and not directory.exists():
                    continue
                drop_index_data(self.store, ref, directory)
                self.sampler.forget(ref)
                dropped.append(ref)
        return dropped

    def load_all(self) -> int:
        """Opens every index version the registry places on this shard. One
        that cannot be opened (e.g. invalid parameters) is logged and left
        closed — its requests fail with the reason — rather than keeping the
        shard from serving the others."""
        snap = self.registry.snapshot
        self.drop_archived(snap)
        for ref, placement in snap.placements.items():
            index = snap.indexes.get(ref)
            if index is None or index.status is Status.ARCHIVED:
                continue
            if self.shard_id in placement.shards():
                try:
                    self.partition(ref)
                except VecshardError as exc:
                    log.error("index %s not opened on shard %s: %s", ref, self.shard_id, exc)
        return len(self._partitions)

    def _directory(self, ref: VersionRef) -> Path:
        """One directory per index version; names are sanitized and made
        unique with a hash (index names may hold any character)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{ref.name}@{ref.version}")
        digest = hashlib.blake2b(f"{ref.name}\0{ref.version}".encode(), digest_size=6).hexdigest()
        return self.segments_dir / f"{safe[:80]}-{digest}"

    def partition(self, ref: VersionRef) -> IndexPartition:
        part = self._partitions.get(ref)
        if part is not None:
            return part
        with self._open_lock:
            part = self._partitions.get(ref)
            if part is not None:
                return part
            snap = self.registry.snapshot
            if ref not in snap.indexes:
                snap = self.registry.refresh()  # created after our last watch event
            if ref not in snap.indexes:
                raise UnknownIndex(f"shard {self.shard_id}: unknown index version {ref}")
            index = snap.indexes[ref]
            if index.status is Status.ARCHIVED:
                raise FailedPrecondition(
                    f"index version {ref} is archived (rollback retention ended); its data is gone"
                )
            part = IndexPartition(
                index,
                snap.family(index.embedding.name),
                self.store,
                self._directory(ref),
                self.policy,
                limits=self.limits,
            )
            count = part.load()
            part.on_seal_due = self.maintainer.wake
            log.info("opened index %s on shard %s: %d records", ref, self.shard_id, count)
            self._partitions[ref] = part
            self.maintainer.wake()
            return part

    def _check_buckets(self, ref: VersionRef, buckets: set[int]) -> None:
        placement = self.registry.snapshot.placements.get(ref)
        if placement is None:
            placement = self.registry.refresh().placement(ref)
        owned = set(placement.buckets_of(self.shard_id))
        foreign = buckets - owned
        if foreign:
            raise FailedPrecondition(
                f"shard {self.shard_id} does not hold bucket(s) {sorted(foreign)} of {ref}; "
                f"it holds {sorted(owned)} (stale placement at the caller?)"
            )

    def upsert(self, ref: VersionRef, records: Sequence[Record], writer: str = "") -> WriteResult:
        part = self.partition(ref)
        self._check_buckets(ref, {r.bucket for r in records})
        known = self._metadata_only.setdefault(ref, set())
        unknown = {a for r in records for a in r.attributes} - set(part.index.attributes) - known
        if unknown:
            # An attribute added a moment ago that the watch has not brought
            # yet (a record written now must be filterable on it), or plain
            # metadata: asked once per name, not on every write.
            self.extend_schemas(self.registry.reread())
            known |= unknown - set(part.index.attributes)
        result = part.upsert(records, writer)
        if records:  # validated by the upsert: one dimension, finite
            observe_vectors(part.metrics_label, np.stack([r.vector for r in records]))
        return result

    def upsert_columns(
        self,
        ref: VersionRef,
        tenant_id: str,
        records: RecordColumns,
        buckets: np.ndarray,
        writer: str = "",
    ) -> WriteResult:
        part = self.partition(ref)
        self._check_buckets(ref, set(np.unique(buckets).tolist()))
        result = part.upsert_columns(tenant_id, records, buckets, writer)
        # As `upsert` does: bulk writes (backfills, upsert_matrix) carry most
        # vectors, and a zero-vector alert blind to them misses a broken model.
        observe_vectors(part.metrics_label, records.vectors)
        return result

    def delete(
        self, ref: VersionRef, keys: Sequence[EntityKey], source_version: int
    ) -> WriteResult:
        return self.partition(ref).delete(keys, source_version)

    def search(self, ref: VersionRef, queries: Sequence[Query]) -> list[SearchResult]:
        part = self.partition(ref)
        with tracing.span(
            "shard.search", shard_id=self.shard_id, index=str(ref), queries=len(queries)
        ):
            results = part.search(queries)
        self.sampler.offer(part, queries, results)
        return results

    def check_recall(self, ref: VersionRef, k: int, sample: int, seed: int) -> RecallCheck:
        return check_recall(self.partition(ref), k, sample, seed)

    def batch_get(self, ref: VersionRef, keys: Sequence[EntityKey]) -> list[Lookup]:
        return self.partition(ref).get(keys)

    def batch_get_columns(
        self,
        ref: VersionRef,
        keys: Sequence[EntityKey],
        include_vectors: bool,
        include_attributes: bool,
    ) -> EmbeddingColumns:
        """`batch_get` as arrays."""
        part = self.partition(ref)
        return read_embeddings(
            self.store,
            record_keys(ref, keys),
            part.family.dimension,
            include_vectors,
            include_attributes,
        )

    def flush(self, ref: VersionRef, compact: bool) -> IndexStats:
        """Seals (and compacts) the index version, and writes RocksDB's
        memtables to disk: after a Flush the shard holds what it serves."""
        part = self.partition(ref)
        part.flush(compact)
        self.store.flush_memtables()
        release_free_memory()
        return self._stats(ref, part, summary_lease=None)

    def _stats(
        self,
        ref: VersionRef,
        part: IndexPartition,
        summary_lease: float | None,
        holder: str = "",
    ) -> IndexStats:
        """Stats of one index version; with `summary_lease`, also the segment
        summaries, handed out under that lease (shard_server.summary_leases)."""
        sequence = None
        if summary_lease is None:
            segments = [_segment_info(s, None) for s in part.current_segments()]
            buckets = {}
        else:
            served, sequence = part.serve_summaries(summary_lease, holder)
            segments = [_segment_info(seg, summary) for seg, summary in served]
            buckets = merge_bucket_stats(s.buckets for _, s in served if s is not None)
        return IndexStats(
            ref,
            part.index.kind.value,
            part.live_count,
            part.tombstones,
            part.family.metric,
            part.family.dimension,
            segments,
            buckets,
            sequence,
        )

    def describe(
        self,
        with_summaries: bool = False,
        summary_lease: float = DEFAULT_SUMMARY_LEASE,
        holder: str = "",
    ) -> list[IndexStats]:
        """Every open index version; with summaries, the caller (`holder`) may
        skip this shard on them for `summary_lease` seconds and no longer."""
        if with_summaries:
            check_summary_lease(summary_lease, "describe")
        lease = summary_lease if with_summaries else None
        return [
            self._stats(ref, p, lease, holder)
            for ref, p in sorted(
                self._partitions.items(), key=lambda kv: (kv[0].name, kv[0].version)
            )
        ]
