"""A typed client for the coordinator's EvaluationService: measuring an
index version before it serves (`vecshard embeddings evaluate`). Every call
only reads, so they are retried on another coordinator like other reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from client.arguments import float_vectors
from client.connection import Connection, RetryPolicy
from core.column_wire import embeddings_from_pb
from core.embedding_columns import EmbeddingColumns
from core.errors import InvalidArgument
from core.vectors import to_bytes
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import evaluation_pb2 as pb
from protos.vecshard.v1 import evaluation_pb2_grpc


@dataclass(frozen=True)
class ShardRecall:
    shard_id: str
    queries: int
    recall: float
    recall_by_kind: dict[str, float]
    rows_by_kind: dict[str, int]
    rows: int
    # (query, segment) pairs each recall_by_kind was measured on.
    queries_by_kind: dict[str, int] = field(default_factory=dict)


class EvaluationClient:
    def __init__(
        self,
        address: str | Sequence[str],
        *,
        purpose: str = "evaluation",
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.purpose = purpose
        self.timeout = timeout
        self._conn = Connection(address, retry)
        self._stubs = [evaluation_pb2_grpc.EvaluationServiceStub(c) for c in self._conn.channels]

    def __enter__(self) -> EvaluationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def _rpc(self, name: str, request: Any, timeout: float | None) -> Any:
        return self._conn.call(
            lambda i: getattr(self._stubs[i], name),
            request,
            self.timeout if timeout is None else timeout,
        )

    def search_index(
        self,
        index: str,
        tenant_id: str,
        vectors: np.ndarray,
        k: int,
        *,
        timeout: float | None = None,
    ) -> tuple[list[list[str]], bool]:
        """Top-k entity ids per query row of `vectors` on index version
        `index` (NAME@VERSION), scoped to `tenant_id`; and whether any answer
        was partial."""
        name, _, version = index.partition("@")
        matrix = np.ascontiguousarray(float_vectors(vectors, "vectors"))
        if matrix.ndim != 2 or not name or not version:
            raise InvalidArgument("expected an (n, d) query matrix and an index NAME@VERSION")
        req = pb.SearchIndexRequest(
            access=cpb.AccessContext(tenant_id=tenant_id, purpose=self.purpose),
            index_name=name,
            index_version=version,
            vectors=to_bytes(matrix.reshape(-1)),
            dimension=matrix.shape[1],
            k=k,
        )
        resp = self._rpc("SearchIndex", req, timeout)
        return [list(r.entity_ids) for r in resp.results], bool(resp.partial)

    def lookup_index(
        self,
        index: str,
        tenant_id: str,
        entity_ids: Sequence[str],
        *,
        include_vectors: bool = False,
        timeout: float | None = None,
    ) -> EmbeddingColumns:
        """The records index version `index` (NAME@VERSION) itself holds
        for `entity_ids` of `tenant_id`, in order, a status per id — not
        those of its embedding version's serving index version, which
        `RetrievalClient.batch_get` reads."""
        name, _, version = index.partition("@")
        if not name or not version:
            raise InvalidArgument(f"index {index!r}: expected NAME@VERSION")
        req = pb.LookupIndexRequest(
            access=cpb.AccessContext(tenant_id=tenant_id, purpose=self.purpose),
            index_name=name,
            index_version=version,
            entity_ids=entity_ids,
            include_vectors=include_vectors,
        )
        resp = self._rpc("LookupIndex", req, timeout)
        return embeddings_from_pb(resp.columns, len(entity_ids), "LookupIndex answer")

    def check_recall(
        self, index: str, k: int, sample_per_shard: int, seed: int = 0, timeout: float | None = None
    ) -> list[ShardRecall]:
        name, _, version = index.partition("@")
        req = pb.CheckRecallRequest(
            index_name=name,
            index_version=version,
            k=k,
            sample_per_shard=sample_per_shard,
            seed=seed,
        )
        resp = self._rpc("CheckRecall", req, timeout)
        return [
            ShardRecall(
                s.shard_id,
                s.queries,
                s.recall,
                dict(s.recall_by_kind),
                {k: int(v) for k, v in s.rows_by_kind.items()},
                int(s.rows),
                dict(s.queries_by_kind),
            )
            for s in resp.shards
        ]
