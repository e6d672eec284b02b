"""Feature-row catch-up between the replicas of a feature group's buckets.

A feature write is acknowledged once every replica of each row's bucket has
it, so a shard that was down missed nothing acknowledged — but a write
refused because one replica was down (still registered, its calls failing)
may have reached the others. Without a copy, the replicas of those rows
would disagree for good once the writer gave up, and a read would answer
the old or the new row depending on the replica it asked. So a starting
shard copies, from a registered peer per bucket (the next one if it
fails), every row of its replicated buckets that is newer than its own (`FeatureStore.apply_raw`:
the write rule, so copying twice changes nothing), before it serves reads —
and, first, the peer's erasure markers of entities in those buckets, so a
shard restored after losing its disk refuses an erased subject's replayed
history as its peers do (`shard_server.erasure_markers`). Retired group
versions are not copied (their rows are being dropped).
It runs once, registered as draining, when the shard already receives every
write: one scan of the peers then covers what was written before (index
catch-up also runs a first pass while unregistered; for feature rows it
would scan every replicated row once more for nothing).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator

import numpy as np

from core.domain import VersionRef
from registry.placement import FEATURE_BUCKETS, tenant_buckets_of
from registry.snapshot import Snapshot
from shard_server.feature_store import FeatureStore, parse_entity_key
from shard_server.replica_peers import (
    FEATURE_ROWS,
    live_placements,
    peer_candidates,
    pull_from_replicas,
)

log = logging.getLogger(__name__)

RawRows = list[tuple[bytes, bytes]]


def buckets_of_keys(snap: Snapshot, raw_keys: list[bytes]) -> np.ndarray:
    """The feature bucket of each stored entity key (a tenant with its own
    buckets places its entities in those only)."""
    held = np.zeros(len(raw_keys), dtype=np.int64)
    ids_by_tenant: dict[str, list[int]] = defaultdict(list)
    keys = [parse_entity_key(k) for k in raw_keys]
    for i, key in enumerate(keys):
        ids_by_tenant[key.tenant_id].append(i)
    for tenant_id, rows in ids_by_tenant.items():
        tenant = snap.tenants.get(tenant_id)
        own = tenant.buckets if tenant else ()
        ids = [keys[i].entity_id for i in rows]
        held[rows] = tenant_buckets_of(tenant_id, ids, FEATURE_BUCKETS, own)
    return held


def bucketed_rows(
    store: FeatureStore, snap: Snapshot, group: VersionRef, buckets: set[int]
) -> Iterator[tuple[np.ndarray, RawRows]]:
    """The group's stored rows whose entity falls in `buckets`, in chunks,
    each with its rows' buckets."""
    wanted = np.array(sorted(buckets), dtype=np.int64)
    for part in store.iter_raw(group):
        held = buckets_of_keys(snap, [k for k, _ in part])
        keep = np.isin(held, wanted)
        if keep.any():
            picked = [pair for pair, k in zip(part, keep.tolist(), strict=True) if k]
            yield held[keep], picked


def markers_in_buckets(store: FeatureStore, snap: Snapshot, buckets: set[int]) -> dict[bytes, int]:
    """This shard's erasure markers of entities in `buckets`."""
    marks = list(store.markers.items())
    if not marks:
        return {}
    held = buckets_of_keys(snap, [k for k, _ in marks])
    keep = np.isin(held, np.array(sorted(buckets), dtype=np.int64)).tolist()
    return {k: t for (k, t), kept in zip(marks, keep, strict=True) if kept}


def rows_in_buckets(
    store: FeatureStore, snap: Snapshot, group: VersionRef, buckets: set[int]
) -> Iterator[RawRows]:
    """What a replica of `buckets` copies: `bucketed_rows` without the buckets."""
    for _, rows in bucketed_rows(store, snap, group, buckets):
        yield rows


# A peer's rows of some buckets, with (in the first chunk) its erasure markers
# of entities in them.
Exported = tuple[RawRows, dict[bytes, int]]
# (peer address, group, buckets) → the peer's rows of those buckets, in chunks.
Export = Callable[[str, VersionRef, list[int]], Iterator[Exported]]


# Buckets left uncaught, per feature group version (or index version).
Missing = dict[VersionRef, set[int]]


def catch_up_features(
    store: FeatureStore,
    snap: Snapshot,
    shard_id: str,
    export: Export,
    only: Missing | None = None,
) -> tuple[int, Missing]:
    """For every feature group placement with buckets this shard shares with
    a registered peer (of `only`, if given), copies the newer rows of the
    first replica that answers, SERVING ones first; returns how many rows
    were written and the buckets no replica answered for (the caller asks
    again: the shard must not serve reads before it has them)."""
    applied = 0
    missing: Missing = {}
    for kind, group, placement in live_placements(snap):
        if kind != FEATURE_ROWS or (only is not None and group not in only):
            continue

        def pull(peer: str, buckets: list[int], group: VersionRef = group) -> None:
            nonlocal applied
            for rows, marks in export(snap.shards[peer].address, group, buckets):
                store.apply_markers(marks)  # first: they refuse erased history
                applied += store.apply_raw(group, rows)

        candidates = peer_candidates(snap, shard_id, placement.buckets)
        failed = pull_from_replicas(
            f"feature group {group}", candidates, pull, None if only is None else only[group]
        )
        if failed:
            missing[group] = failed
    return applied, missing
