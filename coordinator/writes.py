"""Upserts and deletes: to every replica of each record's bucket, in every
index version built on the embedding version, under the quorum protocol
(`coordinator.quorum`).

Records (or keys) of buckets with the same replicas travel together: each
replica of the set gets the same call, and the set is counted once. Every
destination of an index version is resolved before anything is written to
it, so a missing replica rejects the request instead of half-writing it.
What the request answers is what the first index version (by name) counted.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from coordinator import quality_metrics
from coordinator.access import check_access, own_keys
from coordinator.background import Background
from coordinator.buckets import key_bucket, record_buckets
from coordinator.config import Limits
from coordinator.dual_write import mirror_indexes
from coordinator.model import Access, WriteRecord
from coordinator.moves import move_deletes
from coordinator.quorum import ReplicaCall, run_quorum, write_members
from coordinator.records import checked_records
from coordinator.shard import Shard, ShardFactory
from coordinator.snapshots import RegistryView
from core.domain import EntityKey, VersionRef
from registry.model import IndexVersion, Placement, ShardMember
from registry.snapshot import Snapshot

Item = TypeVar("Item")
# replica shard ids → (their members, the buckets they share, what they get)
ReplicaSets = dict[tuple[str, ...], tuple[list[ShardMember], set[int], list[Item]]]


def now_micros() -> int:
    return time.time_ns() // 1000


def replica_sets(
    snap: Snapshot,
    index: IndexVersion,
    placement: Placement,
    items: Sequence[tuple[int, Item]],
) -> ReplicaSets[Item]:
    """Groups (bucket, item) pairs by the replica set of their bucket."""
    sets: ReplicaSets[Item] = {}
    for bucket, item in items:
        members = write_members(snap, index, bucket, placement)
        entry = sets.setdefault(tuple(m.shard_id for m in members), (members, set(), []))
        entry[1].add(bucket)
        entry[2].append(item)
    return sets


def replica_count(placement: Placement) -> int:
    return max(len(r) for r in placement.buckets)


class Writes:
    def __init__(
        self,
        registry: RegistryView,
        shards: ShardFactory,
        limits: Limits,
        on_write: Callable[[str], None],
        background: Background,
    ) -> None:
        self.registry = registry
        self.shards = shards
        self.limits = limits
        self.on_write = on_write
        self.background = background

    def _shard(self, m: ShardMember) -> Shard:
        return self.shards(m.shard_id, m.address)

    async def _quorum(
        self, index: IndexVersion, placement: Placement, calls: Sequence[ReplicaCall]
    ) -> tuple[int, int]:
        return await run_quorum(
            calls,
            index.write_quorum,
            replica_count(placement),
            self.on_write,
            self.background.spawn,
        )

    async def upsert(
        self, access: Access, embedding: VersionRef, records: Sequence[WriteRecord], timeout: float
    ) -> tuple[int, int]:
        """(written, ignored_stale)."""
        snap, family, indexes = await self.registry.embedding_indexes(
            embedding, writing=True, tenant_id=access.tenant_id
        )
        check_access(access, family, snap)
        mirrored = mirror_indexes(snap, embedding)  # dual-write: the first index still counts
        indexes = [*indexes, *mirrored]
        checked = checked_records(access, family, indexes, records, self.limits.input, now_micros())

        async def write(snap: Snapshot) -> tuple[int, int]:
            totals = (0, 0)
            for n, index in enumerate(indexes):
                placement = snap.placement(index.ref)
                calls = self._upsert_calls(snap, index, placement, checked, timeout)
                result = await self._quorum(index, placement, calls)
                if n == 0:
                    totals = result
            if mirrored:
                quality_metrics.DUAL_WRITES.labels(embedding.name, "upsert").inc(len(checked))
            return totals

        return await self.registry.retry_if_moved(snap, write)

    def _upsert_calls(
        self,
        snap: Snapshot,
        index: IndexVersion,
        placement: Placement,
        records: Sequence[WriteRecord],
        timeout: float,
    ) -> list[ReplicaCall]:
        buckets = record_buckets(snap, index, records)
        sets = replica_sets(
            snap, index, placement, [(b, (r, b)) for r, b in zip(records, buckets, strict=True)]
        )
        calls = [
            ReplicaCall(
                m.shard_id,
                frozenset(bs),
                functools.partial(self._shard(m).upsert, index.ref, recs, timeout),
                group,
            )
            for group, (members, bs, recs) in sets.items()
            for m in members
        ]
        if index.placement == "centroid":
            members = {
                m.shard_id: m
                for b in range(index.num_buckets)
                for m in write_members(snap, index, b, placement)
            }
            for d in move_deletes(placement, members, records, buckets):
                calls.append(
                    ReplicaCall(
                        d.shard_id,
                        frozenset(),
                        self._delete_run(
                            self._shard(members[d.shard_id]),
                            index.ref,
                            d.keys,
                            d.source_version,
                            timeout,
                            counted=False,
                        ),
                    )
                )
        return calls

    @staticmethod
    def _delete_run(
        shard: Shard,
        index: VersionRef,
        keys: Sequence[EntityKey],
        source_version: int,
        timeout: float,
        counted: bool = True,
    ) -> Callable[[], Awaitable[tuple[int, int]]]:
        async def run() -> tuple[int, int]:
            deleted = await shard.delete(index, keys, source_version, timeout)
            return (deleted if counted else 0), 0

        return run

    async def delete(
        self,
        access: Access,
        embedding: VersionRef,
        keys: Sequence[EntityKey],
        source_version: int,
        timeout: float,
    ) -> int:
        """Records removed (a record counted once per replica set holding it)."""
        snap, family, indexes = await self.registry.embedding_indexes(
            embedding, writing=True, tenant_id=access.tenant_id
        )
        check_access(access, family, snap)
        mirrored = mirror_indexes(snap, embedding)
        indexes = [*indexes, *mirrored]
        owned = own_keys(keys, access, family, "delete", self.limits.input)
        version = source_version or now_micros()

        async def remove(snap: Snapshot) -> int:
            deleted = 0
            for n, index in enumerate(indexes):
                placement = snap.placement(index.ref)
                if index.placement == "centroid":
                    # The bucket depends on the vector: every bucket's replicas
                    # get every key.
                    sets = replica_sets(
                        snap, index, placement, [(b, None) for b in range(index.num_buckets)]
                    )
                    groups = {g: (ms, bs, list(owned)) for g, (ms, bs, _) in sets.items()}
                else:
                    by_key = [(key_bucket(snap, index.num_buckets, k), k) for k in owned]
                    groups = replica_sets(snap, index, placement, by_key)
                calls = [
                    ReplicaCall(
                        m.shard_id,
                        frozenset(bs),
                        self._delete_run(self._shard(m), index.ref, ks, version, timeout),
                        group,
                    )
                    for group, (members, bs, ks) in groups.items()
                    for m in members
                ]
                result = await self._quorum(index, placement, calls)
                if n == 0:
                    deleted = result[0]
            if mirrored:
                quality_metrics.DUAL_WRITES.labels(embedding.name, "delete").inc(len(owned))
            return deleted

        return await self.registry.retry_if_moved(snap, remove)
