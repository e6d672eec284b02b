"""Replica export (issue 5): a shard that missed writes while it was down —
possible when a write quorum below the replica count acknowledged them —
copies them from a peer replica of the same buckets before it serves queries
(`shard_server.catch_up`).

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
from core.timestamps import now_us
from protos.vecshard.v1.internal import replication_pb2 as pb
from protos.vecshard.v1.internal import replication_pb2_grpc
from shard_server import records as rec
from shard_server.bucket_digests import BucketDigest, feature_digests, index_digests
from shard_server.export_chunks import pair_size, sized_chunks
from shard_server.feature_replication import Exported, markers_in_buckets, rows_in_buckets
from shard_server.feature_store import FeatureStore
from shard_server.record_expiry import expiry_cutoff
from shard_server.service import ShardNode
from shard_server.storage import RECORDS as RECORDS_CF
from shard_server.storage import TOMBSTONES, ShardStore

log = logging.getLogger(__name__)

# Erasure markers of one chunk of a feature export (before its rows).
MARKERS_PER_CHUNK = 10_000


class ReplicationServicer(replication_pb2_grpc.ReplicationServiceServicer):
    def __init__(self, node: ShardNode, features: FeatureStore) -> None:
        self.node = node
        self.features = features

    def ExportBuckets(
        self, request: pb.ExportRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportChunk]:
        part = self.node.partition(VersionRef(request.index_name, request.index_version))
        for records, tombs in export_records(part.store, part.index.ref, set(request.buckets)):
            yield pb.ExportChunk(
                records=[pb.RawEntry(key=k, value=v) for k, v in records],
                tombstones=[pb.Tombstone(key=k, source_version=s) for k, s in tombs],
            )

    def ExportFeatureRows(
        self, request: pb.FeatureExportRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportChunk]:
        group = VersionRef(request.group_name, request.group_version)
        snap = self.node.registry.snapshot
        buckets = set(request.buckets)
        marks = markers_in_buckets(self.features, snap, buckets)
        for part in sized_chunks(sorted(marks.items()), pair_size, MARKERS_PER_CHUNK):
            yield pb.ExportChunk(
                erasures=[pb.ErasureMarker(key=k, erased_at_us=t) for k, t in part]
            )
        for rows in rows_in_buckets(self.features, snap, group, buckets):
            yield pb.ExportChunk(records=[pb.RawEntry(key=k, value=v) for k, v in rows])

    def BucketDigests(
        self, request: pb.DigestRequest, context: grpc.ServicerContext
    ) -> pb.DigestResponse:
        buckets = set(request.buckets)
        if request.group_name:
            group = VersionRef(request.group_name, request.group_version)
            snap = self.node.registry.snapshot
            found = feature_digests(self.features, snap, group, buckets, now_us())
        else:
            ref = VersionRef(request.index_name, request.index_version)
            cutoff = expiry_cutoff(self.node.registry.snapshot, ref, now_us())
            found = index_digests(self.node.store, ref, buckets, cutoff)
        return pb.DigestResponse(
            buckets=[
                pb.BucketDigest(bucket=b, digest=d.digest, rows=d.rows)
                for b, d in sorted(found.items())
            ]
        )


def _channel(address: str, credentials: grpc.ChannelCredentials) -> grpc.Channel:
    return grpc.secure_channel(address, credentials, options=serving.grpc_options())


def export_feature_rows(
    address: str,
    group: VersionRef,
    buckets: list[int],
    credentials: grpc.ChannelCredentials,
    timeout: float,
) -> Iterator[Exported]:
    """A peer's rows of `buckets` of a feature group version, in chunks,
    with its erasure markers of entities in them (`ErasureMarkers`)."""
    with _channel(address, credentials) as channel:
        stub = replication_pb2_grpc.ReplicationServiceStub(channel)
        req = pb.FeatureExportRequest(
            group_name=group.name, group_version=group.version, buckets=sorted(buckets)
        )
        for chunk in stub.ExportFeatureRows(req, timeout=timeout):
            marks = {m.key: m.erased_at_us for m in chunk.erasures}
            yield [(r.key, r.value) for r in chunk.records], marks


def export_records(
    store: ShardStore, ref: VersionRef, buckets: set[int], chunk: int = 2000
) -> Iterator[tuple[list[tuple[bytes, bytes]], list[tuple[bytes, int]]]]:
    """Raw records of `buckets` and every tombstone of an index version,
    for a peer catching up: chunks of at most `chunk` records and
    `export_chunks.CHUNK_BYTES` of them (and as much again of tombstones,
    the last records riding with the first tombstones), at least one chunk."""
    prefix = rec.index_prefix(ref)
    wanted = (
        (k, v)
        for k, v in store.iter_prefix(RECORDS_CF, prefix)
        if rec.bucket_of_value(v) in buckets
    )
    records: list[tuple[bytes, bytes]] = []
    for part in sized_chunks(wanted, pair_size, chunk):
        if records:
            yield records, []
        records = part
    tombs = ((k, rec.decode_tombstone(v)) for k, v in store.iter_prefix(TOMBSTONES, prefix))
    first = True
    for part_of_tombs in sized_chunks(tombs, pair_size, chunk):
        yield (records if first else []), part_of_tombs
        first = False
    if first:
        yield records, []


def pull_index_buckets(
    node: ShardNode,
    ref: VersionRef,
    address: str,
    buckets: list[int],
    credentials: grpc.ChannelCredentials,
    timeout: float,
    expired_before: int = 0,
) -> int:
    """Applies a peer's records of `buckets` (but those created before
    `expired_before`: `record_expiry`) and its tombstones to this shard's
    partition of `ref` (the write path's version rules); returns how many
    changed something. Raises the peer's `grpc.RpcError`."""
    part = node.partition(ref)
    applied = 0
    with _channel(address, credentials) as channel:
        stub = replication_pb2_grpc.ReplicationServiceStub(channel)
        req = pb.ExportRequest(
            index_name=ref.name, index_version=ref.version, buckets=sorted(buckets)
        )
        for chunk in stub.ExportBuckets(req, timeout=timeout):
            applied += part.apply_replicated(
                [
                    (r.key, r.value)
                    for r in chunk.records
                    if not expired_before or rec.created_at_of(r.value) >= expired_before
                ],
                [(t.key, t.source_version) for t in chunk.tombstones],
            )
    return applied


def peer_digests(
    address: str,
    request: pb.DigestRequest,
    credentials: grpc.ChannelCredentials,
    timeout: float,
) -> dict[int, BucketDigest]:
    with _channel(address, credentials) as channel:
        stub = replication_pb2_grpc.ReplicationServiceStub(channel)
        resp = stub.BucketDigests(request, timeout=timeout)
    return {d.bucket: BucketDigest(d.digest, d.rows) for d in resp.buckets}
