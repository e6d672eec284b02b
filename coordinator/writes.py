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

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence

import numpy as np

from coordinator import quality_metrics
from coordinator.access import check_access, own_keys
from coordinator.background import Background
from coordinator.buckets import column_buckets, key_bucket, record_buckets
from coordinator.config import Limits
from coordinator.model import Access, WriteRecord
from coordinator.moves import MoveDelete, move_deletes, move_deletes_of
from coordinator.packed_records import checked_columns
from coordinator.quorum import (
    ReplicaCall,
    ReplicaRepair,
    column_replica_sets,
    replica_call,
    replica_count,
    replica_sets,
    run_quorum,
    write_members,
)
from coordinator.records import check_source_version, checked_records
from coordinator.shard import Shard, ShardFactory
from coordinator.snapshots import RegistryView
from core.domain import EntityKey, VersionRef
from core.errors import FailedPrecondition
from core.record_columns import RecordColumns
from registry.model import IndexVersion, Placement, ShardMember
from registry.snapshot import Snapshot

# Index versions of one embedding version written at once (`_write_all`).
INDEX_WRITES_IN_FLIGHT = 4


def now_micros() -> int:
    return time.time_ns() // 1000


class Writes:
    def __init__(
        self,
        registry: RegistryView,
        shards: ShardFactory,
        limits: Limits,
        on_write: Callable[[str], None],
        background: Background,
        repair: ReplicaRepair | None = None,
    ) -> None:
        self.registry = registry
        self.shards = shards
        # Input limits (`limits.input`: key, attribute, batch sizes) and shedding.
        self.limits = limits
        self.on_write = on_write
        self.background = background
        self.repair = repair

    def _sender(
        self, write: Callable[[Shard], Awaitable[tuple[int, int]]]
    ) -> Callable[[str, str], Awaitable[tuple[int, int]]]:
        """`write` to a shard at an address (`quorum.replica_call`)."""
        return lambda sid, address: write(self.shards(sid, address))

    async def _quorum(
        self, index: IndexVersion, placement: Placement, calls: Sequence[ReplicaCall]
    ) -> tuple[int, int]:
        return await run_quorum(
            calls,
            index.write_quorum,
            replica_count(placement),
            self.on_write,
            self.background.spawn,
            self.repair,
        )

    async def _write_all(
        self,
        snap: Snapshot,
        indexes: Sequence[IndexVersion],
        calls_for: Callable[[Snapshot, int, IndexVersion, Placement], list[ReplicaCall]],
    ) -> tuple[int, int]:
        """Every index version under the quorum protocol, up to
        `INDEX_WRITES_IN_FLIGHT` at once; answers what the first counted, or
        raises the first index version's error. Once more on a fresh
        snapshot if shards moved.

        Why together: a shard may hold a write's acknowledgement until the
        summary leases it escapes expire (`shard_server.summary_leases`, up
        to a lease), once per index version — in turn, 11 index versions of
        one embedding version made a 20-row upsert wait 9–10 s with two
        coordinators. Why bounded: each held acknowledgement keeps one of a
        shard's RPC threads waiting. Acknowledged means every index version
        took it either way; a failed write may have reached some of them
        either way (a retry is idempotent by source_version)."""

        async def write(snap: Snapshot) -> tuple[int, int]:
            gate = asyncio.Semaphore(INDEX_WRITES_IN_FLIGHT)

            async def one(n: int, index: IndexVersion) -> tuple[int, int]:
                async with gate:
                    placement = snap.placement(index.ref)
                    return await self._quorum(
                        index, placement, calls_for(snap, n, index, placement)
                    )

            results = await asyncio.gather(
                *(one(n, index) for n, index in enumerate(indexes)), return_exceptions=True
            )
            done: list[tuple[int, int]] = []
            for result in results:
                if isinstance(result, BaseException):
                    raise result
                done.append(result)
            return done[0] if done else (0, 0)

        return await self.registry.retry_if_moved(snap, write)

    async def upsert(
        self, access: Access, embedding: VersionRef, records: Sequence[WriteRecord], timeout: float
    ) -> tuple[int, int]:
        """(written, ignored_stale)."""
        snap, family, indexes, mirrored = await self.registry.write_indexes(
            embedding, access.tenant_id
        )  # mirrored: dual-write's copies; the first index still counts
        check_access(access, family, snap)
        checked = checked_records(
            access, family, indexes, records, self.limits.input, now_micros(), mirrored
        )
        indexes = [*indexes, *mirrored]
        # Centroids trained a moment ago may not have reached the watch yet.
        snap, buckets = await self.registry.fresh(
            lambda s: [record_buckets(s, index, checked) for index in indexes],
            (FailedPrecondition,),
        )

        def calls(snap: Snapshot, n: int, index: IndexVersion, p: Placement) -> list[ReplicaCall]:
            sets = replica_sets(
                snap, index, p, [(b, (r, b)) for r, b in zip(checked, buckets[n], strict=True)]
            )
            out = [
                replica_call(
                    m,
                    bs,
                    group,
                    self._sender(functools.partial(_upsert, index.ref, recs, timeout)),
                )
                for group, (members, bs, recs) in sets.items()
                for m in members
            ]
            if index.placement == "centroid":
                out += self._move_delete_calls(
                    snap,
                    index,
                    p,
                    move_deletes(p, self._all_members(snap, index, p), checked, buckets[n]),
                    timeout,
                    out,
                    dict(zip((r.key for r in checked), buckets[n], strict=True)),
                )
            return out

        result = await self._write_all(snap, indexes, calls)
        if mirrored:
            quality_metrics.DUAL_WRITES.labels(embedding.name, "upsert").inc(len(checked))
        return result

    async def upsert_columns(
        self, access: Access, embedding: VersionRef, records: RecordColumns, timeout: float
    ) -> tuple[int, int]:
        """`upsert` for records as columns: validated, placed and split per
        replica set with array operations; each shard gets its rows as one
        slice of the columns. (written, ignored_stale)."""
        snap, family, indexes, mirrored = await self.registry.write_indexes(
            embedding, access.tenant_id
        )  # mirrored: dual-write's copies; the first index still counts
        check_access(access, family, snap)
        checked = checked_columns(
            access,
            family,
            indexes,
            records,
            self.limits.input,
            self.limits.input.max_records_per_request,
            now_micros(),
            mirrored,
        )
        indexes = [*indexes, *mirrored]
        tenant = access.tenant_id
        snap, buckets = await self.registry.fresh(
            lambda s: [column_buckets(s, index, tenant, checked) for index in indexes],
            (FailedPrecondition,),
        )

        def calls(snap: Snapshot, n: int, index: IndexVersion, p: Placement) -> list[ReplicaCall]:
            out = []
            for group, (members, bs, rows) in column_replica_sets(
                snap, index, p, buckets[n]
            ).items():
                part = checked if rows.shape[0] == len(checked) else checked.take(rows)
                send = self._sender(
                    functools.partial(
                        _upsert_columns, index.ref, tenant, part, buckets[n][rows], timeout
                    )
                )
                out += [replica_call(m, bs, group, send) for m in members]
            if index.placement == "centroid":
                keys = [EntityKey(tenant, checked.entity_type, i) for i in checked.entity_ids]
                moves = move_deletes_of(
                    p, self._all_members(snap, index, p), keys, buckets[n], checked.source_versions
                )
                key_buckets = dict(zip(keys, buckets[n].tolist(), strict=True))
                out += self._move_delete_calls(snap, index, p, moves, timeout, out, key_buckets)
            return out

        result = await self._write_all(snap, indexes, calls)
        if mirrored:
            quality_metrics.DUAL_WRITES.labels(embedding.name, "upsert").inc(len(checked))
        return result

    @staticmethod
    def _all_members(snap: Snapshot, index: IndexVersion, p: Placement) -> dict[str, ShardMember]:
        return {
            m.shard_id: m
            for b in range(index.num_buckets)
            for m in write_members(snap, index, b, p)
        }

    def _move_delete_calls(
        self,
        snap: Snapshot,
        index: IndexVersion,
        placement: Placement,
        moves: Sequence[MoveDelete],
        timeout: float,
        writes: Sequence[ReplicaCall],
        key_buckets: Mapping[EntityKey, int],
    ) -> list[ReplicaCall]:
        """Centroid placement: the older copies of moved keys go (uncounted:
        a call with no replica set counts nothing, `QuorumTally.ack`), but
        only once the write of their new copies (the replica set of their
        new bucket, `key_buckets`) was acknowledged somewhere (`run_quorum`
        holds them until then, and drops them if that write fails: the old
        copy is all the key has). Gated per replica set, not on every write
        of the request: one failing replica set kept the old copies of keys
        whose new copies had landed elsewhere — two live copies.
        One that fails for a passing reason is repaired under the same gate,
        at the address the shard is registered at then (`replica_call`: a
        retry bound to the first address never reached a shard restarted
        elsewhere): else the old copy stayed searchable for good (one
        replica per bucket has no peer for anti-entropy to compare it with)."""
        members = self._all_members(snap, index, placement)
        group_of = {b: c.group for c in writes if c.group is not None for b in c.buckets}
        every = frozenset(group_of.values())
        out = []
        for d in moves:
            by_group: dict[Hashable, list[EntityKey]] = {}
            for key in d.keys:
                by_group.setdefault(group_of.get(int(key_buckets[key])), []).append(key)
            for group, keys in by_group.items():
                send = self._sender(
                    functools.partial(_delete, index.ref, tuple(keys), d.source_version, timeout)
                )
                after = frozenset((group,)) if group is not None else every
                out.append(replica_call(members[d.shard_id], (), None, send, after))
        return out

    async def delete(
        self,
        access: Access,
        embedding: VersionRef,
        keys: Sequence[EntityKey],
        source_version: int,
        timeout: float,
    ) -> int:
        """Records removed (a record counted once per replica set holding it)."""
        snap, family, indexes, mirrored = await self.registry.write_indexes(
            embedding, access.tenant_id
        )
        check_access(access, family, snap)
        indexes = [*indexes, *mirrored]
        owned = own_keys(keys, access, family, "delete", self.limits.input)
        check_source_version(source_version, "delete")
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
                    replica_call(
                        m,
                        bs,
                        group,
                        self._sender(functools.partial(_delete, index.ref, ks, version, timeout)),
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


# A replica's write given its shard (`Writes._sender`), the write's other
# arguments bound first.


def _upsert(
    index: VersionRef, records: Sequence[tuple[WriteRecord, int]], timeout: float, shard: Shard
) -> Awaitable[tuple[int, int]]:
    return shard.upsert(index, records, timeout)


async def _delete(
    index: VersionRef, keys: Sequence[EntityKey], version: int, timeout: float, shard: Shard
) -> tuple[int, int]:
    return await shard.delete(index, keys, version, timeout), 0


def _upsert_columns(
    index: VersionRef,
    tenant: str,
    records: RecordColumns,
    buckets: np.ndarray,
    timeout: float,
    shard: Shard,
) -> Awaitable[tuple[int, int]]:
    return shard.upsert_columns(index, tenant, records, buckets, timeout)
