"""Which peer replica a shard copies each of its buckets from, for catch-up
at start and anti-entropy rounds: one place that says which placements are
live (a retired feature group version or an archived index version is being
dropped, and copying it would bring it back) and which registered peers hold
each bucket. Catch-up tries every registered replica of a bucket in turn,
SERVING ones first (`pull_from_replicas`): the first may be a dead shard
whose lease has not expired yet, or a DRAINING one itself behind."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence

from core.domain import VersionRef
from registry.model import Placement, ShardState, Status
from registry.placement import feature_group_of
from registry.snapshot import Snapshot

log = logging.getLogger(__name__)

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


def peer_candidates(
    snap: Snapshot, shard_id: str, buckets: Sequence[Sequence[str]]
) -> dict[int, list[str]]:
    """For each of this shard's buckets that has another registered replica:
    those replicas, SERVING ones first, each group in placement order."""
    found: dict[int, list[str]] = {}
    for bucket, replicas in enumerate(buckets):
        if shard_id not in replicas:
            continue
        peers = [s for s in replicas if s != shard_id and s in snap.shards]
        if peers:
            serving = [s for s in peers if snap.shards[s].state is ShardState.SERVING]
            found[bucket] = serving + [s for s in peers if s not in serving]
    return found


def pull_from_replicas(
    what: str,
    candidates: dict[int, list[str]],
    pull: Callable[[str, list[int]], None],
    only: Iterable[int] | None = None,
) -> set[int]:
    """Copies each bucket (of `only`, if given) from its first candidate
    peer that answers: `pull(peer, buckets)` raises when the peer could not
    be read. Returns the buckets no candidate answered for."""
    wanted = set(candidates) if only is None else set(only) & set(candidates)
    pending = {b: list(candidates[b]) for b in wanted}
    failed: set[int] = set()
    while pending:
        by_peer: dict[str, list[int]] = defaultdict(list)
        for bucket, peers in pending.items():
            by_peer[peers[0]].append(bucket)
        for peer, buckets in by_peer.items():
            try:
                pull(peer, sorted(buckets))
            except Exception as exc:  # noqa: BLE001 - the next replica is asked
                log.warning(
                    "catch-up of %s buckets %s from %s failed: %s", what, buckets, peer, exc
                )
                for bucket in buckets:
                    pending[bucket].pop(0)
                    if not pending[bucket]:
                        failed.add(bucket)
                        del pending[bucket]
                continue
            for bucket in buckets:
                del pending[bucket]
    return failed
