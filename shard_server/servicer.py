"""ShardService: proto → domain → ShardNode → proto, nothing else."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from core.column_wire import embeddings_to_pb
from core.wire import key_from_pb
from protos.vecshard.v1.internal import shard_pb2 as pb
from protos.vecshard.v1.internal import shard_pb2_grpc
from shard_server import convert
from shard_server.access_guard import refused_queries
from shard_server.memory import process_memory
from shard_server.service import DEFAULT_SUMMARY_LEASE, ShardNode


class ShardServicer(shard_pb2_grpc.ShardServiceServicer):
    def __init__(self, node: ShardNode) -> None:
        self.node = node

    def Upsert(
        self, request_iterator: Iterator[pb.UpsertBatch], context: grpc.ServicerContext
    ) -> pb.UpsertAck:
        written = ignored = sequence = 0
        for batch in request_iterator:
            result = self.node.upsert(
                convert.index_ref(batch.index),
                [convert.record_from_pb(r) for r in batch.records],
                batch.writer,
            )
            written += result.written
            ignored += result.ignored_stale
            sequence = result.sequence
        return pb.UpsertAck(written=written, ignored_stale=ignored, sequence=sequence)

    def UpsertColumns(
        self, request_iterator: Iterator[pb.UpsertColumnsBatch], context: grpc.ServicerContext
    ) -> pb.UpsertAck:
        written = ignored = sequence = 0
        for batch in request_iterator:
            tenant_id, records, buckets = convert.columns_batch_from_pb(batch)
            result = self.node.upsert_columns(
                convert.index_ref(batch.index), tenant_id, records, buckets, batch.writer
            )
            written += result.written
            ignored += result.ignored_stale
            sequence = result.sequence
        return pb.UpsertAck(written=written, ignored_stale=ignored, sequence=sequence)

    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteAck:
        result = self.node.delete(
            convert.index_ref(request.index),
            [key_from_pb(k) for k in request.keys],
            request.source_version,
        )
        return pb.DeleteAck(deleted=result.written, sequence=result.sequence)

    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchResponse:
        results = self.node.search(
            convert.index_ref(request.index), convert.queries_from_pb(request)
        )
        return convert.search_response(self.node.shard_id, results)

    def SearchPacked(
        self, request: pb.PackedSearchRequest, context: grpc.ServicerContext
    ) -> pb.PackedSearchResponse:
        queries = convert.packed_queries_from_pb(request)
        refused = refused_queries()
        if refused:  # searched: the others; answered refused: these
            queries = [q for i, q in enumerate(queries) if i not in refused]
        results = self.node.search(convert.index_ref(request.index), queries)
        return convert.packed_search_response(self.node.shard_id, results, refused)

    def BatchGet(
        self, request: pb.BatchGetRequest, context: grpc.ServicerContext
    ) -> pb.BatchGetResponse:
        if request.columnar:
            columns = self.node.batch_get_columns(
                convert.index_ref(request.index),
                convert.lookup_keys(request),
                request.include_vectors,
                request.include_attributes,
            )
            return pb.BatchGetResponse(columns=embeddings_to_pb(columns))
        lookups = self.node.batch_get(
            convert.index_ref(request.index), [key_from_pb(k) for k in request.keys]
        )
        return convert.lookups_to_pb(lookups, request.include_vectors)

    def Describe(
        self, request: pb.DescribeRequest, context: grpc.ServicerContext
    ) -> pb.DescribeResponse:
        return convert.describe_response(
            self.node.shard_id,
            self.node.describe(
                request.include_summaries,
                request.summary_lease_seconds or DEFAULT_SUMMARY_LEASE,
                request.holder,
            ),
            self.node.store.sequence,
            process_memory(),
        )

    def Flush(self, request: pb.FlushRequest, context: grpc.ServicerContext) -> pb.FlushResponse:
        stats = self.node.flush(convert.index_ref(request.index), request.compact)
        return pb.FlushResponse(stats=convert.index_stats_pb(stats))

    def CheckRecall(
        self, request: pb.CheckRecallRequest, context: grpc.ServicerContext
    ) -> pb.CheckRecallResponse:
        check = self.node.check_recall(
            convert.index_ref(request.index), request.k or 10, request.sample or 100, request.seed
        )
        return convert.recall_check_pb(self.node.shard_id, check)
