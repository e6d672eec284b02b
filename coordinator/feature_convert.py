"""proto ↔ domain for GetFeatures and PutFeatures: the public request and
response, and the calls to shards' FeatureShardService. Resolved values stay
in wire form (`ResolvedFeatureColumns`) through the coordinator
(`coordinator.features.FeatureWire`); only the per-value response form
decodes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from coordinator.model import EntityColumns, FeatureResult, GroupFetch
from core.column_wire import (
    RowColumns,
    key_columns_from_pb,
    reason_counts,
    resolved_from_pb,
    resolved_to_pb,
    row_columns_from_pb,
    row_columns_to_pb,
)
from core.domain import EntityKey, VersionRef
from core.wire import feature_row_from_pb, key_from_pb, resolved_value_to_pb
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb
from protos.vecshard.v1.internal import features_pb2 as fpb
from registry.feature_batches import RowBatch
from registry.feature_catalog import GroupRead
from registry.feature_values import missing_columns, resolved_values
from registry.features import GroupRow, MissingReason


def entities_from_pb(req: pb.GetFeaturesRequest) -> list[EntityKey] | EntityColumns:
    """The request's entities: as columns when it sent only columns."""
    where = "entity_columns"
    types, index, ids = key_columns_from_pb(req.entity_columns, where)
    if not req.entities:
        return EntityColumns(types, index, ids)
    return [key_from_pb(k) for k in req.entities] + [
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
