"""proto ↔ domain for the public RetrievalService and for calls to shards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from coordinator.exclusion import BucketStats
from coordinator.merge import Hit
from coordinator.model import (
    Access,
    FeatureResult,
    IndexSummary,
    Lookup,
    LookupStatus,
    SearchQuery,
    SearchResult,
    ShardAnswer,
    ShardIndex,
    ShardQuery,
    WriteRecord,
)
from core.columns_wire import record_columns_from_pb, record_columns_to_pb
from core.domain import AttrType, EntityKey, Metric, VersionRef
from core.errors import InvalidArgument
from core.record_columns import RecordColumns
from core.vectors import from_bytes, to_bytes
from core.wire import (
    METRIC_TO_PB,
    REASON_FROM_PB,
    attributes_from_pb,
    feature_row_from_pb,
    filter_from_pb,
    filter_to_pb,
    key_from_pb,
    key_to_pb,
    resolved_value_to_pb,
    value_to_pb,
)
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb
from protos.vecshard.v1.internal import shard_pb2 as spb
from registry.feature_values import missing_value
from registry.features import FeatureDefinition, GroupRow, MissingReason
from registry.snapshot import ResolvedRoute

_STATUS_FROM_PB = {
    cpb.FOUND: LookupStatus.FOUND,
    cpb.MISSING: LookupStatus.MISSING,
    cpb.DELETED: LookupStatus.DELETED,
}
_STATUS_TO_PB = {v: k for k, v in _STATUS_FROM_PB.items()}
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


def search_to_pb(r: SearchResult) -> pb.SearchResponse:
    d = r.diagnostics
    return pb.SearchResponse(
        hits=[
            pb.Hit(key=key_to_pb(h.key), score=h.score, rank=i, shard_id=h.shard_id)
            for i, h in enumerate(r.hits)
        ],
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


def lookups_to_pb(lookups: Sequence[Lookup]) -> pb.BatchGetEmbeddingsResponse:
    return pb.BatchGetEmbeddingsResponse(
        records=[
            cpb.EmbeddingLookup(
                key=key_to_pb(lk.key),
                status=_STATUS_TO_PB[lk.status],
                record=record_to_pb(lk.record) if lk.record is not None else None,
            )
            for lk in lookups
        ]
    )


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
                max_sequence=q.max_sequence,
                served=q.served,
                skip_rerank=q.skip_rerank,
            )
            for q in queries
        ],
    )


def shard_answers(resp: spb.SearchResponse, shard_id: str, expected: int) -> list[ShardAnswer]:
    if len(resp.results) != expected:
        raise InvalidArgument(
            f"shard {shard_id} answered {len(resp.results)} queries, expected {expected}"
        )
    return [
        ShardAnswer(
            hits=[Hit(h.score, key_from_pb(h.key), shard_id, h.bucket) for h in r.hits],
            candidates=r.candidates,
            sequence=r.sequence,
            approximate=r.approximate,
            reference_scores=tuple(r.reference_scores),
        )
        for r in resp.results
    ]


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


def shard_batch_get_pb(
    index: VersionRef, keys: Sequence[EntityKey], include_vectors: bool
) -> spb.BatchGetRequest:
    return spb.BatchGetRequest(
        index=index_ref_pb(index),
        keys=[key_to_pb(k) for k in keys],
        include_vectors=include_vectors,
    )


def shard_lookups(resp: spb.BatchGetResponse) -> list[Lookup]:
    out = []
    for lk in resp.records:
        record = None
        if lk.status == cpb.FOUND:
            record = WriteRecord(
                key=key_from_pb(lk.record.key),
                vector=from_bytes(lk.record.vector),
                source_version=lk.record.source_version,
                model_version=lk.record.model_version,
                created_at=lk.record.created_at_unix_micros,
                attributes=attributes_from_pb(lk.record.attributes, "stored record"),
                norm=lk.record.norm,
            )
        out.append(Lookup(key_from_pb(lk.key), _STATUS_FROM_PB[lk.status], record))
    return out


# --- features -------------------------------------------------------------------


def feature_rows_from_pb(req: pb.PutFeaturesRequest) -> list[GroupRow]:
    return [GroupRow(*feature_row_from_pb(r)) for r in req.rows]


class ProtoFeatureWire:
    """`coordinator.features.FeatureWire` over protobuf FeatureValues."""

    def __init__(self) -> None:
        self._missing: dict[tuple[int, str], cpb.FeatureValue] = {}

    def missing(self, definition: FeatureDefinition, reason: MissingReason) -> cpb.FeatureValue:
        key = (id(definition), reason.value)
        v = self._missing.get(key)
        if v is None:
            v = resolved_value_to_pb(missing_value(definition, reason))
            self._missing[key] = v
        return v

    def reason(self, value: object) -> str | None:
        code = cast(cpb.FeatureValue, value).missing_reason
        return REASON_FROM_PB[code] if code else None


def features_to_pb(result: FeatureResult, keys: Sequence[cpb.EntityKey]) -> pb.GetFeaturesResponse:
    return pb.GetFeaturesResponse(
        features_by_entity_type={
            t: pb.FeatureNames(names=n) for t, n in result.names_by_type.items()
        },
        entities=[
            # Every value is in wire form: from a RemoteShard or ProtoFeatureWire.
            pb.EntityFeatures(entity=k, values=cast(list[cpb.FeatureValue], row))
            for k, row in zip(keys, result.values, strict=True)
        ],
        diagnostics=pb.FeatureDiagnostics(
            missing_by_reason=result.missing_by_reason,
            stale=result.stale,
            entities=len(keys),
            shards=result.shards,
            latency_ms=result.latency_ms,
        ),
    )


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
    return IndexSummary(
        metric=metric,
        centroids=np.concatenate(centroids)
        if centroids
        else np.zeros((0, st.dimension), np.float32),
        radii=np.concatenate(radii) if radii else np.zeros(0, np.float32),
        buckets=buckets,
    )
