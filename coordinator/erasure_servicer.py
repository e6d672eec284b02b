"""ErasureService: proto → domain → ErasureEngine → proto, nothing else."""

from __future__ import annotations

from typing import Any

import grpc.aio

from coordinator.erasure import Copy, ErasureEngine
from core.domain import VersionRef
from core.wire import key_from_pb
from protos.vecshard.v1 import erasure_pb2 as pb
from protos.vecshard.v1 import erasure_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def _copy_pb(c: Copy) -> pb.EmbeddingCopy:
    return pb.EmbeddingCopy(
        embedding_name=c.embedding.name,
        embedding_version=c.embedding.version,
        index_name=c.index.name,
        index_version=c.index.version,
        vector=c.vector,
        source_version=c.source_version,
    )


def _copy(c: pb.EmbeddingCopy) -> Copy:
    return Copy(
        VersionRef(c.embedding_name, c.embedding_version),
        VersionRef(c.index_name, c.index_version),
        c.vector,
        c.source_version,
    )


class ErasureServicer(erasure_pb2_grpc.ErasureServiceServicer):
    def __init__(self, engine: ErasureEngine) -> None:
        self.engine = engine

    async def PlanErasure(self, request: pb.ErasureRequest, context: Context) -> pb.ErasurePlan:
        plan = await self.engine.plan(key_from_pb(request.subject))
        return pb.ErasurePlan(
            copies=[_copy_pb(c) for c in plan.copies],
            embedding_versions=[str(r) for r in plan.embedding_versions],
            index_versions=[str(ix.ref) for ix in plan.indexes],
            feature_groups=[f"{g.name}@{g.version}" for g in plan.groups],
            max_source_version=plan.max_source_version,
        )

    async def EraseSubject(self, request: pb.ErasureRequest, context: Context) -> pb.EraseResponse:
        version, records, rows, indexes = await self.engine.erase(
            key_from_pb(request.subject), request.source_version
        )
        return pb.EraseResponse(
            source_version=version,
            records_deleted=records,
            feature_rows_deleted=rows,
            index_versions=indexes,
        )

    async def PurgeSubject(self, request: pb.ErasureRequest, context: Context) -> pb.PurgeResponse:
        shards, partitions = await self.engine.purge(key_from_pb(request.subject))
        return pb.PurgeResponse(shards=shards, index_partitions_compacted=partitions)

    async def VerifyErasure(self, request: pb.VerifyRequest, context: Context) -> pb.VerifyResponse:
        v = await self.engine.verify(
            key_from_pb(request.erasure.subject),
            [_copy(c) for c in request.copies],
            request.scan_files,
        )
        return pb.VerifyResponse(
            searches=v.searches,
            search_matches=v.search_matches,
            lookups=v.lookups,
            lookup_matches=v.lookup_matches,
            feature_reads=v.feature_reads,
            feature_matches=v.feature_matches,
            files_scanned=v.files_scanned,
            file_matches=v.file_matches,
            markers=v.markers,
            findings=[pb.Finding(where=w, what=x) for w, x in v.findings],
        )
