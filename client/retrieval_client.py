"""A typed Python client for the public RetrievalService.

It checks what it can before sending (vector dimension and finiteness against
the route, k, tenant, purpose, timeout), so mistakes fail fast with a clear
`InvalidArgument`, and it raises the `core.errors` tree for server errors.

    with RetrievalClient("127.0.0.1:7300", tenant_id="acme", purpose="recommendation") as c:
        c.upsert("items", "v1", [Record("item-1", vec, attributes={"category": "books"})])
        c.upsert_matrix("items", "v1", ids, matrix, attributes={"price": prices})  # bulk
        for hit in c.search("home_feed", query, k=10, filter=Eq("category", "books")).hits:
            print(hit.rank, hit.key.entity_id, hit.score)
        for answer in c.search_batch("home_feed", queries, k=10):  # many: arrays, not objects
            print(answer.hits.entity_ids, answer.hits.scores)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from client.arguments import entity_ids as checked_ids
from client.arguments import float_vectors, integer, items_of, key_parts, text
from client.call_coalescing import DEFAULT_COALESCING, CallCoalescer, Coalescing
from client.coalesced_rpcs import RpcLookupTransport, RpcSearchTransport
from client.column_writes import MAX_REQUEST_BYTES, ColumnWrites
from client.connection import Connection, RetryPolicy, now_micros
from client.credentials import Credentials, resolve
from client.feature_calls import FeatureCalls
from client.feature_results import EntityFeatures, FeatureResponse, FeatureValue
from client.search_batches import SearchBatches
from client.search_results import METRIC_NAMES, Hit, SearchResponse, hit_list, response_fields
from core import tracing
from core.column_wire import embeddings_from_pb
from core.domain import AttrValue, EntityKey
from core.embedding_columns import EmbeddingColumns
from core.errors import InvalidArgument
from core.filters import Filter
from core.hits_wire import HitColumns
from core.vectors import check_vector, from_bytes, to_bytes
from core.wire import attributes_from_pb, filter_to_pb, key_from_pb, key_to_pb, value_to_pb

# Feature results live in client.feature_results; named here too for callers
# that import them from the client module.
__all__ = [
    "EmbeddingBatch",
    "EntityFeatures",
    "FeatureResponse",
    "FeatureValue",
    "Hit",
    "HitColumns",
    "Lookup",
    "Record",
    "RetrievalClient",
    "RouteInfo",
    "SearchResponse",
]
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb
from protos.vecshard.v1 import retrieval_pb2_grpc


@dataclass(frozen=True)
class Record:
    """One embedding to write; tenant and entity type default to the client's
    tenant and the family's entity type."""

    entity_id: str
    vector: np.ndarray | Sequence[float]
    attributes: Mapping[str, AttrValue] = field(default_factory=dict)
    source_version: int = 0
    model_version: str = ""
    entity_type: str = ""
    tenant_id: str = ""


@dataclass(frozen=True)
class Lookup:
    key: EntityKey
    # "found" | "missing" | "deleted" | "unavailable" (its shard did not answer)
    status: str
    vector: np.ndarray | None = None
    attributes: Mapping[str, AttrValue] = field(default_factory=dict)
    source_version: int = 0
    model_version: str = ""
    created_at_unix_micros: int = 0
    norm: float = 0.0


@dataclass(frozen=True, eq=False)
class EmbeddingBatch(EmbeddingColumns):
    """Stored embeddings of a batch of keys as arrays, in key order:
    `vectors` (keys × dimension float32; zero rows where not found), a
    status code per key (`statuses()` names them: found, missing, deleted,
    unavailable), `source_version`, `created_at`, `norm` and model versions
    (`model_version(i)`)."""

    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteInfo:
    route: str
    bundle: str
    index: str
    embedding: str
    query_embedding: str
    dimension: int
    metric: str
    attributes: Mapping[str, str]
    max_k: int


_STATUS = {
    cpb.FOUND: "found",
    cpb.MISSING: "missing",
    cpb.DELETED: "deleted",
    cpb.LOOKUP_UNAVAILABLE: "unavailable",
}


