"""Centroid move-deletes: with centroid placement a record's bucket follows
its vector, so a new vector for a key may land in another bucket than the
old one. The old copy must not stay behind (a search would return the key
twice, once with a stale vector), so every other shard of the index deletes
the key at the version just below the new record's: every older copy goes,
and the tombstone cannot mask the new record or anything newer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
    out: list[MoveDelete] = []
    for shard_id in dict.fromkeys(shard_ids):
        held = set(placement.buckets_of(shard_id))
        by_version: dict[int, list[EntityKey]] = {}
        for r, b in zip(records, buckets, strict=True):
            if b not in held:
                by_version.setdefault(r.source_version - 1, []).append(r.key)
        out.extend(MoveDelete(shard_id, tuple(keys), v) for v, keys in by_version.items())
    return out
