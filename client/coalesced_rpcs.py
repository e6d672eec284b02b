"""The gRPC side of call coalescing (`client.call_coalescing`): how
`RetrievalClient` sends a batch of searches and a batch of lookups, and
cuts the answer back per caller."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

import grpc
import numpy as np

from client.connection import RETRYABLE, Connection
from core import tracing
from core.column_wire import embeddings_from_pb
from core.embedding_columns import EmbeddingColumns, take
from core.errors import InvalidArgument, Unavailable, from_rpc_error
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb
from protos.vecshard.v1 import retrieval_pb2_grpc

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class _RpcTransport(Generic[Req, Resp]):
    """What both transports share: alone through the client's retried
    blocking call; a batch as a gRPC future on the connection's next
    coordinator, its answer handed on (or its failure) and never raised in
    gRPC's callback; a lone request's failure final unless retryable."""

    def __init__(
        self,
        one: Callable[[Req, float], Resp],
        connection: Connection,
        stubs: list[retrieval_pb2_grpc.RetrievalServiceStub],
    ) -> None:
        self._one = one
        self._conn = connection
        self._stubs = stubs

    def one(self, request: Req, timeout: float) -> Resp:
        return self._one(request, timeout)

    def final(self, failure: BaseException) -> BaseException | None:
        if isinstance(failure, grpc.RpcError) and failure.code() not in RETRYABLE:
            return from_rpc_error(failure)
        return None

    def _send(
        self,
        method: str,
        request: Any,
        timeout: float,
        answers: Callable[[Any], list[Resp]],
        done: Callable[[list[Resp] | BaseException], None],
    ) -> None:
        rpc = getattr(self._stubs[self._conn.next_channel()], method)
        # The trace context of whichever thread sends: a batch is nobody's own.
        metadata = (*self._conn.metadata, *tracing.outgoing_metadata())
        call = rpc.future(request, timeout=timeout, metadata=metadata)
        call.add_done_callback(lambda f: done(_outcome(f, answers)))


class RpcSearchTransport(_RpcTransport[pb.SearchRequest, pb.SearchResponse]):
    """Searches: any may share a `SearchBatch` (routes, k, filters, pages),
    which asks for packed hits (the coordinator then builds no message per
    hit; `client.search_results.hit_list` reads either form); a batch of one
    goes as a plain `Search`."""

    def group(self, request: pb.SearchRequest) -> Hashable:
        return None

    def weight(self, request: pb.SearchRequest) -> int:
        return 1

    def start(
        self,
        requests: list[pb.SearchRequest],
        timeout: float,
        done: Callable[[list[pb.SearchResponse] | BaseException], None],
    ) -> None:
        if len(requests) == 1:
            self._send("Search", requests[0], timeout, lambda r: [r], done)
            return
        batch = pb.SearchBatchRequest(requests=requests, packed_hits=True)
        self._send("SearchBatch", batch, timeout, lambda r: list(r.responses), done)


def _outcome(
    future: grpc.Future[Any], answers: Callable[[Any], list[Resp]]
) -> list[Resp] | BaseException:
    """Never raises: an exception in a gRPC done-callback would be logged and
    lost, and with it the batch's slot and its callers' answers."""
    try:
        if future.cancelled():  # the channel closed under it
            return Unavailable("the batch call was cancelled (the client closed)")
        failure = future.exception()
        return failure if failure is not None else answers(future.result())
    except Exception as exc:
        return exc


class RpcLookupTransport(_RpcTransport[pb.BatchGetEmbeddingsRequest, EmbeddingColumns]):
    """`get_embeddings` (columnar lookups by entity id, in the client's
    tenant): requests of one embedding version and the same options share
    one `BatchGetEmbeddings` carrying every caller's ids in turn; its answer
    is decoded once and cut back per caller (`cut_answer`)."""

    def group(self, request: pb.BatchGetEmbeddingsRequest) -> Hashable:
        # Everything the ids are asked with (the access context is the client's own).
        return (
            request.embedding_name,
            request.embedding_version,
            request.include_vectors,
            request.include_attributes,
        )

    def weight(self, request: pb.BatchGetEmbeddingsRequest) -> int:
        return max(1, len(request.entity_ids))

    def start(
        self,
        requests: list[pb.BatchGetEmbeddingsRequest],
        timeout: float,
        done: Callable[[list[EmbeddingColumns] | BaseException], None],
    ) -> None:
        if any(r.keys or not r.columnar for r in requests):
            raise InvalidArgument("only columnar lookups by entity id are coalesced")
        merged = pb.BatchGetEmbeddingsRequest()
        merged.CopyFrom(requests[0])
        for r in requests[1:]:
            merged.entity_ids.extend(r.entity_ids)
        counts = [len(r.entity_ids) for r in requests]
        self._send(
            "BatchGetEmbeddings", merged, timeout, lambda r: cut_answer(r.columns, counts), done
        )


def cut_answer(columns: cpb.EmbeddingColumns, counts: Sequence[int]) -> list[EmbeddingColumns]:
    """The answer for keys laid end to end, decoded (and checked) once, cut
    into consecutive parts of `counts` keys: views of the whole's arrays."""
    whole = embeddings_from_pb(columns, sum(counts), "BatchGetEmbeddings answer")
    ends = np.cumsum(counts).tolist()
    return [take(whole, slice(end - n, end)) for n, end in zip(counts, ends, strict=True)]
