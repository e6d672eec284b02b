"""proto ↔ domain for the shard service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from core.columns_wire import U32, array_from_bytes, record_columns_from_pb
from core.domain import EntityKey, VersionRef
from core.errors import InvalidArgument
from core.hits_wire import join_utf8, string_table
from core.record_columns import RecordColumns
from core.vectors import from_bytes, to_bytes
from core.wire import (
    METRIC_TO_PB,
    attributes_from_pb,
    filter_from_pb,
    key_from_pb,
    key_to_pb,
    value_to_pb,
)
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1.internal import features_pb2 as fpb
from protos.vecshard.v1.internal import shard_pb2 as pb
from shard_server.feature_service import GroupFetch
from shard_server.key_table import KeyRows
from shard_server.memory import ProcessMemory
from shard_server.model import Lookup, LookupStatus, Query, SearchResult, WriteResult
from shard_server.recall_check import RecallCheck
from shard_server.records import Record
from shard_server.segment import DEFAULT_OPTIONS, SearchOptions
from shard_server.service import IndexStats, SegmentInfo
from shard_server.summary import BucketStats

_STATUS = {
    LookupStatus.FOUND: cpb.FOUND,
    LookupStatus.MISSING: cpb.MISSING,
    LookupStatus.DELETED: cpb.DELETED,
}


def index_ref(ref: pb.IndexRef) -> VersionRef:
    return VersionRef(ref.name, ref.version)


def record_from_pb(r: pb.BucketedRecord) -> Record:
    key = key_from_pb(r.record.key)
    where = f"record {tuple(key)}"
    return Record(
        key=key,
        vector=from_bytes(r.record.vector, what=where),
        source_version=r.record.source_version,
        model_version=r.record.model_version,
        created_at=r.record.created_at_unix_micros,
        attributes=attributes_from_pb(r.record.attributes, where),
        bucket=r.bucket,
    )


def columns_batch_from_pb(b: pb.UpsertColumnsBatch) -> tuple[str, RecordColumns, np.ndarray]:
    """(tenant, records, bucket per row) of one batch of rows as columns."""
    records = record_columns_from_pb(b.records)
    buckets = array_from_bytes(b.buckets, U32, len(records), "buckets")
    return b.tenant_id, records, buckets.astype(np.int64)


def record_to_pb(r: Record, include_vector: bool) -> cpb.EmbeddingRecord:
    return cpb.EmbeddingRecord(
        key=key_to_pb(r.key),
        vector=to_bytes(r.vector) if include_vector else b"",
        source_version=r.source_version,
        model_version=r.model_version,
        created_at_unix_micros=r.created_at,
        attributes={k: value_to_pb(v) for k, v in r.attributes.items()},
        norm=r.norm,
    )


def queries_from_pb(req: pb.SearchRequest) -> list[Query]:
    return [_query(q, from_bytes(q.vector, what=f"query {i}")) for i, q in enumerate(req.queries)]


def _query(q: pb.Query, vector: np.ndarray) -> Query:
    return Query(
        vector=vector,
        k=q.k,
        tenant_id=q.tenant_id,
        filter=filter_from_pb(q.filter) if q.HasField("filter") else None,
        options=SearchOptions(
            ef_search=q.ef_search,
            nprobe=q.nprobe,
            refine_factor=q.refine_factor,
            exact=q.exact,
            skip_rerank=q.skip_rerank,
        )
        if q.ef_search or q.nprobe or q.refine_factor or q.exact or q.skip_rerank
        else DEFAULT_OPTIONS,
        after=(q.after_score, key_from_pb(q.after_key)) if q.has_after else None,
        # `pinned` unset (an older coordinator): 0 meant no limit.
        max_sequence=q.max_sequence if q.pinned or q.max_sequence else None,
        served=q.served,
    )


def packed_queries_from_pb(req: pb.PackedSearchRequest) -> list[Query]:
    """The queries of a packed request, each vector a row view of its matrix."""
    n, dim = len(req.queries), req.dimension
    if dim == 0 or len(req.vectors) != 4 * n * dim:
        raise InvalidArgument(
            f"packed search: {len(req.vectors)} bytes of vectors for {n} queries of "
            f"dimension {dim}; expected {4 * n * dim} (little-endian float32, row-major)"
        )
    matrix = from_bytes(req.vectors, what="packed query vectors").reshape(n, dim)
    return [_query(q, matrix[i]) for i, q in enumerate(req.queries)]


def packed_search_response(
    shard_id: str,
    results: Sequence[SearchResult],
    refused: Mapping[int, Exception] | None = None,
) -> pb.PackedSearchResponse:
    """Per-query arrays, concatenated: no message per hit (see shard.proto).
    `results` answer the queries not `refused` (by position), in order."""
    refused = refused or {}
    slots: list[SearchResult | None] = list(results)
    for i in sorted(refused):
        slots.insert(i, None)
    total = sum(len(r.keys) for r in results)
    ids, id_ends, table, type_codes = _packed_keys([r.keys for r in results])
    return pb.PackedSearchResponse(
        shard_id=shard_id,
        sequence=results[0].sequence if results else 0,
        counts=[len(r.keys) if r is not None else 0 for r in slots],
        candidates=[r.candidates if r is not None else 0 for r in slots],
        approximate=[r.approximate if r is not None else False for r in slots],
        scores=np.concatenate([r.scores for r in results]).astype("<f4").tobytes()
        if total
        else b"",
        entity_ids=ids,
        id_ends=id_ends,
        buckets=np.concatenate([r.buckets for r in results]).astype("<u4").tobytes()
        if total
        else b"",
        entity_types=table,
        type_codes=type_codes,
        reference_counts=[len(r.reference_scores) if r is not None else 0 for r in slots],
        reference_scores=np.array(
            [s for r in results for s in r.reference_scores], "<f4"
        ).tobytes(),
        refused=[pb.QueryRefusal(query=i, message=str(exc)) for i, exc in sorted(refused.items())],
    )


def _packed_keys(
    per_query: Sequence[Sequence[EntityKey]],
) -> tuple[bytes, bytes, list[str], bytes]:
    """(ids, their u32 ends, the sorted entity-type table, u16 type codes when
    it has more than one type) of every query's hit keys, in order. Hits of
    one segment's table (the usual answer) are gathered from its arrays."""
    tables = {id(k.table): k.table for k in per_query if isinstance(k, KeyRows)}
    if len(tables) == 1 and all(isinstance(k, KeyRows) for k in per_query):
        (keys,) = tables.values()
        rows = np.concatenate([k.rows for k in per_query])  # type: ignore[attr-defined]
        if not rows.shape[0]:
            return b"", b"", [], b""
        picked = keys.ids.take(rows)
        present = np.unique(keys.types[rows])
        table = sorted(keys.type_names[c] for c in present.tolist())
        codes = b""
        if len(table) > 1:
            recode = np.zeros(len(keys.type_names), dtype="<u2")
            for c in present.tolist():
                recode[c] = table.index(keys.type_names[c])
            codes = recode[keys.types[rows]].tobytes()
        return picked.data, picked.offsets[1:].astype("<u4").tobytes(), table, codes
    flat = [key for keys in per_query for key in keys]
    if not flat:
        return b"", b"", [], b""
    ids, ends = join_utf8([key.entity_id for key in flat])
    table, codes = string_table([key.entity_type for key in flat])
    return ids, ends, table, codes


