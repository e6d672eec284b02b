"""RetrievalService: proto → domain → RetrievalEngine → proto, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc.aio

from coordinator import convert, feature_convert
from coordinator.features import FeatureEngine
from coordinator.service import RetrievalEngine
from core.domain import VersionRef
from protos.vecshard.v1 import retrieval_pb2 as pb
from protos.vecshard.v1 import retrieval_pb2_grpc


class RetrievalServicer(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(
        self, engine: RetrievalEngine, features: FeatureEngine, default_timeout: float
    ) -> None:
        self.engine = engine
        self.features = features
        self.default_timeout = default_timeout

    def _timeout(self, context: grpc.aio.ServicerContext[Any, Any]) -> float:
        remaining = context.time_remaining()
        return remaining if remaining is not None else self.default_timeout

    async def Search(
        self,
        request: pb.SearchRequest,
        context: grpc.aio.ServicerContext[pb.SearchRequest, pb.SearchResponse],
    ) -> pb.SearchResponse:
        async with self.engine.admission():
            result = await self.engine.search(
                convert.search_from_pb(request), self._timeout(context)
            )
        return convert.search_to_pb(result)

    async def SearchBatch(
        self,
        request: pb.SearchBatchRequest,
        context: grpc.aio.ServicerContext[pb.SearchBatchRequest, pb.SearchBatchResponse],
    ) -> pb.SearchBatchResponse:
        queries = [convert.search_from_pb(r) for r in request.requests]
        async with self.engine.admission(len(queries)):
            results = await self.engine.search_many(queries, self._timeout(context))
        packed = request.packed_hits
        return pb.SearchBatchResponse(responses=[convert.search_to_pb(r, packed) for r in results])

    async def SearchDebug(
        self,
        request: pb.SearchRequest,
        context: grpc.aio.ServicerContext[pb.SearchRequest, pb.SearchDebugResponse],
    ) -> pb.SearchDebugResponse:
        async with self.engine.admission():
            result, bundle_json = await self.engine.search_debug(
                convert.search_from_pb(request), self._timeout(context)
            )
        return convert.search_debug_to_pb(result, bundle_json)

    async def BatchGetEmbeddings(
        self,
        request: pb.BatchGetEmbeddingsRequest,
        context: grpc.aio.ServicerContext[
            pb.BatchGetEmbeddingsRequest, pb.BatchGetEmbeddingsResponse
        ],
    ) -> pb.BatchGetEmbeddingsResponse:
        async with self.engine.admission():  # shed like every read
            keys, found = await self.engine.batch_get(
                convert.access_from_pb(request.access),
                VersionRef(request.embedding_name, request.embedding_version),
                convert.lookup_keys_from_pb(request),
                request.include_vectors,
                self._timeout(context),
                include_attributes=request.include_attributes or not request.columnar,
            )
        return convert.lookups_to_pb(keys, found, request.columnar)

    async def Upsert(
        self,
        request: pb.UpsertRequest,
        context: grpc.aio.ServicerContext[pb.UpsertRequest, pb.UpsertResponse],
    ) -> pb.UpsertResponse:
        written, ignored = await self.engine.upsert(
            convert.access_from_pb(request.access),
            VersionRef(request.embedding_name, request.embedding_version),
            [convert.record_from_pb(r, i) for i, r in enumerate(request.records)],
            self._timeout(context),
        )
        return pb.UpsertResponse(written=written, ignored_stale=ignored)

    async def UpsertColumns(
        self,
        request: pb.UpsertColumnsRequest,
        context: grpc.aio.ServicerContext[pb.UpsertColumnsRequest, pb.UpsertResponse],
    ) -> pb.UpsertResponse:
        written, ignored = await self.engine.upsert_columns(
            *convert.upsert_columns_from_pb(request), self._timeout(context)
        )
        return pb.UpsertResponse(written=written, ignored_stale=ignored)

    async def Delete(
        self,
        request: pb.DeleteRequest,
        context: grpc.aio.ServicerContext[pb.DeleteRequest, pb.DeleteResponse],
    ) -> pb.DeleteResponse:
        deleted = await self.engine.delete(
            convert.access_from_pb(request.access),
            VersionRef(request.embedding_name, request.embedding_version),
            convert.keys_from_pb(request.keys),
            request.source_version,
            self._timeout(context),
        )
        return pb.DeleteResponse(deleted=deleted)

    async def GetFeatures(
        self,
        request: pb.GetFeaturesRequest,
        context: grpc.aio.ServicerContext[pb.GetFeaturesRequest, pb.GetFeaturesResponse],
    ) -> pb.GetFeaturesResponse:
        access = convert.access_from_pb(request.access)
        async with self.engine.admission():
            result = await self.features.get(
                access,
                VersionRef(request.feature_set, request.feature_set_version),
                feature_convert.entities_from_pb(request),
                request.request_time_us,
                request.personalized,
                self._timeout(context),
            )
        return feature_convert.features_to_pb(result, request)

    async def PutFeatures(
        self,
        request_iterator: AsyncIterator[pb.PutFeaturesRequest],
        context: grpc.aio.ServicerContext[pb.PutFeaturesRequest, pb.PutFeaturesResponse],
    ) -> pb.PutFeaturesResponse:
        written = ignored = 0
        async for request in request_iterator:
            rows, columns = feature_convert.feature_put_from_pb(request)
            w, i = await self.features.put(
                convert.access_from_pb(request.access),
                VersionRef(request.group, request.group_version),
                rows,
                self._timeout(context),
                columns,
            )
            written, ignored = written + w, ignored + i
        return pb.PutFeaturesResponse(written=written, ignored_older=ignored)

    async def DescribeRoute(
        self,
        request: pb.DescribeRouteRequest,
        context: grpc.aio.ServicerContext[pb.DescribeRouteRequest, pb.DescribeRouteResponse],
    ) -> pb.DescribeRouteResponse:
        return convert.describe_route_to_pb(await self.engine.describe_route(request.route))
