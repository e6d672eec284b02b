"""proto ↔ domain for the public RetrievalService and for calls to shards."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import cast

import numpy as np

from coordinator.exclusion import BucketStats
from coordinator.merge import Hit
from coordinator.model import (
    Access,
    EntityColumns,
    FeatureResult,
    GroupFetch,
    IndexSummary,
    SearchQuery,
    SearchResult,
    ShardAnswer,
    ShardIndex,
    ShardQuery,
    WriteRecord,
)
from core.column_wire import (
    RowColumns,
    embeddings_from_pb,
    embeddings_to_pb,
    key_columns_from_pb,
    reason_counts,
    resolved_from_pb,
    resolved_to_pb,
    row_columns_from_pb,
    row_columns_to_pb,
)
from core.domain import AttrType, AttrValue, EntityKey, Metric, VersionRef
from core.embedding_columns import FOUND, EmbeddingColumns
from core.errors import InvalidArgument
from core.vectors import from_bytes, to_bytes
from core.wire import (
    METRIC_TO_PB,
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
from protos.vecshard.v1.internal import features_pb2 as fpb
from protos.vecshard.v1.internal import shard_pb2 as spb
from registry.feature_batches import RowBatch
from registry.feature_catalog import GroupRead
from registry.feature_values import missing_columns, resolved_values
from registry.features import GroupRow, MissingReason
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


# --- features -------------------------------------------------------------------


def entities_from_pb(req: pb.GetFeaturesRequest) -> list[EntityKey] | EntityColumns:
    """The request's entities: as columns when it sent only columns."""
    where = "entity_columns"
    types, index, ids = key_columns_from_pb(req.entity_columns, where)
    if not req.entities:
        return EntityColumns(types, index, ids)
    return keys_from_pb(req.entities) + [
        EntityKey("", types[t], i) for t, i in zip(index.tolist(), ids, strict=True)
    ]


def feature_put_from_pb(req: pb.PutFeaturesRequest) -> tuple[list[GroupRow], RowColumns | None]:
    rows = [GroupRow(*feature_row_from_pb(r)) for r in req.rows]
    if not req.HasField("columns"):
        return rows, None
    where = f"feature group {req.group}@{req.group_version}"
    return rows, row_columns_from_pb(req.columns, where)


def feature_columns_pb(
    tenant_id: str, fetches: Sequence[GroupFetch], request_time: int, personalized: bool
) -> fpb.FeatureColumnsRequest:
    groups = []
    for n, f in enumerate(fetches):
        same = next((j for j in range(n) if fetches[j].entity_ids is f.entity_ids), None)
        groups.append(
            fpb.GroupFetch(
                group=f.group.name,
                group_version=f.group.version,
                features=f.features,
                entity_ids=f.entity_ids if same is None else (),
                same_entities_as=0 if same is None else same + 1,
            )
        )
    return fpb.FeatureColumnsRequest(
        tenant_id=tenant_id,
        groups=groups,
        request_time_us=request_time,
        personalized=personalized,
    )


# Rows per streamed message: big loads stay well under gRPC's message limit.
FEATURE_BATCH_ROWS = 20_000


def feature_batches_pb(group: VersionRef, batch: RowBatch) -> list[fpb.FeatureBatch]:
    """The batch as streamed messages of columns, one tenant each (an empty
    batch is one empty message: it announces the group)."""
    out = []
    by_tenant: dict[str, list[int]] = {}
    for i, k in enumerate(batch.entities):
        by_tenant.setdefault(k.tenant_id, []).append(i)
    for tenant, rows in by_tenant.items():
        for start in range(0, len(rows), FEATURE_BATCH_ROWS):
            part = batch.take(np.array(rows[start : start + FEATURE_BATCH_ROWS], dtype=np.int64))
            out.append(
                fpb.FeatureBatch(
                    group=group.name,
                    group_version=group.version,
                    columns=row_columns_to_pb(
                        tenant,
                        [k.entity_id for k in part.entities],
                        part.feature_timestamp,
                        part.generated_at,
                        part.columns,
                    ),
                )
            )
    return out or [fpb.FeatureBatch(group=group.name, group_version=group.version)]


class ProtoFeatureWire:
    """`coordinator.features.FeatureWire` over `ResolvedFeatureColumns`."""

    def missing(self, read: GroupRead, reason: MissingReason, rows: int) -> object:
        return resolved_to_pb(missing_columns(read, reason, rows))

    def reason_counts(self, columns: object) -> Sequence[int]:
        counts: list[int] = reason_counts(cast(cpb.ResolvedFeatureColumns, columns)).tolist()
        return counts


def features_to_pb(result: FeatureResult, req: pb.GetFeaturesRequest) -> pb.GetFeaturesResponse:
    out = pb.GetFeaturesResponse(
        features_by_entity_type={
            t: pb.FeatureNames(names=n) for t, n in result.names_by_type.items()
        },
        diagnostics=pb.FeatureDiagnostics(
            missing_by_reason=result.missing_by_reason,
            stale=result.stale,
            entities=len(req.entities) + len(req.entity_columns.entity_ids),
            shards=result.shards,
            latency_ms=result.latency_ms,
        ),
    )
    if req.columnar:
        out.blocks.extend(
            pb.FeatureBlock(
                entity_type=b.entity_type,
                outputs=b.outputs,
                rows=b.rows.astype("<i4").tobytes(),
                # Passed through as the shard answered: never decoded here.
                columns=cast(cpb.ResolvedFeatureColumns, b.columns),
            )
            for b in result.blocks
        )
        return out
    out.entities.extend(_per_value(result, req))
    return out


def _per_value(result: FeatureResult, req: pb.GetFeaturesRequest) -> list[pb.EntityFeatures]:
    """The per-value form (requests that did not ask for columns): every
    value decoded and encoded as a message, so it costs more per entity."""
    keys = [k for k in req.entities] + [
        cpb.EntityKey(entity_type=req.entity_columns.entity_types[t], entity_id=i)
        for t, i in zip(req.entity_columns.type_index, req.entity_columns.entity_ids, strict=True)
    ]
    slots = {t: {n: j for j, n in enumerate(names)} for t, names in result.names_by_type.items()}
    table: dict[str, list[list[cpb.FeatureValue | None]]] = {}
    for k in keys:
        table.setdefault(k.entity_type, [])
    for t, rows in table.items():
        count = sum(1 for k in keys if k.entity_type == t)
        rows.extend([None] * len(result.names_by_type.get(t, [])) for _ in range(count))
    for b in result.blocks:
        resolved = resolved_from_pb(cast(cpb.ResolvedFeatureColumns, b.columns))
        where = [slots[b.entity_type][o] for o in b.outputs]
        for row, values in zip(b.rows.tolist(), resolved_values(resolved), strict=True):
            for j, v in zip(where, values, strict=True):
                table[b.entity_type][row][j] = resolved_value_to_pb(v)
    seen: dict[str, int] = {}
    out = []
    for k in keys:
        n = seen.get(k.entity_type, 0)
        seen[k.entity_type] = n + 1
        # Every slot is filled: the blocks hold each entity of a type once.
        filled = cast(list[cpb.FeatureValue], table[k.entity_type][n])
        out.append(pb.EntityFeatures(entity=k, values=filled))
    return out


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