def search_response(shard_id: str, results: Sequence[SearchResult]) -> pb.SearchResponse:
    return pb.SearchResponse(
        shard_id=shard_id,
        results=[
            pb.QueryResult(
                hits=[
                    pb.ShardHit(key=key_to_pb(h.key), score=h.score, bucket=h.bucket)
                    for h in r.hits
                ],
                candidates=r.candidates,
                approximate=r.approximate,
                plans=r.plans,
                sequence=r.sequence,
                reference_scores=r.reference_scores,
            )
            for r in results
        ],
    )


def group_fetches(request: fpb.FeatureColumnsRequest) -> list[GroupFetch]:
    """The fetches of a request; one naming an earlier one's entities
    (`same_entities_as`) shares that one's id list."""
    out: list[GroupFetch] = []
    for n, g in enumerate(request.groups):
        if g.same_entities_as:
            if not 0 < g.same_entities_as <= n:
                raise InvalidArgument(
                    f"groups[{n}].same_entities_as {g.same_entities_as}; expected 1..{n}"
                )
            ids = out[g.same_entities_as - 1].entity_ids
        else:
            ids = list(g.entity_ids)
        out.append(GroupFetch(VersionRef(g.group, g.group_version), list(g.features), ids))
    return out


def lookup_keys(request: pb.BatchGetRequest) -> list[EntityKey]:
    """The keys of a lookup: a message each, then ids of one tenant and type."""
    keys = [key_from_pb(k) for k in request.keys]
    t, et = request.tenant_id, request.entity_type
    return keys + [EntityKey(t, et, i) for i in request.entity_ids]


