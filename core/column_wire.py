"""proto ↔ columns: feature columns, resolved feature groups, row batches
and entity keys as they travel (common.proto, "columns"), for the SDK, the
coordinator and the shard alike.

Every buffer is read with `np.frombuffer` (no copy, no per-value step) and
checked before use — sizes, offsets, UTF-8, bit counts — because a bulk
write's columns come from callers: a malformed one is refused with
INVALID_ARGUMENT naming it, never half-read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from core.embedding_columns import EmbeddingColumns
from core.errors import InvalidArgument
from core.feature_columns import (
    BOOL,
    DTYPES,
    STRING,
    VALUE_DTYPE,
    VARIABLE,
    FeatureColumn,
    ResolvedColumns,
    gather_ranges,
    offsets_of,
)
from protos.vecshard.v1 import common_pb2 as pb

_I32, _I64 = np.dtype("<i4"), np.dtype("<i8")


def bits_to_bytes(mask: npt.NDArray[np.bool_]) -> bytes:
    return np.packbits(mask, bitorder="little").tobytes()


def bits_from_bytes(raw: bytes, n: int, where: str) -> npt.NDArray[np.bool_]:
    if len(raw) != (n + 7) // 8:
        raise InvalidArgument(f"{where}: {len(raw)} bytes of bits; expected {(n + 7) // 8} for {n}")
    return np.unpackbits(np.frombuffer(raw, np.uint8), count=n, bitorder="little").astype(bool)


def array_from_bytes(raw: bytes, dtype: np.dtype[np.generic], n: int, where: str) -> np.ndarray:
    if len(raw) != n * dtype.itemsize:
        raise InvalidArgument(
            f"{where}: {len(raw)} bytes; expected {n} values of {dtype.itemsize} bytes"
        )
    return np.frombuffer(raw, dtype=dtype)


def column_to_pb(col: FeatureColumn) -> pb.FeatureColumn:
    n = len(col)
    out = pb.FeatureColumn(dtype=col.dtype, length=n)
    if not col.valid.all():
        out.validity = bits_to_bytes(col.valid)
    if col.dtype == BOOL:
        out.values = bits_to_bytes(col.values)
    else:
        out.values = np.ascontiguousarray(col.values, dtype=VALUE_DTYPE[col.dtype]).tobytes()
    if col.offsets is not None:
        out.offsets = col.offsets.astype(_I32, copy=False).tobytes()
    return out


def column_from_pb(c: pb.FeatureColumn, where: str) -> FeatureColumn:
    """The column, checked, in canonical form (null slots hold 0 / nothing,
    whatever the sender left there: Arrow leaves them undefined)."""
    if c.dtype not in DTYPES:
        raise InvalidArgument(f"{where}: dtype {c.dtype!r}; expected one of {list(DTYPES)}")
    n = c.length
    # The bytes are checked against `length` before anything of `length`
    # is allocated: a length of 2**32 - 1 on empty bytes made a 4 GB mask.
    if c.dtype not in VARIABLE:
        if c.offsets:
            raise InvalidArgument(f"{where}: a {c.dtype} column has offsets; expected none")
        if c.dtype == BOOL:
            values = bits_from_bytes(c.values, n, f"{where} values")
        else:
            values = array_from_bytes(c.values, VALUE_DTYPE[c.dtype], n, f"{where} values")
        valid = _validity(c, n, where)
        if not valid.all() and values[~valid].any():
            values = np.where(valid, values, values.dtype.type(0))
        return FeatureColumn(c.dtype, valid, values)
    offsets = array_from_bytes(c.offsets, _I32, n + 1, f"{where} offsets")
    valid = _validity(c, n, where)
    item = VALUE_DTYPE[c.dtype]
    if len(c.values) % item.itemsize:
        raise InvalidArgument(f"{where}: {len(c.values)} bytes of float64 items")
    items = np.frombuffer(c.values, dtype=item)
    lengths = np.diff(offsets)
    if offsets[0] != 0 or offsets[-1] != len(items) or (lengths < 0).any():
        raise InvalidArgument(
            f"{where}: offsets must start at 0, never decrease and end at {len(items)}"
        )
    if c.dtype == STRING:
        _check_utf8(items, offsets, where)
    if not valid.all() and lengths[~valid].any():
        lengths = np.where(valid, lengths, 0)
        items = gather_ranges(items, offsets[:-1], lengths)
        offsets = offsets_of(lengths)
    return FeatureColumn(c.dtype, valid, items, offsets)


def _validity(c: pb.FeatureColumn, n: int, where: str) -> npt.NDArray[np.bool_]:
    return np.ones(n, dtype=bool) if not c.validity else bits_from_bytes(c.validity, n, where)


def _check_utf8(data: npt.NDArray[np.uint8], offsets: np.ndarray, where: str) -> None:
    """Valid UTF-8 as a whole, and no value starts inside a character (then
    every value is valid UTF-8 on its own)."""
    try:
        data.tobytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{where}: string bytes are not UTF-8 ({exc.reason})") from None
    starts = offsets[:-1][np.diff(offsets) > 0]
    if (data[starts] & 0xC0 == 0x80).any():
        raise InvalidArgument(f"{where}: a string begins inside a UTF-8 character")


def resolved_to_pb(r: ResolvedColumns) -> pb.ResolvedFeatureColumns:
    return pb.ResolvedFeatureColumns(
        features=list(r.features),
        rows=r.rows,
        columns=[column_to_pb(c) for c in r.columns],
        missing_reasons=r.reasons.tobytes(),
        fills=r.fills.tobytes(),
        stored=bits_to_bytes(r.stored),
        staleness_us=r.staleness_us.astype(_I64, copy=False).tobytes(),
        feature_timestamp_us=r.feature_timestamp_us.astype(_I64, copy=False).tobytes(),
    )


def resolved_from_pb(m: pb.ResolvedFeatureColumns, where: str = "") -> ResolvedColumns:
    where = where or "feature columns"
    n, f = m.rows, len(m.features)
    if len(m.columns) != f:
        raise InvalidArgument(f"{where}: {len(m.columns)} columns for {f} features")
    columns = tuple(
        column_from_pb(c, f"{where}, {name}") for name, c in zip(m.features, m.columns, strict=True)
    )
    if any(len(c) != n for c in columns):
        raise InvalidArgument(f"{where}: a column is not {n} rows long")
    shape = (f, n)
    reasons = array_from_bytes(m.missing_reasons, np.dtype(np.uint8), f * n, where)
    fills = array_from_bytes(m.fills, np.dtype(np.uint8), f * n, where)
    return ResolvedColumns(
        tuple(m.features),
        columns,
        reasons.reshape(shape),
        fills.reshape(shape),
        bits_from_bytes(m.stored, n, f"{where} stored"),
        array_from_bytes(m.staleness_us, _I64, n, f"{where} staleness_us"),
        array_from_bytes(m.feature_timestamp_us, _I64, n, f"{where} feature_timestamp_us"),
    )


def reason_counts(m: pb.ResolvedFeatureColumns) -> npt.NDArray[np.int64]:
    """How many values have each missing-reason code (index = code), read
    from the codes alone: the values themselves stay undecoded."""
    codes = np.frombuffer(m.missing_reasons, dtype=np.uint8)
    return np.bincount(codes, minlength=8).astype(np.int64)


# Rows to write as columns: tenant ("" = the caller's), entity type ("" =
# the group's), ids, feature_timestamp, generated_at and columns by feature.
RowColumns = tuple[
    str, str, list[str], npt.NDArray[np.int64], npt.NDArray[np.int64], dict[str, FeatureColumn]
]


def row_columns_to_pb(
    tenant_id: str,
    entity_ids: Sequence[str],
    feature_timestamp: npt.NDArray[np.int64],
    generated_at: npt.NDArray[np.int64],
    columns: Mapping[str, FeatureColumn],
    entity_type: str = "",
) -> pb.FeatureRowColumns:
    return pb.FeatureRowColumns(
        tenant_id=tenant_id,
        entity_type=entity_type,
        entity_ids=list(entity_ids),
        feature_timestamp_us=np.asarray(feature_timestamp, dtype=_I64).tobytes(),
        generated_at_us=np.asarray(generated_at, dtype=_I64).tobytes(),
        values={name: column_to_pb(c) for name, c in columns.items()},
    )


def row_columns_from_pb(m: pb.FeatureRowColumns, where: str) -> RowColumns:
    ids = list(m.entity_ids)
    n = len(ids)
    for name, c in m.values.items():
        if c.length != n:
            raise InvalidArgument(
                f"{where}, feature {name!r}: length {c.length}; expected {n}, one per entity id"
            )
    return (
        m.tenant_id,
        m.entity_type,
        ids,
        array_from_bytes(m.feature_timestamp_us, _I64, n, f"{where} feature_timestamp_us"),
        array_from_bytes(m.generated_at_us, _I64, n, f"{where} generated_at_us"),
        {name: column_from_pb(c, f"{where}, feature {name!r}") for name, c in m.values.items()},
    )


def key_columns_to_pb(types: Sequence[str], ids: Sequence[str]) -> pb.EntityKeyColumns:
    """Keys as columns from per-entity types and ids."""
    code: dict[str, int] = {}
    index = [code.setdefault(t, len(code)) for t in types]
    if len(code) > 256:
        raise InvalidArgument(f"{len(code)} entity types in one request; expected at most 256")
    return pb.EntityKeyColumns(
        entity_types=list(code), type_index=bytes(index), entity_ids=list(ids)
    )


def key_columns_from_pb(
    m: pb.EntityKeyColumns, where: str
) -> tuple[list[str], npt.NDArray[np.uint8], list[str]]:
    """(distinct types, a type index per entity, ids)."""
    ids = list(m.entity_ids)
    index = array_from_bytes(m.type_index, np.dtype(np.uint8), len(ids), f"{where} type_index")
    if len(ids) and int(index.max()) >= len(m.entity_types):
        raise InvalidArgument(
            f"{where}: a type index beyond the {len(m.entity_types)} entity types given"
        )
    types = list(m.entity_types)
    if len(set(types)) != len(types):
        # Rows are numbered per type: a type under two codes would be two
        # half-lists of one type, answered out of place.
        twice = next(t for i, t in enumerate(types) if t in types[:i])
        raise InvalidArgument(
            f"{where}: entity type {twice!r} is listed twice in entity_types; "
            "expected each type once, with type_index pointing at it"
        )
    return types, index, ids


def embeddings_to_pb(c: EmbeddingColumns) -> pb.EmbeddingColumns:
    return pb.EmbeddingColumns(
        status=c.status.astype(np.uint8, copy=False).tobytes(),
        dimension=c.vectors.shape[1],
        vectors=np.ascontiguousarray(c.vectors, dtype="<f4").tobytes(),
        source_version=c.source_version.astype(_I64, copy=False).tobytes(),
        created_at_us=c.created_at.astype(_I64, copy=False).tobytes(),
        norm=c.norm.astype("<f4", copy=False).tobytes(),
        model_versions=c.model_versions,
        model_version_index=c.model_version_index.astype(_I32, copy=False).tobytes(),
        attributes_json=c.attributes_json or [],
    )


def embeddings_from_pb(m: pb.EmbeddingColumns, keys: int, where: str) -> EmbeddingColumns:
    """The columns of an answer for `keys` keys, checked."""
    status = array_from_bytes(m.status, np.dtype(np.uint8), keys, f"{where} status")
    vectors = np.frombuffer(m.vectors, dtype="<f4")
    if m.dimension == 0 and m.vectors or (m.dimension and len(vectors) != keys * m.dimension):
        raise InvalidArgument(
            f"{where}: {len(vectors)} vector values; expected {keys} x {m.dimension}"
        )
    index = array_from_bytes(m.model_version_index, _I32, keys, f"{where} model_version_index")
    if keys and not -1 <= int(index.min()) <= int(index.max()) < len(m.model_versions):
        raise InvalidArgument(f"{where}: a model version index out of range")
    attrs = list(m.attributes_json)
    if attrs and len(attrs) != keys:
        raise InvalidArgument(f"{where}: {len(attrs)} attribute objects for {keys} keys")
    return EmbeddingColumns(
        status,
        vectors.reshape(keys, m.dimension),
        array_from_bytes(m.source_version, _I64, keys, f"{where} source_version"),
        array_from_bytes(m.created_at_us, _I64, keys, f"{where} created_at_us"),
        array_from_bytes(m.norm, np.dtype("<f4"), keys, f"{where} norm"),
        list(m.model_versions),
        index,
        attrs or None,
    )
