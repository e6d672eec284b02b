"""Centroid move-deletes: with centroid placement a record's bucket follows
its vector, so a new vector for a key may land in another bucket than the
old one. The old copy must not stay behind (a search would return the key
twice, once with a stale vector), so every other shard of the index deletes
the key at the version just below the new record's: every older copy goes,
and the tombstone cannot mask the new record or anything newer. The
deletes are sent only once the new copies landed (`quorum.run_quorum`).

A write of another vector at the same `source_version` (versions are meant
to grow with every change of a record) that moves the key leaves the old
copy too: deleting copies of the new record's own version was tried, and a
move-delete arriving late (repaired, or sent after its caller gave up) then
removed the key's copy written after it — moved back at that version — and
the key was lost everywhere. Telling those apart needs a write stamp beside
the version (an open issue); two copies of a misused version beat losing an
acknowledged write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from coordinator.model import WriteRecord
from core.domain import EntityKey
from registry.model import Placement


@dataclass(frozen=True)
class MoveDelete:
    shard_id: str
    keys: tuple[EntityKey, ...]
    source_version: int


def move_deletes(
    placement: Placement,
    shard_ids: Iterable[str],
    records: Sequence[WriteRecord],
    buckets: Sequence[int],
) -> list[MoveDelete]:
    """Per shard of the index (in `shard_ids` order) and per version: the
    keys of the records whose new bucket that shard does not hold."""
    return move_deletes_of(
        placement,
        shard_ids,
        [r.key for r in records],
        np.asarray(buckets, dtype=np.int64),
        np.array([r.source_version for r in records], dtype=np.int64),
    )


def move_deletes_of(
    placement: Placement,
    shard_ids: Iterable[str],
    keys: Sequence[EntityKey],
    buckets: np.ndarray,
    source_versions: np.ndarray,
) -> list[MoveDelete]:
    """`move_deletes` over arrays (records as columns): rows grouped per
    shard and version with array operations, keys listed in row order."""
    out: list[MoveDelete] = []
    for shard_id in dict.fromkeys(shard_ids):
        moved = ~np.isin(buckets, np.array(placement.buckets_of(shard_id), dtype=np.int64))
        if not moved.any():
            continue
        versions = source_versions[moved] - 1
        rows = np.flatnonzero(moved)
        for v in dict.fromkeys(versions.tolist()):
            out.append(
                MoveDelete(shard_id, tuple(keys[i] for i in rows[versions == v].tolist()), v)
            )
    return out
