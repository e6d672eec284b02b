"""proto ↔ domain for records as columns (`core.record_columns`).

Every buffer is read zero-copy (`np.frombuffer`: read-only views of the
message's bytes) and checked for what a peer could get wrong — lengths that
do not match the row count, offsets out of order, invalid UTF-8, presence
bytes other than 0/1 — before any of it is trusted. Messages name the field
and what was expected.
"""

from __future__ import annotations

import numpy as np

from core.domain import AttrType
from core.errors import InvalidArgument
from core.record_columns import (
    OFFSET,
    AttributeColumn,
    ColumnValues,
    PackedStrings,
    RecordColumns,
    StringLists,
)
from protos.vecshard.v1 import common_pb2 as pb

I64 = np.dtype("<i8")
F64 = np.dtype("<f8")
F32 = np.dtype("<f4")
U32 = np.dtype("<u4")


def array_from_bytes(data: bytes, dtype: np.dtype, n: int, what: str) -> np.ndarray:
    """n values of `dtype` from `data` (a read-only view), or INVALID_ARGUMENT."""
    if len(data) != n * dtype.itemsize:
        raise InvalidArgument(
            f"{what}: {len(data)} bytes, expected {n * dtype.itemsize} "
            f"({n} little-endian {dtype.name} values)"
        )
    return np.frombuffer(data, dtype=dtype)


def _le(arr: np.ndarray, dtype: np.dtype) -> bytes:
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()


def packed_strings_to_pb(s: PackedStrings) -> pb.PackedStrings:
    return pb.PackedStrings(data=s.data, offsets=_le(s.offsets, OFFSET))


def packed_strings_from_pb(m: pb.PackedStrings, n: int, what: str) -> PackedStrings:
    offsets = array_from_bytes(m.offsets, OFFSET, n + 1, f"{what}.offsets") if n else None
    if offsets is None:
        if m.offsets not in (b"", b"\0" * 8) or m.data:
            raise InvalidArgument(f"{what}: data or offsets given for no rows")
        return PackedStrings(b"", np.zeros(1, OFFSET))
    return PackedStrings.from_buffers(m.data, offsets, n, what)


def row_count(m: pb.PackedStrings, what: str) -> int:
    """Rows of a packed column: its offsets hold n + 1 int64 (none: 0 rows)."""
    if len(m.offsets) % 8:
        raise InvalidArgument(f"{what}.offsets: {len(m.offsets)} bytes, expected 8 per offset")
    return max(len(m.offsets) // 8 - 1, 0)


def _column_to_pb(name: str, col: AttributeColumn) -> pb.AttributeColumn:
    out = pb.AttributeColumn(
        name=name, present=b"" if col.present.all() else _le(col.present, np.dtype(np.uint8))
    )
    values = col.values
    if isinstance(values, StringLists):
        out.string_list_values.CopyFrom(
            pb.PackedStringLists(
                items=packed_strings_to_pb(values.items), offsets=_le(values.offsets, OFFSET)
            )
        )
    elif isinstance(values, PackedStrings):
        out.string_values.CopyFrom(packed_strings_to_pb(values))
    elif col.type is AttrType.INT:
        out.int_values = _le(values, I64)
    else:
        out.float_values = _le(values, F64)
    return out


def _column_from_pb(m: pb.AttributeColumn, n: int, what: str) -> AttributeColumn:
    kind = m.WhichOneof("values")
    values: ColumnValues
    if kind == "int_values":
        attr_type, values = AttrType.INT, array_from_bytes(m.int_values, I64, n, what)
    elif kind == "float_values":
        attr_type, values = AttrType.FLOAT, array_from_bytes(m.float_values, F64, n, what)
    elif kind == "string_values":
        attr_type, values = AttrType.STRING, packed_strings_from_pb(m.string_values, n, what)
    elif kind == "string_list_values":
        lists = m.string_list_values
        offsets = array_from_bytes(lists.offsets, OFFSET, n + 1, f"{what}.offsets")
        if offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise InvalidArgument(f"{what}.offsets: must rise from 0")
        items = packed_strings_from_pb(lists.items, int(offsets[-1]), f"{what}.items")
        attr_type, values = AttrType.STRING_LIST, StringLists(items, offsets)
    else:
        raise InvalidArgument(f"{what}: no values, expected int/float/string/string list values")
    if m.present:
        raw = array_from_bytes(m.present, np.dtype(np.uint8), n, f"{what}.present")
        if (raw > 1).any():
            raise InvalidArgument(f"{what}.present: expected one byte per row, 0 or 1")
        present = raw.view(bool)
    else:
        present = np.ones(n, dtype=bool)
    return AttributeColumn(attr_type, values, present)


def record_columns_to_pb(c: RecordColumns) -> pb.RecordColumns:
    return pb.RecordColumns(
        entity_ids=packed_strings_to_pb(c.entity_ids),
        vectors=_le(c.vectors, F32),
        dimension=c.dimension,
        source_versions=_le(c.source_versions, I64) if c.source_versions.any() else b"",
        created_at_unix_micros=_le(c.created_at, I64) if c.created_at.any() else b"",
        model_version=c.model_version,
        attributes=[_column_to_pb(name, col) for name, col in c.attributes.items()],
        entity_type=c.entity_type,
    )


def record_columns_from_pb(m: pb.RecordColumns, what: str = "records") -> RecordColumns:
    n = row_count(m.entity_ids, f"{what}.entity_ids")
    ids = packed_strings_from_pb(m.entity_ids, n, f"{what}.entity_ids")
    dim = m.dimension
    if n and not dim:
        raise InvalidArgument(f"{what}.dimension: 0, expected the vectors' dimension")
    vectors = array_from_bytes(m.vectors, F32, n * dim, f"{what}.vectors").reshape(n, dim)

    def int64s(data: bytes, field: str) -> np.ndarray:
        if not data:
            return np.zeros(n, dtype=I64)
        return array_from_bytes(data, I64, n, f"{what}.{field}")

    columns: dict[str, AttributeColumn] = {}
    for i, col in enumerate(m.attributes):
        where = f"{what}.attributes[{i}] {col.name!r}"
        if not col.name:
            raise InvalidArgument(f"{what}.attributes[{i}]: empty name, expected a name")
        if col.name in columns:
            raise InvalidArgument(f"{where}: a second column of this name, expected one")
        columns[col.name] = _column_from_pb(col, n, where)
    return RecordColumns(
        ids,
        vectors,
        int64s(m.source_versions, "source_versions"),
        int64s(m.created_at_unix_micros, "created_at_unix_micros"),
        columns,
        m.model_version,
        m.entity_type,
    )