class RetrievalClient(FeatureCalls, ColumnWrites, SearchBatches):
    """`address`: one coordinator, several ("h1:p,h2:p" or a list), or a DNS
    name (`dns:///name:port`); calls rotate over them and idempotent calls
    are retried on another within the deadline (`client.connection`).

    Credentials: `credentials=`, or `token=` (a bearer JWT) and
    `root_certificates=` (PEM of a private CA), else the environment
    (`client.credentials`). `tenant_id` and `purpose` must be ones the
    caller's grant holds; empty means the grant's only one (a principal
    granted several must name one). `principal` is not sent as identity: the
    coordinator records the token's principal.

    `coalescing`: threads searching at once through one client share
    `SearchBatch` calls, and their `get_embeddings` of one embedding version
    share `BatchGetEmbeddings` calls (`client.call_coalescing`: a lone call
    goes alone, at once; answers, errors and deadlines stay each caller's
    own); None sends every call as its own."""

    def __init__(
        self,
        address: str | Sequence[str],
        *,
        tenant_id: str = "",
        purpose: str = "",
        principal: str = "",
        subject_id: str = "",
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        credentials: Credentials | None = None,
        token: str | None = None,
        root_certificates: bytes | None = None,
        coalescing: Coalescing | None = DEFAULT_COALESCING,
    ) -> None:
        if not isinstance(tenant_id, str):
            raise InvalidArgument("tenant_id must be a string (empty: the grant's only tenant)")
        if not isinstance(purpose, str):
            raise InvalidArgument("purpose must be a string, e.g. 'recommendation'")
        if not timeout > 0:
            raise InvalidArgument(f"timeout={timeout}: expected a positive number of seconds")
        self.address = address
        self.timeout = timeout
        self.access = cpb.AccessContext(
            tenant_id=tenant_id, purpose=purpose, principal=principal, subject_id=subject_id
        )
        self._conn = Connection(
            address, retry, credentials=resolve(credentials, token, root_certificates)
        )
        self._stubs = [retrieval_pb2_grpc.RetrievalServiceStub(ch) for ch in self._conn.channels]
        self._routes: dict[str, RouteInfo] = {}
        self.searches: CallCoalescer[pb.SearchRequest, pb.SearchResponse] | None = None
        self.lookups: CallCoalescer[pb.BatchGetEmbeddingsRequest, EmbeddingColumns] | None = None
        if coalescing is not None:
            searches = RpcSearchTransport(
                lambda req, t: self._rpc("Search", req, t), self._conn, self._stubs
            )
            self.searches = CallCoalescer(searches, coalescing)
            lookups = RpcLookupTransport(self._lookup_columns, self._conn, self._stubs)
            self.lookups = CallCoalescer(lookups, coalescing, max_weight=coalescing.max_lookup_keys)

    def __enter__(self) -> RetrievalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for coalesced in (self.searches, self.lookups):
            if coalesced is not None:
                coalesced.close()
        self._conn.close()

    def _timeout(self, timeout: float | None) -> float:
        t = self.timeout if timeout is None else timeout
        if not t > 0:
            raise InvalidArgument(f"timeout={t}: expected a positive number of seconds")
        return t

    def _rpc(self, name: str, request: Any, timeout: float | None, idempotent: bool = True) -> Any:
        """One RPC by name on the next coordinator, retried as `client.connection` says."""

        def method(i: int) -> Any:
            rpc = getattr(self._stubs[i], name)
            # The trace context rides in the metadata beside the credentials
            # the connection adds (a no-op without OpenTelemetry).
            trace = tracing.outgoing_metadata()
            if isinstance(request, list):  # a client stream: a fresh iterator per attempt
                return lambda req, timeout, metadata: rpc(
                    iter(req), timeout=timeout, metadata=(*metadata, *trace)
                )
            return lambda req, timeout, metadata: rpc(
                req, timeout=timeout, metadata=(*metadata, *trace)
            )

        with tracing.span(f"vecshard.client/{name}"):
            return self._conn.call(method, request, self._timeout(timeout), idempotent=idempotent)

    def describe_route(
        self, route: str, *, refresh: bool = False, timeout: float | None = None
    ) -> RouteInfo:
        if refresh or route not in self._routes:
            r = self._rpc("DescribeRoute", pb.DescribeRouteRequest(route=route), timeout)
            self._routes[route] = RouteInfo(
                route=r.route,
                bundle=r.bundle,
                index=f"{r.index_name}@{r.index_version}",
                embedding=f"{r.embedding_name}@{r.embedding_version}",
                query_embedding=f"{r.query_embedding_name}@{r.query_embedding_version}",
                dimension=r.dimension,
                metric=METRIC_NAMES.get(r.metric, "unspecified"),
                attributes={a.name: a.type for a in r.attributes},
                max_k=r.max_k,
            )
        return self._routes[route]

    def search(
        self,
        route: str,
        vector: np.ndarray | Sequence[float],
        k: int = 10,
        *,
        filter: Filter | None = None,  # noqa: A002 - the natural name for callers
        timeout: float | None = None,
        require_complete: bool = False,
        cursor: str = "",
        skip_rerank: bool = False,
    ) -> SearchResponse[list[Hit]]:
        info = self.describe_route(text(route, "route"), timeout=timeout)
        vec = float_vectors(vector, "query vector")
        check_vector(vec, info.dimension, what="query vector")
        k = integer(k, "k")
        if not 1 <= k <= info.max_k:
            raise InvalidArgument(f"k={k!r}: expected an int in 1..{info.max_k}")
        req = pb.SearchRequest(
            route=route,
            access=self.access,
            query_vector=to_bytes(vec),
            k=k,
            filter=filter_to_pb(filter),
            require_complete=require_complete,
            cursor=cursor,
            skip_rerank=skip_rerank,
        )
        if self.searches is None:
            r = self._rpc("Search", req, timeout)
        else:
            r = self.searches.call(req, self._timeout(timeout))
        return SearchResponse(hits=hit_list(r), **response_fields(r))

    def _record_pb(self, r: Record, dim: int | None, now: int) -> cpb.EmbeddingRecord:
        text(r.entity_id, "record entity_id")
        vec = float_vectors(r.vector, f"record {r.entity_id!r}")
        if vec.ndim != 1:
            raise InvalidArgument(
                f"record {r.entity_id!r}: vector must be 1-d, got shape {vec.shape}"
            )
        check_vector(vec, dim if dim is not None else vec.shape[0], what=f"record {r.entity_id!r}")
        return cpb.EmbeddingRecord(
            key=cpb.EntityKey(
                tenant_id=r.tenant_id, entity_type=r.entity_type, entity_id=r.entity_id
            ),
            vector=to_bytes(vec),
            source_version=integer(r.source_version, f"record {r.entity_id!r}: source_version")
            or now,
            model_version=r.model_version,
            attributes={k: value_to_pb(v) for k, v in r.attributes.items()},
        )

    def upsert(
        self,
        embedding_name: str,
        embedding_version: str,
        records: Iterable[Record],
        *,
        batch_size: int = 1000,
        timeout: float | None = None,
    ) -> tuple[int, int]:
        """Writes in batches; returns (written, ignored_stale). Every record is
        checked (same dimension, finite) before the first batch is sent."""
        items = items_of(records, "records", "a list of Record")
        for i, r in enumerate(items):
            if not isinstance(r, Record):
                raise InvalidArgument(f"records[{i}]: {type(r).__name__}; expected a Record")
        first = float_vectors(items[0].vector, f"record {items[0].entity_id!r}") if items else None
        dim = int(first.shape[0]) if first is not None and first.ndim == 1 else None
        now = now_micros()  # one version for every unversioned record: retries repeat it
        protos = [self._record_pb(r, dim, now) for r in items]
        # Fewer records per request for large vectors, as upsert_matrix does:
        # 1,000 records of 16,384 dimensions passed the 64 MiB message limit.
        step = max(1, min(batch_size, MAX_REQUEST_BYTES // max(1, 4 * (dim or 1))))
        written = ignored = 0
        for i in range(0, len(protos), step):
            req = pb.UpsertRequest(
                access=self.access,
                embedding_name=embedding_name,
                embedding_version=embedding_version,
                records=protos[i : i + step],
            )
            resp = self._rpc("Upsert", req, timeout)
            written += resp.written
            ignored += resp.ignored_stale
        return written, ignored

    def _keys(self, keys: Iterable[str | EntityKey]) -> list[cpb.EntityKey]:
        return [
            cpb.EntityKey(entity_id=k)
            if isinstance(k, str)
            else key_to_pb(EntityKey(*key_parts(k, f"keys[{i}]", (3,))))
            for i, k in enumerate(items_of(keys, "keys", "a list of entity ids or EntityKeys"))
        ]

    def delete(
        self,
        embedding_name: str,
        embedding_version: str,
        keys: Iterable[str | EntityKey],
        *,
        source_version: int = 0,
        timeout: float | None = None,
    ) -> int:
        req = pb.DeleteRequest(
            access=self.access,
            embedding_name=embedding_name,
            embedding_version=embedding_version,
            keys=self._keys(keys),
            source_version=source_version or now_micros(),
        )
        return int(self._rpc("Delete", req, timeout).deleted)

    def batch_get(
        self,
        embedding_name: str,
        embedding_version: str,
        keys: Iterable[str | EntityKey],
        *,
        include_vectors: bool = True,
        timeout: float | None = None,
    ) -> list[Lookup]:
        """One Lookup per key, in request order; misses are statuses, not errors."""
        req = pb.BatchGetEmbeddingsRequest(
            access=self.access,
            embedding_name=embedding_name,
            embedding_version=embedding_version,
            keys=self._keys(keys),
            include_vectors=include_vectors,
        )
        resp = self._rpc("BatchGetEmbeddings", req, timeout)
        out = []
        for lk in resp.records:
            found = lk.status == cpb.FOUND
            out.append(
                Lookup(
                    key=key_from_pb(lk.key),
                    status=_STATUS.get(lk.status, "missing"),
                    vector=from_bytes(lk.record.vector) if found and lk.record.vector else None,
                    attributes=attributes_from_pb(lk.record.attributes, "record") if found else {},
                    source_version=lk.record.source_version,
                    model_version=lk.record.model_version,
                    created_at_unix_micros=lk.record.created_at_unix_micros,
                    norm=lk.record.norm,
                )
            )
        return out

    def _lookup_columns(
        self, req: pb.BatchGetEmbeddingsRequest, timeout: float | None
    ) -> EmbeddingColumns:
        """One columnar lookup by entity id, sent alone and decoded."""
        resp = self._rpc("BatchGetEmbeddings", req, timeout)
        return embeddings_from_pb(resp.columns, len(req.entity_ids), "BatchGetEmbeddings answer")

    def get_embeddings(
        self,
        embedding_name: str,
        embedding_version: str,
        entity_ids: Sequence[str],
        *,
        include_vectors: bool = True,
        timeout: float | None = None,
    ) -> EmbeddingBatch:
        """`batch_get` as arrays (the fast path): ids of the family's entity
        type in the client's tenant, one row per id in order. A key whose
        shard did not answer is `unavailable`, never an error for the call."""
        ids = checked_ids(entity_ids, "entity_ids")
        req = pb.BatchGetEmbeddingsRequest(
            access=self.access,
            embedding_name=embedding_name,
            embedding_version=embedding_version,
            entity_ids=ids,
            include_vectors=include_vectors,
            columnar=True,
        )
        if self.lookups is None:
            c = self._lookup_columns(req, timeout)
        else:
            c = self.lookups.call(req, self._timeout(timeout))
        return EmbeddingBatch(
            c.status, c.vectors, c.source_version, c.created_at, c.norm,
            c.model_versions, c.model_version_index, None, tuple(ids),
        )  # fmt: skip
