"""Point-in-time (as-of) joins: training sets from labelled events, with the
values a model would have been served at each event's time.

For each event and each group of the feature set, the join picks the entity's
row with the greatest `(feature_timestamp, generated_at)` such that
`feature_timestamp <= event_time` (and, with a cutoff, `generated_at <=
generated_cutoff`, so a later backfill cannot leak into an older training
set); then `registry.feature_values.resolve_columns` — the function the online
path uses — turns that row (or its absence) into value, missing reason, default
and staleness. TTL expiry, staleness and privacy are therefore decided by the
same code online and offline.

Why not `pyarrow.Table.join_asof`: it expresses "latest on-key <= event time,
by key" (tolerance negative), but (1) equal `feature_timestamp`s must be
broken by `generated_at` — the order the online store keeps — and join_asof
has one on-key and an undocumented tie rule (the last input row); (2) it
reorders the output by the on-key and refuses colliding column names; (3) it
has open correctness bugs with string by-keys in different column positions
(apache/arrow#39803) and out-of-order errors on large sorted inputs
(apache/arrow#41706). The join below is a stable lexsort of the feature rows
by (entity, feature_timestamp, generated_at) and one `searchsorted` per
group: O((n + m) log(n + m)), exact tie-breaking, event order kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from client.feature_results import arrow_array
from core.domain import VersionRef
from core.errors import InvalidArgument
from core.feature_columns import FILLS, MISSING_REASONS, ResolvedColumns
from core.timestamps import check_times
from offline.arrow_columns import stored_from_table
from offline.parquet_store import TIMESTAMP, OfflineStore, arrow_type, check_day
from registry.feature_batches import StoredRows
from registry.feature_catalog import FeatureCatalog, GroupRead, readable, readable_groups
from registry.feature_values import (
    FeatureValue,
    missing_columns,
    resolve_columns,
    resolved_values,
)
from registry.features import US_PER_SECOND, FeatureSet, MissingReason


def latest_at(
    event_tenant: pa.Array,
    event_entity: pa.Array,
    event_time: np.ndarray,
    row_tenant: pa.Array,
    row_entity: pa.Array,
    row_time: np.ndarray,
    row_generated: np.ndarray,
) -> np.ndarray:
    """For each event, the index of the row of the same (tenant, entity) with
    the greatest (row_time, row_generated) among rows with row_time <=
    event_time; -1 where there is none. Of rows equal in both, the last one
    (the order a materialization writes them, so online agrees). Null event
    keys never match."""
    n = len(event_time)
    if n == 0 or len(row_time) == 0:
        return np.full(n, -1, dtype=np.int64)
    key = _joint_codes(event_tenant, event_entity, row_tenant, row_entity)
    ev_key, row_key = key[:n], key[n:]
    # Times are replaced by their rank among all times, so (entity, time)
    # packs into one int64 without overflow: dense key < n + m, rank < n + m.
    _, rank = np.unique(np.concatenate([event_time, row_time]), return_inverse=True)
    width = int(rank.max()) + 1
    ev_packed = ev_key * width + rank[:n]
    row_packed = row_key * width + rank[n:]
    order = np.lexsort((row_generated, row_time, row_key))  # stable: input order breaks ties
    sorted_packed = row_packed[order]
    pos = np.searchsorted(sorted_packed, ev_packed, side="right") - 1
    safe = np.clip(pos, 0, None)
    hit = (pos >= 0) & (ev_key >= 0) & (row_key[order][safe] == ev_key)
    return np.where(hit, order[safe], -1)


def _joint_codes(
    ev_tenant: pa.Array, ev_entity: pa.Array, row_tenant: pa.Array, row_entity: pa.Array
) -> np.ndarray:
    """Dense int64 codes of (tenant, entity) over events then rows; -1 for a
    null in either part."""
    tenant = _codes(pa.concat_arrays([ev_tenant, row_tenant]))
    entity = _codes(pa.concat_arrays([ev_entity, row_entity]))
    null = (tenant < 0) | (entity < 0)
    pair = tenant * (int(entity.max()) + 1) + entity
    _, dense = np.unique(pair, return_inverse=True)
    return np.where(null, -1, dense.astype(np.int64))


def _codes(arr: pa.Array) -> np.ndarray:
    encoded = arr.dictionary_encode()
    codes: np.ndarray = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    return codes.astype(np.int64)


def _strings(table: pa.Table, column: str, what: str) -> pa.Array:
    if column not in table.column_names:
        raise InvalidArgument(
            f"events have no column {column!r} ({what}); have {table.column_names}"
        )
    col = table.column(column).combine_chunks()
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise InvalidArgument(f"events column {column!r} ({what}) is {col.type}; expected string")
    return col.cast(pa.string())


def event_micros(table: pa.Table, column: str) -> np.ndarray:
    """An event-time column (timestamp of any unit, or int64 µs) as int64 µs,
    range-checked like every time that comes in: integer nanoseconds read as
    µs would join each event with its entity's latest row, rows stamped after
    the event included, without an error."""
    if column not in table.column_names:
        raise InvalidArgument(f"events have no column {column!r} (event time)")
    col = table.column(column)
    if col.null_count:
        raise InvalidArgument(f"events column {column!r} has nulls; every event needs a time")
    if not (pa.types.is_timestamp(col.type) or pa.types.is_integer(col.type)):
        raise InvalidArgument(
            f"events column {column!r} is {col.type}; expected a timestamp or int64 microseconds"
        )
    try:
        if pa.types.is_timestamp(col.type):
            col = col.cast(TIMESTAMP)
        micros = np.asarray(col.cast(pa.int64()).to_numpy(), dtype=np.int64)
    except pa.ArrowInvalid as exc:
        # A finer unit with digits below a microsecond, or a uint64 past int64.
        raise InvalidArgument(
            f"events column {column!r} ({col.type}) does not convert to int64 microseconds "
            f"without loss: {exc}; truncate it to microseconds first"
        ) from None
    check_times(f"events column {column!r}", micros, lambda i: f"event {i}")
    return micros


def _entity_column(read: GroupRead, entity_columns: Mapping[str, str] | None) -> str:
    et = read.schema.group.entity_type
    return (entity_columns or {}).get(et, f"{et}_id")


def stored_at(
    read: GroupRead,
    rows: pa.Table,
    tenants: pa.Array,
    entities: pa.Array,
    times: np.ndarray,
    generated_cutoff: int | None = None,
) -> StoredRows:
    """Each event's as-of row of one group (absent: no row at or before its
    time), as columns."""
    schema = read.schema
    rows = rows.filter(pc.equal(rows.column("entity_type"), schema.group.entity_type))
    if generated_cutoff is not None:
        cutoff = pa.scalar(generated_cutoff, pa.int64()).cast(TIMESTAMP)
        rows = rows.filter(pc.less_equal(rows.column("generated_at"), cutoff))
    idx = latest_at(
        tenants,
        entities,
        times,
        rows.column("tenant_id").combine_chunks().cast(pa.string()),
        rows.column("entity_id").combine_chunks().cast(pa.string()),
        _column_micros(rows, "feature_timestamp"),
        _column_micros(rows, "generated_at"),
    )
    return stored_from_table(schema, rows, idx)


def _column_micros(table: pa.Table, column: str) -> np.ndarray:
    col = table.column(column).cast(TIMESTAMP).cast(pa.int64())
    return np.asarray(col.to_numpy(), dtype=np.int64)


def point_in_time_columns(
    events: pa.Table,
    feature_set: FeatureSet,
    catalog: FeatureCatalog,
    group_tables: Mapping[VersionRef, pa.Table],
    *,
    event_time_column: str = "event_time",
    tenant_column: str = "tenant_id",
    entity_columns: Mapping[str, str] | None = None,
    generated_cutoff: int | None = None,
    personalized: bool = True,
) -> dict[str, tuple[ResolvedColumns, int]]:
    """Per output column of the feature set, the resolved columns of its
    group for every event (in event order) and the feature's index in them.

    `group_tables` holds each group's offline rows (`OfflineStore` schema); a
    group absent from it has no data (`not_computed`). The event's entity for
    a group is read from `entity_columns[entity_type]` (default
    `{entity_type}_id`) and its tenant from `tenant_column`. Resolution is
    `resolve_columns`, what the shards run, at each event's own time.
    """
    times = event_micros(events, event_time_column)
    tenants = _strings(events, tenant_column, "tenant")
    out: dict[str, tuple[ResolvedColumns, int]] = {}
    for read in catalog.plan(feature_set):
        table = group_tables.get(read.schema.ref)
        resolved: ResolvedColumns
        if not readable(read.schema, personalized):
            # Never read, as online: privacy is decided before any fetch.
            resolved = missing_columns(read, MissingReason.PRIVACY_DISABLED, len(times))
        elif table is None:
            resolved = missing_columns(read, MissingReason.NOT_COMPUTED, len(times))
        else:
            col = _entity_column(read, entity_columns)
            entities = _strings(events, col, f"id of {read.schema.group.entity_type}")
            stored = stored_at(read, table, tenants, entities, times, generated_cutoff)
            resolved = resolve_columns(read, stored, times, personalized)
        for j, name in enumerate(read.outputs):
            out[name] = (resolved, j)
    return {ref.output_name: out[ref.output_name] for ref in feature_set.features}


def point_in_time_values(
    events: pa.Table,
    feature_set: FeatureSet,
    catalog: FeatureCatalog,
    group_tables: Mapping[VersionRef, pa.Table],
    **options: Any,
) -> dict[str, list[FeatureValue]]:
    """`point_in_time_columns` as `FeatureValue`s, per output column, in
    event order (one object per value: for comparisons and small sets)."""
    columns = point_in_time_columns(events, feature_set, catalog, group_tables, **options)
    decoded: dict[int, list[tuple[FeatureValue, ...]]] = {}
    out = {}
    for name, (resolved, j) in columns.items():
        rows = decoded.setdefault(id(resolved), resolved_values(resolved))
        out[name] = [row[j] for row in rows]
    return out


def point_in_time_join(
    events: pa.Table,
    feature_set: FeatureSet,
    catalog: FeatureCatalog,
    group_tables: Mapping[VersionRef, pa.Table],
    *,
    diagnostics: bool = False,
    **options: Any,
) -> pa.Table:
    """`events` with one column per feature of the set (typed by its dtype),
    plus, with `diagnostics`, `{name}__missing_reason`,
    `{name}__default_applied` and `{name}__staleness_us` per feature — the
    columns `FeatureFrame.to_arrow()` gives online. Options are those of
    `point_in_time_columns`."""
    resolved = point_in_time_columns(events, feature_set, catalog, group_tables, **options)
    reasons = np.array([r or None for r in MISSING_REASONS], dtype=object)
    fills = np.array([f or None for f in FILLS], dtype=object)
    out = events
    for ref in feature_set.features:
        name = ref.output_name
        group, j = resolved[name]
        dtype = catalog.schema(ref.group_ref).definition(ref.feature).dtype
        columns = {name: arrow_array(group.columns[j]).cast(arrow_type(dtype))}
        if diagnostics:
            columns[f"{name}__missing_reason"] = pa.array(reasons[group.reasons[j]], pa.string())
            columns[f"{name}__default_applied"] = pa.array(fills[group.fills[j]], pa.string())
            columns[f"{name}__staleness_us"] = pa.array(
                group.staleness_us, pa.int64(), mask=~group.stored
            )
        for col_name, arr in columns.items():
            if col_name in out.column_names:
                raise InvalidArgument(
                    f"events already have a column {col_name!r}; alias the feature in the set"
                )
            out = out.append_column(col_name, arr)
    return out


def load_group_tables(
    events: pa.Table,
    feature_set: FeatureSet,
    catalog: FeatureCatalog,
    store: OfflineStore,
    *,
    event_time_column: str = "event_time",
    personalized: bool = True,
    generated_cutoff: int | None = None,
    end_date: str | None = None,
) -> dict[VersionRef, pa.Table]:
    """The offline rows the join needs, and no more: only readable groups,
    only days up to the last event (or `end_date`), and, for a group with a
    TTL, nothing older than the first event minus the TTL (such rows could
    only ever resolve as expired, the same answer as no row)."""
    if end_date is not None:
        check_day("end_date", end_date)
    times = event_micros(events, event_time_column)
    out: dict[VersionRef, pa.Table] = {}
    if len(times) == 0:
        return out
    first, last = int(times.min()), int(times.max())
    for read in readable_groups(feature_set, catalog, personalized):
        schema = read.schema
        if not store.has_features(schema.ref):
            continue
        ttl = schema.group.ttl_seconds
        low = first - ttl * US_PER_SECOND if ttl is not None else None
        last_day = _day(last)
        out[schema.ref] = store.read_features(
            schema,
            start_date=_day(low) if low is not None else None,
            end_date=min(last_day, end_date) if end_date is not None else last_day,
            min_timestamp=low,
            max_timestamp=last,
            generated_cutoff=generated_cutoff,
        )
    return out


def build_training_set(
    events: pa.Table,
    feature_set: FeatureSet,
    catalog: FeatureCatalog,
    store: OfflineStore,
    *,
    event_time_column: str = "event_time",
    personalized: bool = True,
    generated_cutoff: int | None = None,
    diagnostics: bool = False,
    **options: Any,
) -> pa.Table:
    """Reads what the events need from the offline store and joins it."""
    tables = load_group_tables(
        events,
        feature_set,
        catalog,
        store,
        event_time_column=event_time_column,
        personalized=personalized,
        generated_cutoff=generated_cutoff,
    )
    return point_in_time_join(
        events,
        feature_set,
        catalog,
        tables,
        diagnostics=diagnostics,
        event_time_column=event_time_column,
        personalized=personalized,
        generated_cutoff=generated_cutoff,
        **options,
    )


def _day(micros: int) -> str:
    day: str = pc.strftime(pa.scalar(micros, pa.int64()).cast(TIMESTAMP), format="%Y-%m-%d").as_py()
    return day
