"""Protobuf ↔ domain for evaluation: `EvaluationService` (public) and the
shards' `CheckRecall` (internal). Kept apart from `convert.py`, which holds
the search and write paths."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coordinator.convert import access_from_pb
from coordinator.evaluation import ShardRecall
from coordinator.model import Access, SearchResult
from core.column_wire import embeddings_to_pb
from core.domain import EntityKey
from core.embedding_columns import EmbeddingColumns
from core.errors import InvalidArgument
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import evaluation_pb2 as pb
from protos.vecshard.v1.internal import shard_pb2 as spb


def access(a: cpb.AccessContext) -> Access:
    return access_from_pb(a)


def query_matrix(raw: bytes, dimension: int) -> np.ndarray:
    if dimension <= 0 or len(raw) % (4 * dimension):
        raise InvalidArgument(
            f"vectors: {len(raw)} bytes is not a whole number of rows of {dimension} float32 values"
        )
    return np.frombuffer(raw, dtype="<f4").reshape(-1, dimension).astype(np.float32)


def lookup_keys(req: pb.LookupIndexRequest) -> list[EntityKey]:
    """Bare ids: tenant and type are the caller's and the index's."""
    return [EntityKey("", "", i) for i in req.entity_ids]


def lookup_index_response(found: EmbeddingColumns) -> pb.LookupIndexResponse:
    return pb.LookupIndexResponse(columns=embeddings_to_pb(found))


def search_index_response(results: Sequence[SearchResult]) -> pb.SearchIndexResponse:
    return pb.SearchIndexResponse(
        results=[
            pb.IndexHits(
                entity_ids=[h.key.entity_id for h in r.hits], scores=[h.score for h in r.hits]
            )
            for r in results
        ],
        partial=any(r.partial for r in results),
    )


def shard_recall(resp: spb.CheckRecallResponse) -> ShardRecall:
    return ShardRecall(
        resp.shard_id,
        resp.queries,
        resp.recall,
        {k.kind: k.recall for k in resp.kinds},
        {k.kind: int(k.rows) for k in resp.kinds},
        int(resp.rows),
        {k.kind: k.queries for k in resp.kinds},
    )


def check_recall_response(shards: Sequence[ShardRecall]) -> pb.CheckRecallResponse:
    return pb.CheckRecallResponse(
        shards=[
            pb.ShardRecall(
                shard_id=s.shard_id,
                queries=s.queries,
                recall=s.recall,
                recall_by_kind=s.recall_by_kind,
                rows_by_kind=s.rows_by_kind,
                rows=s.rows,
                queries_by_kind=s.queries_by_kind,
            )
            for s in shards
        ]
    )
