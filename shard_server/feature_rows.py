"""How a feature row is laid out in RocksDB (DESIGN §7), encoded and decoded
a batch at a time.

Every value begins with the same header, in both formats:

    int64 feature_timestamp | int64 generated_at | uint16 len(v) | v (group version)

so precedence checks read 16 bytes and never the rest. Then:

- format 2 (written now): one byte `2`, a validity bitmap (one bit per
  feature in the group's order, least significant first, 1 = a value), one
  fixed-width slot per feature — int64 / float64 little-endian (8 bytes),
  bool (1 byte), and for string and float_list the uint32 end of its bytes
  in the variable area — then the variable area: the UTF-8 bytes of each
  string and the float64 items of each list, in feature order. The prefix
  up to the variable area has one size per group version, so a multi-get's
  values, concatenated, decode with a handful of numpy operations whatever
  their number: no Python object per value.
- format 1 (written before): the values as a JSON array in feature order.
  Its first byte is `[`, never 2, which tells the formats apart; such rows
  are still read (converted on the fly), and rewritten in format 2 by the
  next put of their entity.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import Internal
from core.feature_columns import (
    BOOL,
    FLOAT64,
    FLOAT_LIST,
    INT64,
    STRING,
    VARIABLE,
    FeatureColumn,
    from_values,
    gather_ranges,
    offsets_of,
)
from registry.feature_batches import StoredRows, absent_rows
from registry.features import GroupSchema

FORMAT = 2
_LEGACY = ord("[")
_TIMES = struct.Struct("<qqH")
_SLOT = {INT64: "<i8", FLOAT64: "<f8", BOOL: "u1", STRING: "<u4", FLOAT_LIST: "<u4"}
# bytes per item in the variable area
_ITEM = {STRING: 1, FLOAT_LIST: 8}


@dataclass(frozen=True)
class RowLayout:
    """The fixed prefix of a group version's format-2 rows as a numpy
    structured dtype (fields `ts`, `gen`, `vlen`, `ver`, `fmt`, `bits`, then
    `f0`, `f1`, ... one per feature)."""

    names: tuple[str, ...]
    dtypes: tuple[str, ...]
    tag: bytes  # uint16 length + the group version
    prefix: np.dtype[Any]

    @property
    def size(self) -> int:
        return int(self.prefix.itemsize)


@lru_cache(maxsize=1024)
def _layout(names: tuple[str, ...], dtypes: tuple[str, ...], version: str) -> RowLayout:
    raw = version.encode()
    fields: list[tuple[Any, ...]] = [
        ("ts", "<i8"),
        ("gen", "<i8"),
        ("vlen", "<u2"),
        ("ver", "u1", (len(raw),)),
        ("fmt", "u1"),
        ("bits", "u1", ((len(names) + 7) // 8,)),
    ]
    fields += [(f"f{i}", _SLOT[dt]) for i, dt in enumerate(dtypes)]
    return RowLayout(names, dtypes, struct.pack("<H", len(raw)) + raw, np.dtype(fields))


def layout(schema: GroupSchema) -> RowLayout:
    return _layout(
        schema.names, tuple(d.dtype.value for d in schema.definitions), schema.group.version
    )


def row_times(raw: bytes) -> tuple[int, int]:
    ts, gen, _ = _TIMES.unpack_from(raw)
    return int(ts), int(gen)


def encode_rows(
    schema: GroupSchema,
    feature_timestamp: npt.NDArray[np.int64],
    generated_at: npt.NDArray[np.int64],
    columns: dict[str, FeatureColumn] | Any,
) -> list[bytes]:
    """Format-2 values of `len(feature_timestamp)` rows; `columns` holds a
    column per feature of the group, checked (`check_batch`)."""
    lay = layout(schema)
    n = len(feature_timestamp)
    if n == 0:
        return []
    head = np.zeros(n, dtype=lay.prefix)
    head["ts"], head["gen"], head["vlen"] = feature_timestamp, generated_at, len(lay.tag) - 2
    head["ver"] = np.frombuffer(lay.tag[2:], dtype=np.uint8)
    head["fmt"] = FORMAT
    cols = [columns[name] for name in lay.names]
    if cols:
        valid = np.stack([c.valid for c in cols], axis=1)
        head["bits"] = np.packbits(valid, axis=1, bitorder="little").reshape(n, -1)
    var_len = np.zeros(n, dtype=np.int64)
    var_parts: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.int64]]] = []
    for i, (dt, col) in enumerate(zip(lay.dtypes, cols, strict=True)):
        if dt in VARIABLE:
            lengths = col.lengths.astype(np.int64) * _ITEM[dt]
            var_parts.append((var_len.copy(), col.values.view(np.uint8), lengths))
            var_len += lengths
            head[f"f{i}"] = var_len
        else:
            head[f"f{i}"] = col.values
    total = lay.size + var_len
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(total[:-1], out=starts[1:])
    out = np.empty(int(total.sum()), dtype=np.uint8)
    out[(starts[:, None] + np.arange(lay.size)).reshape(-1)] = head.view(np.uint8)
    for rel, data, lengths in var_parts:
        size = int(lengths.sum())
        if size:
            dest_start = starts + lay.size + rel
            shift = np.repeat(dest_start - (np.cumsum(lengths) - lengths), lengths)
            out[np.arange(size, dtype=np.int64) + shift] = data
    blob = out.tobytes()
    bounds = np.append(starts, len(blob)).tolist()
    return [blob[bounds[i] : bounds[i + 1]] for i in range(n)]


def _upgrade(schema: GroupSchema, raw: bytes, head: int) -> bytes:
    """A format-1 (JSON) row, re-encoded in format 2."""
    values = json.loads(raw[head:])
    if len(values) != len(schema.names):
        raise Internal(
            f"a stored row of feature group {schema.ref} has {len(values)} values; "
            f"expected {len(schema.names)}"
        )
    # JSON has no tuple: a float_list comes back as a list.
    cols = {
        d.name: from_values(d.dtype.value, [tuple(v) if isinstance(v, list) else v])
        for d, v in zip(schema.definitions, values, strict=True)
    }
    ts, gen = row_times(raw)
    (row,) = encode_rows(schema, np.array([ts]), np.array([gen]), cols)
    return row


def _prefixes(
    lay: RowLayout, live: list[bytes]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[Any]]:
    """The rows concatenated, where each begins, and their fixed prefixes
    (a row too short for one reads zeros there: it then fails the format
    check)."""
    lengths = np.fromiter(map(len, live), dtype=np.int64, count=len(live))
    starts = np.zeros(len(live), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    blob = np.frombuffer(b"".join(live) + bytes(lay.size), dtype=np.uint8)
    head = blob[(starts[:, None] + np.arange(lay.size)).reshape(-1)].view(lay.prefix)
    short = lengths < lay.size
    if short.any():
        head = head.copy()
        head["fmt"][short] = 0
    return blob, starts, head


def _legacy(schema: GroupSchema, lay: RowLayout, raw: bytes) -> bytes:
    head_end = 16 + len(lay.tag)
    if raw[16:head_end] != lay.tag:
        raise Internal(
            f"a stored row of feature group {schema.ref} is not of group version "
            f"{schema.group.version!r}"
        )
    if len(raw) > head_end and raw[head_end] == _LEGACY:
        return _upgrade(schema, raw, head_end)
    raise Internal(f"a stored row of feature group {schema.ref} has an unknown format")


def decode_rows(schema: GroupSchema, raws: Sequence[bytes | None]) -> StoredRows:
    """Stored rows (None: none stored) as columns, in `raws` order."""
    lay = layout(schema)
    n = len(raws)
    present = np.fromiter((r is not None for r in raws), dtype=bool, count=n)
    live = [r for r in raws if r is not None]
    if not live:
        return absent_rows(schema, n)
    blob, starts, head = _prefixes(lay, live)
    tag = np.frombuffer(lay.tag[2:], dtype=np.uint8)
    current = (head["fmt"] == FORMAT) & (head["vlen"] == len(tag))
    current &= (head["ver"].reshape(len(live), -1) == tag).all(axis=1)
    if not current.all():
        # Rare: a row of the old format (upgraded here), or a bad one.
        live = [
            r if ok else _legacy(schema, lay, r)
            for r, ok in zip(live, current.tolist(), strict=True)
        ]
        blob, starts, head = _prefixes(lay, live)
    m, fixed = len(live), lay.size
    where = np.flatnonzero(present)

    def spread(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        out = np.zeros(n, dtype=values.dtype)
        out[where] = values
        return out

    bits = head["bits"].reshape(m, -1)
    valid = np.unpackbits(bits, axis=1, count=len(lay.names), bitorder="little").astype(bool)
    columns: dict[str, FeatureColumn] = {}
    var_start = np.zeros(m, dtype=np.int64)
    for i, (name, dt) in enumerate(zip(lay.names, lay.dtypes, strict=True)):
        ok = spread(valid[:, i])
        slot = head[f"f{i}"]
        if dt not in VARIABLE:
            values = spread(slot.astype(bool if dt == BOOL else slot.dtype))
            columns[name] = FeatureColumn(dt, ok, values)
            continue
        end = slot.astype(np.int64)
        size = end - var_start
        data = gather_ranges(blob, starts + fixed + var_start, size)
        var_start = end
        items = data.view("<f8") if dt == FLOAT_LIST else data
        columns[name] = FeatureColumn(dt, ok, items, offsets_of(spread(size // _ITEM[dt])))
    return StoredRows(
        present, spread(head["ts"].astype(np.int64)), spread(head["gen"].astype(np.int64)), columns
    )
