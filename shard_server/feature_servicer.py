"""FeatureShardService: proto → domain → FeatureNode → proto, nothing else."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from core.domain import VersionRef
from core.wire import feature_row_from_pb, key_from_pb, resolved_value_to_pb
from protos.vecshard.v1.internal import features_pb2 as pb
from protos.vecshard.v1.internal import features_pb2_grpc
from registry.features import GroupRow
from shard_server.feature_service import FeatureNode


class FeatureServicer(features_pb2_grpc.FeatureShardServiceServicer):
    def __init__(self, node: FeatureNode) -> None:
        self.node = node

    def PutFeatures(
        self, request_iterator: Iterator[pb.FeatureBatch], context: grpc.ServicerContext
    ) -> pb.FeatureAck:
        written = ignored = 0
        for batch in request_iterator:
            rows = [GroupRow(*feature_row_from_pb(r)) for r in batch.rows]
            ack = self.node.put(VersionRef(batch.group, batch.group_version), rows)
            written += ack.written
            ignored += ack.ignored_older
        return pb.FeatureAck(written=written, ignored_older=ignored)

    def GetFeatures(
        self, request: pb.GetFeaturesRequest, context: grpc.ServicerContext
    ) -> pb.GetFeaturesResponse:
        values = self.node.get(
            VersionRef(request.group, request.group_version),
            list(request.features),
            [key_from_pb(k) for k in request.entities],
            request.request_time_us,
            request.personalized,
        )
        return pb.GetFeaturesResponse(
            entities=[
                pb.EntityValues(values=[resolved_value_to_pb(v) for v in row]) for row in values
            ]
        )