def lookups_to_pb(lookups: Sequence[Lookup], include_vectors: bool) -> pb.BatchGetResponse:
    return pb.BatchGetResponse(
        records=[
            cpb.EmbeddingLookup(
                key=key_to_pb(lk.key),
                status=_STATUS[lk.status],
                record=record_to_pb(lk.record, include_vectors) if lk.record is not None else None,
            )
            for lk in lookups
        ]
    )


def upsert_ack(result: WriteResult) -> pb.UpsertAck:
    return pb.UpsertAck(
        written=result.written, ignored_stale=result.ignored_stale, sequence=result.sequence
    )


def _segment_pb(s: SegmentInfo) -> pb.SegmentSummary:
    out = pb.SegmentSummary(
        segment_id=s.id,
        kind=s.kind,
        state=s.state,
        rows=s.rows,
        deleted_rows=s.deleted,
        size_bytes=s.nbytes,
    )
    if s.summary is not None:
        out.centroids = to_bytes(s.summary.centroids.reshape(-1))
        out.radii = to_bytes(s.summary.radii)
    return out


def _bucket_pb(bucket: int, s: BucketStats) -> pb.BucketSummary:
    return pb.BucketSummary(
        bucket=bucket,
        rows=s.rows,
        ranges=[
            pb.AttributeRange(attribute=name, min=lo, max=hi, rows=n)
            for name, (lo, hi, n) in sorted(s.ranges.items())
        ],
        tenants=sorted(s.tenants),
    )


def index_stats_pb(s: IndexStats) -> pb.IndexStats:
    return pb.IndexStats(
        index=pb.IndexRef(name=s.index.name, version=s.index.version),
        kind=s.kind,
        live_count=s.live_count,
        tombstone_count=s.tombstone_count,
        segments=[_segment_pb(seg) for seg in s.segments],
        buckets=[_bucket_pb(b, st) for b, st in sorted(s.buckets.items())],
        metric=METRIC_TO_PB[s.metric] if s.metric is not None else cpb.METRIC_UNSPECIFIED,
        dimension=s.dimension,
        memory_bytes=s.memory_bytes,
        mapped_bytes=s.mapped_bytes,
        bytes_per_vector=s.bytes_per_vector,
        summary_sequence=s.summary_sequence,
    )


def describe_response(
    shard_id: str, stats: Sequence[IndexStats], sequence: int, memory: ProcessMemory
) -> pb.DescribeResponse:
    return pb.DescribeResponse(
        shard_id=shard_id,
        sequence=sequence,
        indexes=[index_stats_pb(s) for s in stats],
        process_rss_bytes=memory.rss,
        process_rss_anon_bytes=memory.anon,
        process_rss_file_bytes=memory.file,
    )


def recall_check_pb(shard_id: str, check: RecallCheck) -> pb.CheckRecallResponse:
    return pb.CheckRecallResponse(
        shard_id=shard_id,
        queries=check.queries,
        recall=check.recall,
        rows=check.rows,
        kinds=[
            pb.KindRecall(kind=k.kind, queries=k.queries, recall=k.recall, rows=k.rows)
            for k in check.kinds
        ],
    )
