"""ShardErasureService: proto → domain → ShardEraser → proto, nothing else."""

from __future__ import annotations

import time

import grpc

from core.wire import key_from_pb
from protos.vecshard.v1.internal import erasure_pb2 as pb
from protos.vecshard.v1.internal import erasure_pb2_grpc
from shard_server.erasure import ShardEraser


class ErasureServicer(erasure_pb2_grpc.ShardErasureServiceServicer):
    def __init__(self, eraser: ShardEraser) -> None:
        self.eraser = eraser

    def DeleteFeatureRows(
        self, request: pb.DeleteFeatureRowsRequest, context: grpc.ServicerContext
    ) -> pb.DeleteFeatureRowsResponse:
        # 0 (a coordinator older than the field): the shard's own clock.
        erased_at = request.erased_at_us or time.time_ns() // 1000
        deleted = self.eraser.delete_feature_rows(
            [key_from_pb(k) for k in request.entities], erased_at
        )
        return pb.DeleteFeatureRowsResponse(deleted=deleted)

    def Purge(self, request: pb.PurgeRequest, context: grpc.ServicerContext) -> pb.PurgeAck:
        return pb.PurgeAck(partitions=self.eraser.purge())

    def ScanFiles(self, request: pb.ScanRequest, context: grpc.ServicerContext) -> pb.ScanResponse:
        files, matches = self.eraser.scan(list(request.data_patterns), request.key_pattern)
        return pb.ScanResponse(
            files=files,
            matches=[pb.FileMatch(file=m.file, kind=m.kind, pattern=m.pattern) for m in matches],
        )
