"""Deleting embedding records past their family's lifetime
(`EmbeddingFamily.expiry_seconds`: a session family's `ttl_seconds`, any
family's `retention_days`), by their `created_at`.

Lookups already read such a record as missing; without this it would stay
on disk, in the index and in search results for good. An expired record is
removed without a tombstone — its key is missing, not deleted, and a newer
write of it lands as on any missing key — and its age is checked again under
the partition's write lock, so a record rewritten meanwhile with a fresh
`created_at` stays. Replicas expire on their own schedules; anti-entropy
neither counts nor copies an expired record (`expiry_cutoff`), so one
replica having removed it first is no difference, and a late retry of an
expired write is as expired as the original — when it carries its
`created_at`. One without (the coordinator stamps it now) of a version older
than the expired one lands fresh: refusing it needs a tombstone at the
expired version, and tombstones need collecting first (an open issue).
"""

from __future__ import annotations

import logging

from core.domain import EntityKey, VersionRef
from core.errors import FailedPrecondition, NotFound
from registry.model import Status
from registry.snapshot import Snapshot
from shard_server import records as rec
from shard_server.metrics import RECORDS_EXPIRED
from shard_server.service import ShardNode
from shard_server.storage import RECORDS, ShardStore

log = logging.getLogger(__name__)
US_PER_SECOND = 1_000_000
CHUNK = 4096
ANY_VERSION = 2**63 - 1


def expired_keys(store: ShardStore, prefix: bytes, cutoff: int) -> list[EntityKey]:
    """Keys of the records under `prefix` created before `cutoff`."""
    return [
        rec.parse_record_key(raw_key)[1]
        for raw_key, value in store.iter_prefix(RECORDS, prefix)
        if rec.created_at_of(value) < cutoff
    ]


def expiry_cutoff(snap: Snapshot, ref: VersionRef, now: int) -> int:
    """The `created_at` before which records of index version `ref` have
    expired at `now` (microseconds); 0 when its family keeps them."""
    index = snap.indexes.get(ref)
    family = snap.families.get(index.embedding.name) if index is not None else None
    if family is None or not family.expiry_seconds:
        return 0
    return now - family.expiry_seconds * US_PER_SECOND


def _expire_partition(node: ShardNode, ref: VersionRef, cutoff: int) -> int:
    part = node.partition(ref)

    def still_expired(raw: bytes) -> bool:
        return rec.created_at_of(raw) < cutoff

    keys = expired_keys(node.store, rec.index_prefix(ref), cutoff)
    # The rule is the age, checked again under the lock (`still`), not a
    # version: any version of a record still expired goes, a chunk of keys
    # per synced write.
    removed = 0
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        removed += part.delete(chunk, ANY_VERSION, still=still_expired, mark=False).written
    return removed


def expire_records(node: ShardNode, now: int) -> int:
    """Deletes the expired records of every index version open on this
    shard whose family has a lifetime; returns how many."""
    snap = node.registry.snapshot
    removed = 0
    for ref in node.open_partitions():
        index = snap.indexes.get(ref)
        cutoff = expiry_cutoff(snap, ref, now)
        if index is None or index.status is Status.ARCHIVED or not cutoff:
            continue
        try:
            removed += _expire_partition(node, ref, cutoff)
        except (FailedPrecondition, NotFound) as exc:
            # Archived and dropped during the sweep (its records go with it):
            # the other partitions, and the feature purge after, still run.
            log.info("expiry skipped %s: %s", ref, exc)
    RECORDS_EXPIRED.inc(removed)
    if removed:
        log.info("deleted %d records past their family's ttl_seconds or retention_days", removed)
    return removed
