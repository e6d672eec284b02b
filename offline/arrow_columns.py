"""Arrow arrays ↔ feature columns (`core.feature_columns`): offline tables
become the row batches the online store writes and the stored rows the
resolution reads, without a Python object per value — the two share Arrow's
columnar layout, so numbers pass as buffers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.domain import EntityKey
from core.errors import InvalidArgument
from core.feature_columns import (
    BOOL,
    FLOAT64,
    FLOAT_LIST,
    INT64,
    STRING,
    VALUE_DTYPE,
    FeatureColumn,
    offsets_of,
)
from offline.parquet_store import TIMESTAMP
from registry.feature_batches import RowBatch, StoredRows
from registry.features import GroupSchema


def column_from_arrow(arr: pa.Array | pa.ChunkedArray, dtype: str) -> FeatureColumn:
    """A column of `dtype` from an Arrow array of the matching type."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if dtype in (INT64, FLOAT64, BOOL):
        zero = False if dtype == BOOL else 0
        values = arr.fill_null(zero).to_numpy(zero_copy_only=False)
        return FeatureColumn(dtype, valid, np.asarray(values, dtype=VALUE_DTYPE[dtype]))
    if dtype == STRING:
        arr = arr.cast(pa.string()).fill_null("")
        if n == 0:
            return FeatureColumn(STRING, valid, np.zeros(0, np.uint8), np.zeros(1, np.int32))
        bounds = np.frombuffer(arr.buffers()[1], dtype="<i4")[arr.offset : arr.offset + n + 1]
        data = arr.buffers()[2]
        raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
        return FeatureColumn(
            STRING, valid, raw[bounds[0] : bounds[-1]].copy(), offsets_of(np.diff(bounds))
        )
    if dtype == FLOAT_LIST:
        lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False)
        items = pc.list_flatten(arr)
        if items.null_count:
            raise InvalidArgument("a float_list holds a null item; expected numbers only")
        values = np.asarray(items.to_numpy(zero_copy_only=False), dtype=np.float64)
        return FeatureColumn(FLOAT_LIST, valid, values, offsets_of(np.asarray(lengths, np.int64)))
    raise InvalidArgument(f"unknown feature dtype {dtype!r}")


def _micros(table: pa.Table | pa.RecordBatch, column: str) -> np.ndarray:
    col = table.column(column).cast(TIMESTAMP).cast(pa.int64())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)


def table_to_batch(schema: GroupSchema, table: pa.Table | pa.RecordBatch) -> RowBatch:
    """An offline table of the group (`OfflineStore` schema) as a row batch."""
    tenants = table.column("tenant_id").to_pylist()
    types = table.column("entity_type").to_pylist()
    ids = table.column("entity_id").to_pylist()
    return RowBatch(
        [EntityKey(t, e, i) for t, e, i in zip(tenants, types, ids, strict=True)],
        _micros(table, "feature_timestamp"),
        _micros(table, "generated_at"),
        {
            d.name: column_from_arrow(table.column(d.name), d.dtype.value)
            for d in schema.definitions
        },
    )


def stored_from_table(schema: GroupSchema, rows: pa.Table, picks: np.ndarray) -> StoredRows:
    """`StoredRows` for events: the row of `rows` at each pick, none where a
    pick is -1 (no row at or before the event's time)."""
    present = picks >= 0
    taken = rows.take(pa.array(np.where(present, picks, 0), pa.int64(), mask=~present))
    return StoredRows(
        present,
        np.where(present, _micros_or_zero(taken, "feature_timestamp"), 0),
        np.where(present, _micros_or_zero(taken, "generated_at"), 0),
        {
            d.name: column_from_arrow(taken.column(d.name), d.dtype.value)
            for d in schema.definitions
        },
    )


def _micros_or_zero(table: pa.Table, column: str) -> np.ndarray:
    col = table.column(column).cast(TIMESTAMP).cast(pa.int64()).fill_null(0)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)
