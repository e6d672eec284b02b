"""proto ↔ domain for the public RetrievalService and for calls to shards."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from coordinator.errors import QueriesRefused
from coordinator.exclusion import BucketStats
from coordinator.merge import Hit
from coordinator.model import (
    Access,
    IndexSummary,
    SearchQuery,
    SearchResult,
    ShardAnswer,
    ShardIndex,
    ShardQuery,
    WriteRecord,
)
from core.column_wire import (
    embeddings_from_pb,
    embeddings_to_pb,
)
from core.columns_wire import record_columns_from_pb, record_columns_to_pb
from core.domain import AttrType, AttrValue, EntityKey, Metric, VersionRef, key_of
from core.embedding_columns import FOUND, EmbeddingColumns
from core.errors import InvalidArgument, PermissionDenied
from core.hits_wire import fill_packed_hits, split_utf8
from core.record_columns import RecordColumns
from core.vectors import from_bytes, to_bytes
from core.wire import (
    METRIC_TO_PB,
    attributes_from_pb,
    filter_from_pb,
    filter_to_pb,
    key_from_pb,
    key_to_pb,
    value_to_pb,
)
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb
from protos.vecshard.v1.internal import shard_pb2 as spb
from registry.snapshot import ResolvedRoute

_METRIC_FROM_PB = {v: k for k, v in METRIC_TO_PB.items()}


def access_from_pb(a: cpb.AccessContext) -> Access:
    return Access(a.tenant_id, a.purpose, a.subject_id, a.principal)


def search_from_pb(req: pb.SearchRequest) -> SearchQuery:
    return SearchQuery(
        route=req.route,
        access=access_from_pb(req.access),
        vector=from_bytes(req.query_vector, what="query_vector"),
        k=req.k,
        filter=filter_from_pb(req.filter),
        require_complete=req.require_complete,
        cursor=req.cursor,
        skip_rerank=req.skip_rerank,
    )


def search_to_pb(r: SearchResult, packed: bool = False) -> pb.SearchResponse:
    """The public answer; with `packed`, its hits as `PackedHits` arrays
    (SearchBatchRequest.packed_hits) instead of a message each."""
    d = r.diagnostics
    resp = pb.SearchResponse(
        route=r.route,
        bundle=r.bundle,
        index_name=r.index.name,
        index_version=r.index.version,
        embedding_name=r.index.embedding.name,
        embedding_version=r.index.embedding.version,
        metric=METRIC_TO_PB[Metric(r.metric)],
        diagnostics=pb.SearchDiagnostics(
            resolve_ms=d.resolve_ms,
            fanout_ms=d.fanout_ms,
            merge_ms=d.merge_ms,
            shards_searched=d.shards_searched,
            candidates=d.candidates,
            shards_skipped=d.shards_skipped,
            hedges_fired=d.hedges_fired,
            arm=d.arm,
        ),
        partial=r.partial,
        missing_buckets=list(r.missing_buckets),
        completeness=r.completeness,
        next_cursor=r.next_cursor,
    )
    if packed:
        scores, keys, shard_ids, _ = zip(*r.hits, strict=True) if r.hits else ((), (), (), ())
        fill_packed_hits(resp.packed_hits, scores, keys, shard_ids)
        return resp
    # Added in place, the key's fields set on the added message: half the
    # cost of building each Hit and EntityKey and copying them in.
    add = resp.hits.add
    for i, h in enumerate(r.hits):
        key = add(score=h.score, rank=i, shard_id=h.shard_id).key
        key.tenant_id, key.entity_type, key.entity_id = h.key
    return resp


def search_debug_to_pb(r: SearchResult, bundle_json: str) -> pb.SearchDebugResponse:
    return pb.SearchDebugResponse(
        response=search_to_pb(r),
        shards=[
            pb.ShardDebug(
                shard_id=t.shard_id,
                buckets=list(t.buckets),
                bound=t.bound if t.bound is not None else 0.0,
                bound_known=t.bound is not None,
                outcome=t.outcome,
                wave=t.wave,
                latency_ms=t.latency_ms,
                candidates=t.candidates,
                error=t.error,
                hedged=t.hedged,
            )
            for t in r.trace
        ],
        filter_selectivity=r.filter_selectivity,
        resolved_bundle_json=bundle_json,
    )


def record_from_pb(r: cpb.EmbeddingRecord, i: int) -> WriteRecord:
    key = key_from_pb(r.key)
    where = f"records[{i}] {tuple(key)}"
    return WriteRecord(
        key=key,
        vector=from_bytes(r.vector, what=where),
        source_version=r.source_version,
        model_version=r.model_version,
        created_at=r.created_at_unix_micros,
        attributes=attributes_from_pb(r.attributes, where),
        norm=r.norm,
    )


def record_to_pb(r: WriteRecord) -> cpb.EmbeddingRecord:
    return cpb.EmbeddingRecord(
        key=key_to_pb(r.key),
        vector=to_bytes(r.vector) if r.vector.size else b"",
        source_version=r.source_version,
        model_version=r.model_version,
        created_at_unix_micros=r.created_at,
        attributes={k: value_to_pb(v) for k, v in r.attributes.items()},
        norm=r.norm,
    )


def keys_from_pb(keys: Sequence[cpb.EntityKey]) -> list[EntityKey]:
    return [key_from_pb(k) for k in keys]


def lookup_keys_from_pb(req: pb.BatchGetEmbeddingsRequest) -> list[EntityKey]:
    """`keys`, then `entity_ids` (tenant and type left to the caller's)."""
    return keys_from_pb(req.keys) + [EntityKey("", "", i) for i in req.entity_ids]


def lookups_to_pb(
    keys: Sequence[EntityKey], found: EmbeddingColumns, columnar: bool
) -> pb.BatchGetEmbeddingsResponse:
    if columnar:
        return pb.BatchGetEmbeddingsResponse(columns=embeddings_to_pb(found))
    attrs = found.attributes_json or [""] * len(keys)
    width = found.vectors.shape[1]
    records = []
    for i, (key, code) in enumerate(zip(keys, found.status.tolist(), strict=True)):
        record = None
        if code == FOUND:
            record = cpb.EmbeddingRecord(
                key=key_to_pb(key),
                vector=found.vectors[i].tobytes() if width else b"",
                source_version=int(found.source_version[i]),
                model_version=found.model_version(i),
                created_at_unix_micros=int(found.created_at[i]),
                attributes={k: value_to_pb(_attr(v)) for k, v in json.loads(attrs[i]).items()},
                norm=float(found.norm[i]),
            )
        records.append(cpb.EmbeddingLookup(key=key_to_pb(key), status=code, record=record))
    return pb.BatchGetEmbeddingsResponse(records=records)


def _attr(v: object) -> AttrValue:
    """An attribute as stored (JSON): a string list comes back as a list."""
    return tuple(v) if isinstance(v, list) else v  # type: ignore[return-value]  # JSON of an AttrValue


def describe_route_to_pb(r: ResolvedRoute) -> pb.DescribeRouteResponse:
    ix = r.index
    return pb.DescribeRouteResponse(
        route=r.route.name,
        bundle=r.bundle.name,
        index_name=ix.name,
        index_version=ix.version,
        embedding_name=ix.embedding.name,
        embedding_version=ix.embedding.version,
        query_embedding_name=r.bundle.query_embedding.name,
        query_embedding_version=r.bundle.query_embedding.version,
        dimension=r.query_family.dimension,
        metric=METRIC_TO_PB[r.item_family.metric],
        attributes=[
            pb.AttributeSchema(name=n, type=AttrType(t).value)
            for n, t in sorted(ix.attributes.items())
        ],
        max_k=ix.max_k,
        index_kind=ix.kind.value,
        num_buckets=ix.num_buckets,
    )


# --- calls to shards ---------------------------------------------------------


def index_ref_pb(ref: VersionRef) -> spb.IndexRef:
    return spb.IndexRef(name=ref.name, version=ref.version)


def shard_search_pb(index: VersionRef, queries: Sequence[ShardQuery]) -> spb.SearchRequest:
    return spb.SearchRequest(
        index=index_ref_pb(index),
        queries=[
            spb.Query(
                vector=to_bytes(q.vector),
                k=q.k,
                tenant_id=q.tenant_id,
                filter=filter_to_pb(q.filter),
                has_after=q.after is not None,
                after_score=q.after[0] if q.after else 0.0,
                after_key=key_to_pb(q.after[1]) if q.after else None,
                max_sequence=q.max_sequence or 0,
                pinned=q.max_sequence is not None,
                served=q.served,
                skip_rerank=q.skip_rerank,
            )
            for q in queries
        ],
    )


def shard_answers(resp: spb.SearchResponse, shard_id: str, expected: int) -> list[ShardAnswer]:
    """The answer of a shard without SearchPacked (a message per hit)."""
    if len(resp.results) != expected:
        raise InvalidArgument(
            f"shard {shard_id} answered {len(resp.results)} queries, expected {expected}"
        )
    return [
        ShardAnswer.of(
            [Hit(h.score, key_from_pb(h.key), shard_id, h.bucket) for h in r.hits],
            candidates=r.candidates,
            sequence=r.sequence,
            approximate=r.approximate,
            reference_scores=tuple(r.reference_scores),
        )
        for r in resp.results
    ]


def _query_pb(q: ShardQuery) -> spb.Query:
    out = spb.Query(
        k=q.k,
        tenant_id=q.tenant_id,
        max_sequence=q.max_sequence or 0,
        pinned=q.max_sequence is not None,
        served=q.served,
        skip_rerank=q.skip_rerank,
    )
    if q.filter is not None:
        out.filter.CopyFrom(filter_to_pb(q.filter))
    if q.after is not None:
        out.has_after = True
        out.after_score = q.after[0]
        out.after_key.CopyFrom(key_to_pb(q.after[1]))
    return out


def shard_packed_pb(index: VersionRef, queries: Sequence[ShardQuery]) -> spb.PackedSearchRequest:
    """The queries as one float32 matrix plus their options (shard.proto)."""
    matrix = np.stack([q.vector for q in queries]).astype("<f4", copy=False)
    return spb.PackedSearchRequest(
        index=index_ref_pb(index),
        vectors=matrix.tobytes(),
        dimension=matrix.shape[1],
        queries=[_query_pb(q) for q in queries],
        accepts_refusals=True,
    )


def shard_packed_answers(
    resp: spb.PackedSearchResponse, shard_id: str, queries: Sequence[ShardQuery]
) -> list[ShardAnswer]:
    """Per query, its slice of the packed arrays; every hit's tenant is its
    query's (a shard never answers across tenants)."""
    n = len(queries)
    counts = list(resp.counts)
    total = sum(counts)
    scores = np.frombuffer(resp.scores, dtype="<f4").astype(np.float64)
    buckets = np.frombuffer(resp.buckets, dtype="<u4").astype(np.int64)
    id_ends = np.frombuffer(resp.id_ends, dtype="<u4").tolist()
    table = list(resp.entity_types)
    codes = np.frombuffer(resp.type_codes, dtype="<u2").tolist() if len(table) > 1 else None
    ref_counts = list(resp.reference_counts)
    references = np.frombuffer(resp.reference_scores, dtype="<f4").tolist()
    if (
        len(counts) != n
        or len(resp.candidates) != n
        or not scores.shape[0] == buckets.shape[0] == len(id_ends) == total
        or (total and not table)
        or (codes is not None and len(codes) != total)
        or len(ref_counts) not in (0, n)
        or len(resp.approximate) not in (0, n)
        or sum(ref_counts) != len(references)
    ):
        raise InvalidArgument(
            f"shard {shard_id} sent a malformed packed answer for {n} queries "
            f"(counts {len(counts)}, hits {total}, scores {scores.shape[0]})"
        )
    ids = split_utf8(resp.entity_ids, id_ends)
    only = table[0] if len(table) == 1 else ""
    # Read once: every access to a message's field builds a new object.
    candidates, sequence = list(resp.candidates), resp.sequence
    approximate = list(resp.approximate) or [False] * n
    out = []
    start = ref_start = 0
    for i, q in enumerate(queries):
        end = start + counts[i]
        tenant = q.tenant_id
        if codes is None:
            keys = [key_of((tenant, only, eid)) for eid in ids[start:end]]
        else:
            keys = [
                key_of((tenant, table[c], eid))
                for c, eid in zip(codes[start:end], ids[start:end], strict=True)
            ]
        refs = ref_counts[i] if ref_counts else 0
        out.append(
            ShardAnswer(
                scores[start:end],
                keys,
                [shard_id] * counts[i],
                buckets[start:end],
                candidates[i],
                sequence,
                approximate[i],
                tuple(references[ref_start : ref_start + refs]) if refs else (),
            )
        )
        start, ref_start = end, ref_start + refs
    if not resp.refused:
        return out
    refused = {r.query: PermissionDenied(f"shard {shard_id}: {r.message}") for r in resp.refused}
    if len(refused) != len(resp.refused) or any(q >= n or counts[q] for q in refused):
        raise InvalidArgument(
            f"shard {shard_id} sent a malformed packed answer: a query refused twice, "
            f"refused but answered, or beyond its {n} queries"
        )
    raise QueriesRefused(list(out), refused)


def shard_upsert_batches(
    index: VersionRef, records: Sequence[tuple[WriteRecord, int]], batch_size: int, writer: str = ""
) -> list[spb.UpsertBatch]:
    ref = index_ref_pb(index)
    return [
        spb.UpsertBatch(
            index=ref,
            writer=writer,
            records=[
                spb.BucketedRecord(record=record_to_pb(r), bucket=b)
                for r, b in records[i : i + batch_size]
            ],
        )
        for i in range(0, len(records), batch_size)
    ]


def shard_upsert_columns_batches(
    index: VersionRef,
    tenant_id: str,
    records: RecordColumns,
    buckets: np.ndarray,
    max_bytes: int,
    writer: str = "",
) -> list[spb.UpsertColumnsBatch]:
    """One message per batch of rows, each of about `max_bytes` at most (a
    big request stays under gRPC's message limit)."""
    n = len(records)
    row_bytes = records.dimension * 4 + int(records.entity_ids.lengths().mean() if n else 0) + 64
    step = max(1, max_bytes // row_bytes)
    ref = index_ref_pb(index)
    out = []
    for start in range(0, n, step):
        rows = np.arange(start, min(n, start + step))
        part = records if rows.shape[0] == n else records.take(rows)
        out.append(
            spb.UpsertColumnsBatch(
                index=ref,
                writer=writer,
                tenant_id=tenant_id,
                records=record_columns_to_pb(part),
                buckets=np.ascontiguousarray(buckets[rows], dtype="<u4").tobytes(),
            )
        )
    return out


def upsert_columns_from_pb(
    req: pb.UpsertColumnsRequest,
) -> tuple[Access, VersionRef, RecordColumns]:
    return (
        access_from_pb(req.access),
        VersionRef(req.embedding_name, req.embedding_version),
        record_columns_from_pb(req.records),
    )


def shard_delete_pb(
    index: VersionRef, keys: Sequence[EntityKey], source_version: int
) -> spb.DeleteRequest:
    return spb.DeleteRequest(
        index=index_ref_pb(index), keys=[key_to_pb(k) for k in keys], source_version=source_version
    )


def shard_lookup_pb(
    index: VersionRef, keys: Sequence[EntityKey], include_vectors: bool, include_attributes: bool
) -> spb.BatchGetRequest:
    """Keys of one tenant and type (a lookup's always are) travel as ids."""
    req = spb.BatchGetRequest(
        index=index_ref_pb(index),
        include_vectors=include_vectors,
        columnar=True,
        include_attributes=include_attributes,
    )
    if keys and len({(k.tenant_id, k.entity_type) for k in keys}) == 1:
        req.tenant_id, req.entity_type = keys[0].tenant_id, keys[0].entity_type
        req.entity_ids.extend(k.entity_id for k in keys)
    else:
        req.keys.extend(key_to_pb(k) for k in keys)
    return req


def shard_embeddings(resp: spb.BatchGetResponse, keys: int, shard_id: str) -> EmbeddingColumns:
    return embeddings_from_pb(resp.columns, keys, f"shard {shard_id}'s lookup answer")


def shard_indexes(resp: spb.DescribeResponse) -> list[ShardIndex]:
    """Per index: balls over every segment and per-bucket (ranges, tenants).
    An index with rows but no balls has no summary: its bound is unknown."""
    out = []
    for st in resp.indexes:
        out.append(
            ShardIndex(
                VersionRef(st.index.name, st.index.version),
                st.live_count,
                st.tombstone_count,
                _index_summary(st),
            )
        )
    return out


def _index_summary(st: spb.IndexStats) -> IndexSummary | None:
    metric = _METRIC_FROM_PB.get(st.metric)
    if not st.dimension or metric is None:
        return None
    centroids, radii = [], []
    for seg in st.segments:
        r = np.frombuffer(seg.radii, dtype="<f4")
        if seg.rows and not r.size:
            return None
        if r.size:
            radii.append(r)
            centroids.append(
                np.frombuffer(seg.centroids, dtype="<f4").reshape(r.size, st.dimension)
            )
    buckets: dict[int, tuple[BucketStats, frozenset[str]]] = {
        b.bucket: ({a.attribute: (a.min, a.max) for a in b.ranges}, frozenset(b.tenants))
        for b in st.buckets
    }
    # Widened once here (exactly: every float32 is a float64), not per query
    # by every bound (core.bounds computes in float64).
    return IndexSummary(
        metric=metric,
        centroids=np.concatenate(centroids).astype(np.float64)
        if centroids
        else np.zeros((0, st.dimension), np.float64),
        radii=np.concatenate(radii).astype(np.float64) if radii else np.zeros(0, np.float64),
        buckets=buckets,
        sequence=st.summary_sequence if st.HasField("summary_sequence") else None,
    )
