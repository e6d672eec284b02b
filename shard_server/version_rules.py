"""The version rules of the shard's writes, over stored bytes: whether an
upsert replaces what RocksDB holds for its key (`applies`, and `applying` for
a whole batch at once), whether a delete changes anything
(`delete_applies`), and which of two records a copy between replicas keeps
(`copy_order`). One home for the rules that client writes, deletes and
replication (`IndexPartition`) share. Pure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shard_server import records as rec


def applies(source_version: int, stored: bytes | None, tombstone: bytes | None) -> bool:
    """Whether an upsert with `source_version` replaces what is stored.

    An equal version replaces a stored record (a retried batch is idempotent);
    a delete wins over every write of its version or older, so a retried
    upsert can never bring a deleted key back.
    """
    if stored is not None and source_version < rec.source_version_of(stored):
        return False
    return tombstone is None or source_version > rec.decode_tombstone(tombstone)


def copy_order(raw: bytes) -> tuple[int, int, bytes]:
    """Which of two stored records of a key is the later, for copies between
    replicas: by source_version, then created_at — numbers, not the header's
    little-endian bytes, under which created_at 255 sorted after 256 and an
    earlier write replaced the later one acknowledged on the other replica —
    then the bytes, only so that two different records of equal times still
    have one winner."""
    return rec.source_version_of(raw), rec.created_at_of(raw), raw


def copy_applies(value: bytes, stored: bytes | None, tombstone: bytes | None) -> bool:
    """Whether a peer's record (replication: catch-up, anti-entropy) replaces
    what is stored: `applies`, except that of two different records of one
    version the later by `copy_order` wins — a client's retry may replace
    its own version, but two replicas that kept different writes of one
    version must converge on the same one whichever copies from which, and
    on the later write (the coordinator stamps created_at on arrival)."""
    if stored is not None and copy_order(value) <= copy_order(stored):
        return False
    return applies(rec.source_version_of(value), stored, tombstone)


def applying(
    source_versions: np.ndarray,
    stored: Sequence[bytes | None],
    tombstones: Sequence[bytes | None],
) -> np.ndarray:
    """`applies` for every row at once: newer or equal to the
    stored record, and newer than the key's tombstone."""
    n = source_versions.shape[0]
    stored_sv = np.fromiter(
        (rec.source_version_of(v) if v is not None else -(2**63) for v in stored),
        dtype=np.int64,
        count=n,
    )
    tomb_sv = np.fromiter(
        (rec.decode_tombstone(t) if t is not None else -(2**63) for t in tombstones),
        dtype=np.int64,
        count=n,
    )
    has_tomb = np.fromiter((t is not None for t in tombstones), dtype=bool, count=n)
    ok: np.ndarray = (source_versions >= stored_sv) & (~has_tomb | (source_versions > tomb_sv))
    return ok


def delete_applies(version: int, stored: bytes | None, tombstone: bytes | None) -> bool:
    """Whether a delete at `version` changes anything: it removes a stored
    record of its version or older (never a newer one: a late or stale delete
    must not lose a write acknowledged after it), and it raises the key's
    tombstone so that every later write of `version` or older is refused.

    One rule for client deletes, centroid move-deletes and replication."""
    if stored is not None and rec.source_version_of(stored) > version:
        return False
    return tombstone is None or rec.decode_tombstone(tombstone) < version
