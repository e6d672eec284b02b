"""Replica catch-up (issue 5): a shard that missed writes while it was down —
possible when a write quorum below the replica count acknowledged them —
copies them from a peer replica of the same buckets before it serves queries.

The peer streams raw records of the buckets and every tombstone; the
recovering shard applies them with the write path's version rules, so the
merge is exactly "newest version wins, deletes win over their version and
older", whatever arrived first. Applying twice changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc

from core import runtime as serving
from core.domain import VersionRef
from protos.vecshard.v1.internal import replication_pb2 as pb
from protos.vecshard.v1.internal import replication_pb2_grpc
from shard_server.feature_replication import RawRows, catch_up_features, rows_in_buckets
from shard_server.feature_store import FeatureStore
from shard_server.metrics import CATCH_UP
from shard_server.service import ShardNode

log = logging.getLogger(__name__)


class ReplicationServicer(replication_pb2_grpc.ReplicationServiceServicer):
    def __init__(self, node: ShardNode, features: FeatureStore) -> None:
        self.node = node
        self.features = features

    def ExportBuckets(
        self, request: pb.ExportRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportChunk]:
        part = self.node.partition(VersionRef(request.index_name, request.index_version))
        for records, tombs in part.export(set(request.buckets)):
            yield pb.ExportChunk(
                records=[pb.RawEntry(key=k, value=v) for k, v in records],
                tombstones=[pb.Tombstone(key=k, source_version=s) for k, s in tombs],
            )

    def ExportFeatureRows(
        self, request: pb.FeatureExportRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportChunk]:
        group = VersionRef(request.group_name, request.group_version)
        snap = self.node.registry.snapshot
        for rows in rows_in_buckets(self.features, snap, group, set(request.buckets)):
            yield pb.ExportChunk(records=[pb.RawEntry(key=k, value=v) for k, v in rows])


def catch_up(
    node: ShardNode,
    features: FeatureStore,
    credentials: grpc.ChannelCredentials,
    timeout: float = 120.0,
    feature_rows: bool = True,
) -> int:
    """For every replicated bucket this shard holds, of index versions and of
    feature groups (unless `feature_rows` is false), pulls from one
    registered peer replica (over mutual TLS, as a shard). Returns how many
    records, tombstones and feature rows were applied."""
    snap = node.registry.refresh()

    def export_features(address: str, group: VersionRef, buckets: list[int]) -> Iterator[RawRows]:
        with grpc.secure_channel(address, credentials, options=serving.grpc_options()) as channel:
            stub = replication_pb2_grpc.ReplicationServiceStub(channel)
            req = pb.FeatureExportRequest(
                group_name=group.name, group_version=group.version, buckets=sorted(buckets)
            )
            for chunk in stub.ExportFeatureRows(req, timeout=timeout):
                yield [(r.key, r.value) for r in chunk.records]

    rows = catch_up_features(features, snap, node.shard_id, export_features) if feature_rows else 0
    CATCH_UP.labels("feature_rows").inc(rows)
    applied = 0
    for ref, placement in snap.placements.items():
        if ref not in snap.indexes:
            continue
        mine = placement.buckets_of(node.shard_id)
        by_peer: dict[str, set[int]] = {}
        for b in mine:
            peers = [s for s in placement.buckets[b] if s != node.shard_id and s in snap.shards]
            if peers:
                by_peer.setdefault(peers[0], set()).add(b)
        for peer, buckets in by_peer.items():
            address = snap.shards[peer].address
            part = node.partition(ref)
            try:
                with grpc.secure_channel(
                    address, credentials, options=serving.grpc_options()
                ) as channel:
                    stub = replication_pb2_grpc.ReplicationServiceStub(channel)
                    req = pb.ExportRequest(
                        index_name=ref.name, index_version=ref.version, buckets=sorted(buckets)
                    )
                    for chunk in stub.ExportBuckets(req, timeout=timeout):
                        applied += part.apply_replicated(
                            [(r.key, r.value) for r in chunk.records],
                            [(t.key, t.source_version) for t in chunk.tombstones],
                        )
            except grpc.RpcError as exc:
                log.warning(
                    "catch-up of %s buckets %s from %s failed: %s", ref, sorted(buckets), peer, exc
                )
    CATCH_UP.labels("records").inc(applied)
    return applied + rows
