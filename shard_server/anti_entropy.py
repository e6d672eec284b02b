"""Anti-entropy between live replicas: every so often a serving shard
compares, bucket by bucket, what it holds with a peer replica of the same
buckets (`shard_server.bucket_digests`) and copies the peer's records (or
feature rows) of the buckets that differ, with the write path's version
rules.

Catch-up at start and the coordinator's background write repair cover the
usual ways replicas come to disagree; what neither sees is a write that
reached one replica while the other stayed up and never got it — its
coordinator killed mid-write (the repair's retries are in its memory), a
replica registered but unreachable for longer than the repair retries, a
write refused to its caller after reaching one replica and never retried.
Without this those keys answer old or new by the replica a read asks, until
they are written again or the lagging shard restarts.

Each round pulls only (a peer pulls from this shard on its own round), from
the next peer in turn per bucket, so with three replicas every replica
eventually reads every other. Pulling is idempotent and version-ruled, so a
round racing live writes, or a peer's, can only copy something twice, never
regress a row: a digest that differs because a write is in flight costs one
bucket's copy. Retired feature groups and archived index versions are left
alone (their data is being dropped).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from core.domain import VersionRef
from core.timestamps import now_us
from protos.vecshard.v1.internal import replication_pb2 as pb
from registry.snapshot import Snapshot
from shard_server.bucket_digests import (
    BucketDigest,
    differing,
    feature_digests,
    group_ttl,
    index_digests,
    unexpired,
)
from shard_server.feature_store import FeatureStore
from shard_server.metrics import ANTI_ENTROPY_BUCKETS, ANTI_ENTROPY_ROUNDS, ANTI_ENTROPY_ROWS
from shard_server.periodic import Periodic
from shard_server.record_expiry import expiry_cutoff
from shard_server.replica_peers import FEATURE_ROWS, RECORDS, live_placements, peer_plan
from shard_server.replication import export_feature_rows, peer_digests, pull_index_buckets
from shard_server.service import ShardNode

log = logging.getLogger(__name__)


@dataclass
class RoundReport:
    """What one round did: buckets compared and found different, rows
    (records, tombstones, feature rows) that changed, peers that failed."""

    compared: int = 0
    differed: int = 0
    copied: int = 0
    failed: int = 0


class AntiEntropy:
    def __init__(
        self,
        node: ShardNode,
        features: FeatureStore,
        credentials: grpc.ChannelCredentials,
        interval: float,
        timeout: float = 120.0,
    ) -> None:
        self.node = node
        self.features = features
        self.credentials = credentials
        self.interval = interval
        self.timeout = timeout
        self.turn = 0
        self.loop = Periodic(
            "shard-anti-entropy",
            self.run_once,
            interval,
            on_error=ANTI_ENTROPY_ROUNDS.labels("failed").inc,
        )

    def run_once(self) -> RoundReport:
        """One round over every replicated index version and feature group."""
        snap = self.node.registry.snapshot
        report = RoundReport()
        turn, self.turn = self.turn, self.turn + 1
        for kind, target, placement in live_placements(snap):
            plan = peer_plan(snap, self.node.shard_id, placement.buckets, turn)
            if not plan:
                continue
            # This shard's digests once (one scan), for every peer's buckets.
            try:
                mine = self._digests(kind, target, [b for bs in plan.values() for b in bs], snap)
            except Exception as exc:  # noqa: BLE001 - e.g. a group dropped mid-scan
                report.failed += 1
                log.warning("anti-entropy of %s skipped: its digests failed: %s", target, exc)
                continue
            for peer, buckets in plan.items():
                if self.loop.stopping:
                    return report
                try:
                    self._reconcile(kind, target, snap.shards[peer].address, buckets, mine, report)
                except Exception as exc:  # noqa: BLE001 - one peer or index must not stop the rest
                    report.failed += 1
                    log.warning(
                        "anti-entropy of %s with %s failed (next round tries again): %s",
                        target,
                        peer,
                        exc.details() if isinstance(exc, grpc.Call) else exc,
                    )
        ANTI_ENTROPY_ROUNDS.labels("failed" if report.failed else "done").inc()
        if report.differed:
            log.info(
                "anti-entropy: %d of %d buckets differed from a peer; %d rows copied",
                report.differed,
                report.compared,
                report.copied,
            )
        return report

    def _digests(
        self, kind: str, ref: VersionRef, buckets: list[int], snap: Snapshot
    ) -> dict[int, BucketDigest]:
        if kind == FEATURE_ROWS:
            return feature_digests(self.features, snap, ref, buckets, now_us())
        cutoff = expiry_cutoff(snap, ref, now_us())
        return index_digests(self.node.store, ref, buckets, cutoff)

    def _reconcile(
        self,
        kind: str,
        ref: VersionRef,
        address: str,
        buckets: list[int],
        mine: dict[int, BucketDigest],
        report: RoundReport,
    ) -> None:
        if kind == FEATURE_ROWS:
            request = pb.DigestRequest(
                group_name=ref.name, group_version=ref.version, buckets=buckets
            )
        else:
            request = pb.DigestRequest(
                index_name=ref.name, index_version=ref.version, buckets=buckets
            )
        theirs = peer_digests(address, request, self.credentials, self.timeout)
        different = differing(mine, theirs)
        report.compared += len(buckets)
        report.differed += len(different)
        ANTI_ENTROPY_BUCKETS.labels(kind, "same").inc(len(buckets) - len(different))
        if not different:
            return
        ANTI_ENTROPY_BUCKETS.labels(kind, "differed").inc(len(different))
        copied = self._pull(kind, ref, address, different)
        report.copied += copied
        ANTI_ENTROPY_ROWS.labels(kind).inc(copied)

    def _pull(self, kind: str, ref: VersionRef, address: str, buckets: list[int]) -> int:
        if kind == RECORDS:
            cutoff = expiry_cutoff(self.node.registry.snapshot, ref, now_us())
            return pull_index_buckets(
                self.node, ref, address, buckets, self.credentials, self.timeout, cutoff
            )
        copied = 0
        ttl = group_ttl(self.node.registry.snapshot, ref)
        exported = export_feature_rows(address, ref, buckets, self.credentials, self.timeout)
        for rows, marks in exported:
            # A group retired mid-round is being dropped: writing its rows
            # again would recreate what the drop freed.
            if self.loop.stopping or ref in self.node.registry.snapshot.retired_groups:
                break
            self.features.apply_markers(marks)  # first: they refuse erased history
            copied += self.features.apply_raw(ref, unexpired(rows, ttl, now_us()))
        return copied
