"""FeatureShardService: proto → domain → FeatureNode → proto, nothing else."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from core.column_wire import resolved_to_pb, row_columns_from_pb
from core.domain import VersionRef
from core.wire import feature_row_from_pb, key_from_pb, resolved_value_to_pb
from protos.vecshard.v1.internal import features_pb2 as pb
from protos.vecshard.v1.internal import features_pb2_grpc
from registry.feature_values import resolved_values
from registry.features import GroupRow
from shard_server import convert
from shard_server.feature_service import FeatureNode


class FeatureServicer(features_pb2_grpc.FeatureShardServiceServicer):
    def __init__(self, node: FeatureNode) -> None:
        self.node = node

    def PutFeatures(
        self, request_iterator: Iterator[pb.FeatureBatch], context: grpc.ServicerContext
    ) -> pb.FeatureAck:
        written = ignored = 0
        for batch in request_iterator:
            group = VersionRef(batch.group, batch.group_version)
            rows = [GroupRow(*feature_row_from_pb(r)) for r in batch.rows]
            columns = (
                row_columns_from_pb(batch.columns, f"feature group {group}")
                if batch.HasField("columns")
                else None
            )
            ack = self.node.put_message(group, rows, columns)
            written += ack.written
            ignored += ack.ignored_older
        return pb.FeatureAck(written=written, ignored_older=ignored)

    def GetFeatureColumns(
        self, request: pb.FeatureColumnsRequest, context: grpc.ServicerContext
    ) -> pb.FeatureColumnsResponse:
        resolved = self.node.get_columns(
            request.tenant_id,
            convert.group_fetches(request),
            request.request_time_us,
            request.personalized,
        )
        return pb.FeatureColumnsResponse(groups=[resolved_to_pb(r) for r in resolved])

    def GetFeatures(
        self, request: pb.GetFeaturesRequest, context: grpc.ServicerContext
    ) -> pb.GetFeaturesResponse:
        resolved = self.node.get(
            VersionRef(request.group, request.group_version),
            list(request.features),
            [key_from_pb(k) for k in request.entities],
            request.request_time_us,
            request.personalized,
        )
        return pb.GetFeaturesResponse(
            entities=[
                pb.EntityValues(values=[resolved_value_to_pb(v) for v in row])
                for row in resolved_values(resolved)
            ]
        )
