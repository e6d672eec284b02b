"""EvaluationService: proto → `coordinator.evaluation` → proto."""

from __future__ import annotations

from typing import Any

import grpc.aio

from coordinator import evaluation_convert as convert
from coordinator.evaluation import Evaluator
from core.domain import VersionRef
from protos.vecshard.v1 import evaluation_pb2 as pb
from protos.vecshard.v1 import evaluation_pb2_grpc


class EvaluationServicer(evaluation_pb2_grpc.EvaluationServiceServicer):
    def __init__(self, evaluator: Evaluator, default_timeout: float) -> None:
        self.evaluator = evaluator
        self.default_timeout = default_timeout

    def _timeout(self, context: grpc.aio.ServicerContext[Any, Any]) -> float:
        left = context.time_remaining()
        return self.default_timeout if left is None else max(left, 0.001)

    async def SearchIndex(
        self,
        request: pb.SearchIndexRequest,
        context: grpc.aio.ServicerContext[pb.SearchIndexRequest, pb.SearchIndexResponse],
    ) -> pb.SearchIndexResponse:
        results = await self.evaluator.search_index(
            convert.access(request.access),
            VersionRef(request.index_name, request.index_version),
            convert.query_matrix(request.vectors, request.dimension),
            request.k or 10,
            self._timeout(context),
        )
        return convert.search_index_response(results)

    async def CheckRecall(
        self,
        request: pb.CheckRecallRequest,
        context: grpc.aio.ServicerContext[pb.CheckRecallRequest, pb.CheckRecallResponse],
    ) -> pb.CheckRecallResponse:
        shards = await self.evaluator.check_recall(
            VersionRef(request.index_name, request.index_version),
            request.k or 10,
            request.sample_per_shard or 100,
            request.seed,
            self._timeout(context),
        )
        return convert.check_recall_response(shards)

    async def LookupIndex(
        self,
        request: pb.LookupIndexRequest,
        context: grpc.aio.ServicerContext[pb.LookupIndexRequest, pb.LookupIndexResponse],
    ) -> pb.LookupIndexResponse:
        found = await self.evaluator.lookup_index(
            convert.access(request.access),
            VersionRef(request.index_name, request.index_version),
            convert.lookup_keys(request),
            request.include_vectors,
            self._timeout(context),
        )
        return convert.lookup_index_response(found)
