"""Per-bucket digests of what a shard holds, for anti-entropy between live
replicas (`shard_server.anti_entropy`): two replicas of a bucket that hold
the same records (or feature rows) byte for byte have the same digest, so
comparing a few numbers per bucket finds the buckets worth copying without
sending the rows.

A digest is the sum modulo 2^64 of a hash of each (key, value) as stored:
independent of the order rows are read in, so a shard can fold rows in as
its scan meets them, and cheap to compare. Replicas store a copied row byte
for byte (`RawEntry`), so equal data gives equal digests; the write sequence
a shard stamps on its own writes is kept apart (the `sequences` column
family) and takes no part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from core.domain import VersionRef
from registry.feature_values import is_expired
from registry.snapshot import Snapshot
from shard_server import records as rec
from shard_server.feature_replication import RawRows, bucketed_rows
from shard_server.feature_rows import row_times
from shard_server.feature_store import FeatureStore
from shard_server.storage import RECORDS, ShardStore

MASK = (1 << 64) - 1


@dataclass(frozen=True)
class BucketDigest:
    digest: int
    rows: int


def row_hash(key: bytes, value: bytes) -> int:
    """64 bits of BLAKE2b over the key's length, the key and the value (the
    length keeps (ab, c) and (a, bc) apart)."""
    h = hashlib.blake2b(len(key).to_bytes(4, "little"), digest_size=8)
    h.update(key)
    h.update(value)
    return int.from_bytes(h.digest(), "little")


def digests_of(
    rows: Iterable[tuple[int, bytes, bytes]], buckets: Collection[int]
) -> dict[int, BucketDigest]:
    """(bucket, key, value) → a digest per bucket of `buckets`; a bucket with
    no rows has digest 0 and 0 rows (so an empty replica differs from a full
    one, and two empty ones agree)."""
    sums = dict.fromkeys(buckets, 0)
    counts = dict.fromkeys(buckets, 0)
    for bucket, key, value in rows:
        if bucket in sums:
            sums[bucket] = (sums[bucket] + row_hash(key, value)) & MASK
            counts[bucket] += 1
    return {b: BucketDigest(sums[b], counts[b]) for b in sums}


def differing(mine: Mapping[int, BucketDigest], theirs: Mapping[int, BucketDigest]) -> list[int]:
    """The buckets both sides reported whose digests differ, in order. A
    bucket one side did not report is left out: it is not shared (the
    placement changed between the two reads), nothing to reconcile."""
    return sorted(b for b in mine.keys() & theirs.keys() if mine[b] != theirs[b])


def index_digests(
    store: ShardStore, ref: VersionRef, buckets: Collection[int], expired_before: int = 0
) -> dict[int, BucketDigest]:
    """Digests of an index version's live records (a record's value names its
    bucket) created at or after `expired_before` (`record_expiry`: older ones
    are removed by each replica on its own schedule). Tombstones take no
    part: a delete shows as the record's absence, and a replica that copies
    a bucket also gets every tombstone."""
    prefix = rec.index_prefix(ref)
    rows = (
        (rec.bucket_of_value(v), k, v)
        for k, v in store.iter_prefix(RECORDS, prefix)
        if not expired_before or rec.created_at_of(v) >= expired_before
    )
    return digests_of(rows, buckets)


def group_ttl(snap: Snapshot, group: VersionRef) -> int | None:
    schema = snap.feature_catalog.groups.get(group)
    return schema.group.ttl_seconds if schema is not None else None


def unexpired(rows: RawRows, ttl: int | None, now: int) -> RawRows:
    """The rows not past the group's TTL at `now`: an expired row reads as
    absent and is deleted on each replica on its own schedule
    (`FeatureNode.purge_expired`), so anti-entropy neither counts nor copies
    it — one replica having purged it first is no difference."""
    if ttl is None:
        return rows
    return [(k, v) for k, v in rows if not is_expired(ttl, row_times(v)[0], now)]


def feature_digests(
    store: FeatureStore, snap: Snapshot, group: VersionRef, buckets: Collection[int], now: int
) -> dict[int, BucketDigest]:
    """Digests of a feature group version's stored rows live at `now`."""
    ttl = group_ttl(snap, group)

    def rows() -> Iterable[tuple[int, bytes, bytes]]:
        for held, part in bucketed_rows(store, snap, group, set(buckets)):
            for b, (k, v) in zip(held.tolist(), part, strict=True):
                if ttl is None or not is_expired(ttl, row_times(v)[0], now):
                    yield b, k, v

    return digests_of(rows(), buckets)
