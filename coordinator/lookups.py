"""BatchGetEmbeddings: fetch stored records by key, with a status per key.

Each bucket is read from its first serving replica; a replica that is
unreachable is answered for by the failover rule searches use
(`coordinator.failover`). Where several shards answer for one key (centroid
placement asks them all; a cover may overlap) the answers are reconciled by
`better`; records past the family's TTL read as missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from coordinator.access import check_access, own_keys
from coordinator.buckets import key_bucket
from coordinator.config import Limits
from coordinator.failover import alternates, failover_cover
from coordinator.model import Access, Lookup, LookupStatus
from coordinator.shard import ShardFactory
from coordinator.snapshots import RegistryView
from coordinator.writes import now_micros
from core.domain import EntityKey, VersionRef
from core.errors import Unavailable
from registry.model import IndexVersion, Placement
from registry.snapshot import Snapshot

_RANK = {LookupStatus.MISSING: 0, LookupStatus.DELETED: 1, LookupStatus.FOUND: 2}


def better(a: Lookup | None, b: Lookup) -> Lookup:
    """When several shards answer for a key: found beats deleted beats
    missing; between two found copies, the newer source_version."""
    if a is None or _RANK[b.status] > _RANK[a.status]:
        return b
    if a.status is b.status is LookupStatus.FOUND and a.record and b.record:
        return b if b.record.source_version > a.record.source_version else a
    return a


def expire(
    keys: Sequence[EntityKey], found: Sequence[Lookup | None], ttl_seconds: int, now_us: int
) -> list[Lookup]:
    """Unanswered keys, and records created before the TTL, read as missing."""
    before = now_us - ttl_seconds * 1_000_000 if ttl_seconds else None
    return [
        Lookup(key, LookupStatus.MISSING)
        if lk is None
        or (before is not None and lk.record is not None and lk.record.created_at < before)
        else lk
        for key, lk in zip(keys, found, strict=True)
    ]


def primaries(snap: Snapshot, index: IndexVersion, placement: Placement) -> dict[str, list[int]]:
    """Each bucket's first serving replica → the buckets it answers for."""
    out: dict[str, list[int]] = {}
    for bucket, replicas in enumerate(placement.buckets):
        sid = next((s for s in replicas if snap.serving_shard(s) is not None), None)
        if sid is None:
            raise Unavailable(
                f"bucket {bucket} of index {index.ref} has no serving replica "
                f"(placed on {list(replicas)})"
            )
        out.setdefault(sid, []).append(bucket)
    return out


class Lookups:
    def __init__(self, registry: RegistryView, shards: ShardFactory, limits: Limits) -> None:
        self.registry = registry
        self.shards = shards
        self.limits = limits

    async def batch_get(
        self,
        access: Access,
        embedding: VersionRef,
        keys: Sequence[EntityKey],
        include_vectors: bool,
        timeout: float,
    ) -> list[Lookup]:
        """One lookup per key, in request order, from the embedding
        version's first index version."""
        snap, family, indexes = await self.registry.embedding_indexes(
            embedding, tenant_id=access.tenant_id
        )
        check_access(access, family, snap)
        owned = own_keys(keys, access, family, "lookup", self.limits.input)
        index = indexes[0]

        async def fetch(snap: Snapshot) -> list[Lookup | None]:
            placement = snap.placement(index.ref)
            centroid = index.placement == "centroid"
            # With centroid placement the bucket depends on the vector: every
            # key is asked of every shard (bucket None: whichever holds it).
            buckets = [None if centroid else key_bucket(snap, index.num_buckets, k) for k in owned]
            read = _Read(self, snap, index, placement, owned, buckets, include_vectors, timeout)
            found: list[Lookup | None] = [None] * len(owned)
            parts = await asyncio.gather(
                *(
                    read.ask(sid, snap.shards[sid].address, held, {sid})
                    for sid, held in primaries(snap, index, placement).items()
                )
            )
            for part in parts:
                for pos, lk in part.items():
                    found[pos] = better(found[pos], lk)
            return found

        found = await self.registry.retry_if_moved(snap, fetch)
        return expire(owned, found, family.ttl_seconds, now_micros())


class _Read:
    """One lookup request's reads on one snapshot."""

    def __init__(
        self,
        lookups: Lookups,
        snap: Snapshot,
        index: IndexVersion,
        placement: Placement,
        keys: list[EntityKey],
        buckets: list[int | None],
        include_vectors: bool,
        timeout: float,
    ) -> None:
        self.shards = lookups.shards
        self.snap, self.index, self.placement = snap, index, placement
        self.keys, self.buckets = keys, buckets
        self.include_vectors, self.timeout = include_vectors, timeout

    async def ask(
        self, sid: str, address: str, held: Sequence[int], tried: set[str]
    ) -> dict[int, Lookup]:
        """Positions → lookups for the keys of `held` buckets, from `sid` or,
        when it is unreachable, from the replicas the failover rule picks."""
        wanted = set(held)
        positions = [p for p, b in enumerate(self.buckets) if b is None or b in wanted]
        if not positions:
            return {}
        try:
            answer = await self.shards(sid, address).batch_get(
                self.index.ref,
                [self.keys[p] for p in positions],
                self.include_vectors,
                self.timeout,
            )
            return dict(zip(positions, answer, strict=True))
        except Unavailable:
            candidates = alternates(self.snap, self.placement, held, tried)
            cover = failover_cover(held, candidates, tried)
            if cover is None:
                raise
            tried = tried | {alt for alt, _, _ in cover}
            parts = await asyncio.gather(
                *(self.ask(alt, addr, share, tried) for alt, addr, share in cover)
            )
            out: dict[int, Lookup] = {}
            for part in parts:
                for pos, lk in part.items():
                    out[pos] = better(out.get(pos), lk)
            return out
