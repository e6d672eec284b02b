"""Catch-up of a starting (or rejoining) shard from its peer replicas.

Every bucket this shard holds is copied from some other registered replica
— SERVING ones first, the next when one fails — before the shard answers
reads. Buckets no replica answered for are asked again until one does:
a replica that does not answer is either dead (it leaves the registry when
its lease expires, and with it the need to ask it) or briefly busy. Going
SERVING without them would serve what peers acknowledged without this shard
as missing, and what they deleted as present. A bucket with no other
registered replica has nothing to catch up from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import grpc

from core.domain import VersionRef
from core.errors import VecshardError
from core.timestamps import now_us
from shard_server.feature_replication import Exported, Missing, catch_up_features
from shard_server.feature_store import FeatureStore
from shard_server.metrics import CATCH_UP
from shard_server.record_expiry import expiry_cutoff
from shard_server.replica_peers import RECORDS, live_placements, peer_candidates, pull_from_replicas
from shard_server.replication import export_feature_rows, pull_index_buckets
from shard_server.service import ShardNode

log = logging.getLogger(__name__)

# Seconds between passes over the buckets left uncaught: the first, doubling
# up to the last.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


def catch_up(
    node: ShardNode,
    features: FeatureStore,
    credentials: grpc.ChannelCredentials,
    timeout: float = 120.0,
    feature_rows: bool = True,
    only: tuple[Missing, Missing] | None = None,
) -> tuple[int, Missing, Missing]:
    """One pass: for every replicated bucket this shard holds (of `only`:
    (index buckets, feature buckets), if given), of index versions and of
    feature groups (unless `feature_rows` is false), pulls from a registered
    peer replica (over mutual TLS, as a shard). Returns how many records,
    tombstones and feature rows were applied, and the index and feature
    buckets no replica answered for."""
    snap = node.registry.refresh()

    def export_features(address: str, group: VersionRef, buckets: list[int]) -> Iterator[Exported]:
        return export_feature_rows(address, group, buckets, credentials, timeout)

    rows: int = 0
    missing_rows: Missing = {}
    if feature_rows:
        rows, missing_rows = catch_up_features(
            features, snap, node.shard_id, export_features, None if only is None else only[1]
        )
    CATCH_UP.labels("feature_rows").inc(rows)
    applied = 0
    missing: Missing = {}
    for kind, ref, placement in live_placements(snap):
        if kind != RECORDS or (only is not None and ref not in only[0]):
            continue
        try:
            node.partition(ref)
        except VecshardError as exc:
            # A partition here that cannot open (`load_all` left it closed,
            # with its reason): no peer can help; the shard serves the rest.
            log.warning("catch-up of %s skipped: %s", ref, exc)
            continue

        def pull(peer: str, buckets: list[int], ref: VersionRef = ref) -> None:
            nonlocal applied
            applied += pull_index_buckets(
                node,
                ref,
                snap.shards[peer].address,
                buckets,
                credentials,
                timeout,
                expiry_cutoff(snap, ref, now_us()),
            )

        candidates = peer_candidates(snap, node.shard_id, placement.buckets)
        failed = pull_from_replicas(
            f"index {ref}", candidates, pull, None if only is None else only[0][ref]
        )
        if failed:
            missing[ref] = failed
    CATCH_UP.labels("records").inc(applied)
    return applied + rows, missing, missing_rows


def catch_up_fully(
    node: ShardNode,
    features: FeatureStore,
    credentials: grpc.ChannelCredentials,
    stopped: Callable[[], bool] = lambda: False,
    timeout: float = 120.0,
) -> int:
    """`catch_up`, then passes over the buckets left uncaught until every
    one was copied from some replica (or lost its other replicas), or
    `stopped()` (the shard is shutting down). Returns what was applied."""
    applied, records, rows = catch_up(node, features, credentials, timeout)
    wait = RETRY_FIRST_S
    while (records or rows) and not stopped():
        log.warning(
            "shard %s: no replica answered for index buckets %s, feature buckets %s; "
            "staying draining and asking again in %.1f s",
            node.shard_id,
            {str(r): sorted(b) for r, b in records.items()},
            {str(g): sorted(b) for g, b in rows.items()},
            wait,
        )
        time.sleep(wait)
        wait = min(wait * 2, RETRY_MAX_S)
        more, records, rows = catch_up(node, features, credentials, timeout, only=(records, rows))
        applied += more
    return applied
