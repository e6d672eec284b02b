"""The shard node: which index partitions it holds, opened from the registry
and RocksDB, and the operations the servicer calls. No protobuf here."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from protos.errors import FailedPrecondition
from registry.model import EntityKey, VersionRef
from registry.watcher import SnapshotCache
from shard_server.errors import UnknownIndex
from shard_server.flat_segment import SegmentResult
from shard_server.partition import IndexPartition, Lookup, Query, WriteResult
from shard_server.records import Record
from shard_server.storage import ShardStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexStats:
    index: VersionRef
    kind: str
    live_count: int
    tombstone_count: int


class ShardNode:
    def __init__(self, shard_id: str, store: ShardStore, registry: SnapshotCache) -> None:
        self.shard_id = shard_id
        self.store = store
        self.registry = registry
        self._partitions: dict[VersionRef, IndexPartition] = {}
        self._open_lock = threading.Lock()

    def load_all(self) -> int:
        """Opens every index version the registry places on this shard."""
        snap = self.registry.snapshot
        for ref, placement in snap.placements.items():
            if self.shard_id in placement.shards() and ref in snap.indexes:
                self.partition(ref)
        return len(self._partitions)

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
            part = IndexPartition(index, snap.family(index.embedding.name), self.store)
            count = part.load()
            log.info("opened index %s on shard %s: %d records", ref, self.shard_id, count)
            self._partitions[ref] = part
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

    def upsert(self, ref: VersionRef, records: Sequence[Record]) -> WriteResult:
        part = self.partition(ref)
        self._check_buckets(ref, {r.bucket for r in records})
        return part.upsert(records)

    def delete(
        self, ref: VersionRef, keys: Sequence[EntityKey], source_version: int
    ) -> WriteResult:
        return self.partition(ref).delete(keys, source_version)

    def search(self, ref: VersionRef, queries: Sequence[Query]) -> list[SegmentResult]:
        return self.partition(ref).search(queries)

    def batch_get(self, ref: VersionRef, keys: Sequence[EntityKey]) -> list[Lookup]:
        return self.partition(ref).get(keys)

    def describe(self) -> list[IndexStats]:
        return [
            IndexStats(ref, p.segment.kind, len(p.segment), p.tombstones)
            for ref, p in sorted(
                self._partitions.items(), key=lambda kv: (kv[0].name, kv[0].version)
            )
        ]
