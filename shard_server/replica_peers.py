"""Which peer replica a shard copies each of its buckets from, for catch-up
at start and anti-entropy rounds: one place that says which placements are
live (a retired feature group version or an archived index version is being
dropped, and copying it would bring it back) and which registered peer holds
each bucket."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

from core.domain import VersionRef
from registry.model import Placement, Status
from registry.placement import feature_group_of
from registry.snapshot import Snapshot

RECORDS = "records"
FEATURE_ROWS = "feature_rows"


def live_placements(snap: Snapshot) -> Iterator[tuple[str, VersionRef, Placement]]:
    """(kind, index version or feature group version, placement) of every
    placement whose data is live."""
    for ref, placement in snap.placements.items():
        group = feature_group_of(ref)
        if group is not None:
            if group not in snap.retired_groups:
                yield FEATURE_ROWS, group, placement
            continue
        index = snap.indexes.get(ref)
        if index is not None and index.status is not Status.ARCHIVED:
            yield RECORDS, ref, placement


def peer_plan(
    snap: Snapshot, shard_id: str, buckets: Sequence[Sequence[str]], turn: int = 0
) -> dict[str, list[int]]:
    """Which registered peer to copy each of this shard's buckets from
    (`buckets`: a placement's replicas, by bucket): the
    replicas other than this shard, in placement order, rotated by `turn`
    (anti-entropy's rounds, so successive rounds read every peer)."""
    by_peer: dict[str, list[int]] = defaultdict(list)
    for bucket, replicas in enumerate(buckets):
        if shard_id not in replicas:
            continue
        peers = [s for s in replicas if s != shard_id and s in snap.shards]
        if peers:
            by_peer[peers[turn % len(peers)]].append(bucket)
    return dict(by_peer)
