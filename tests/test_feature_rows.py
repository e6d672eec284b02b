"""The packed feature row (shard_server/feature_rows.py), by property: any
batch of rows of any schema decodes to exactly what was written — every
dtype, nulls, empty strings, empty lists, NaN, infinities, -0.0 and the
int64 extremes — whatever the rows' order, lengths or group version; and a
row written in the old format (JSON) still reads, mixed with new ones."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.feature_columns import DTYPES, FeatureColumn, from_values, same
from registry.features import (
    FeatureDefinition,
    FeatureDType,
    FeatureGroup,
    GroupSchema,
    PrivacyClass,
)
from shard_server.feature_rows import FORMAT, decode_rows, encode_rows, row_times

INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
SCALARS = {
    "int64": INT64,
    "float64": FLOATS,
    "string": st.text(max_size=12),
    "bool": st.booleans(),
    "float_list": st.lists(FLOATS, max_size=5).map(tuple),
}


def schema_of(dtypes: list[str], version: str) -> GroupSchema:
    defs = tuple(
        FeatureDefinition(f"f{i}", "v1", "item", FeatureDType(dt), PrivacyClass.PUBLIC, "t")
        for i, dt in enumerate(dtypes)
    )
    group = FeatureGroup("g", version, "item", tuple(d.ref for d in defs))
    return GroupSchema(group, defs)


@st.composite
def batches(draw: st.DrawFn) -> tuple[GroupSchema, np.ndarray, np.ndarray, dict, list]:
    dtypes = draw(st.lists(st.sampled_from(DTYPES), min_size=1, max_size=7))
    version = draw(st.text("abcv0123456789._-", min_size=1, max_size=20).filter(str.isalnum))
    schema = schema_of(dtypes, version)
    n = draw(st.integers(0, 12))
    values = [draw(st.lists(st.none() | SCALARS[dt], min_size=n, max_size=n)) for dt in dtypes]
    ts = np.array(draw(st.lists(INT64, min_size=n, max_size=n)), dtype=np.int64)
    gen = np.array(draw(st.lists(INT64, min_size=n, max_size=n)), dtype=np.int64)
    columns = {
        f"f{i}": from_values(dt, v) for i, (dt, v) in enumerate(zip(dtypes, values, strict=True))
    }
    return schema, ts, gen, columns, values


def same_values(a: list[Any], b: list[Any]) -> bool:
    """Equal, NaN equal to NaN (bitwise: -0.0 is not 0.0)."""

    def key(v: Any) -> Any:
        if isinstance(v, float):
            return struct.pack("<d", v)
        if isinstance(v, tuple):
            return tuple(key(x) for x in v)
        return (type(v).__name__, v)

    return [key(v) for v in a] == [key(v) for v in b]


@settings(max_examples=300, deadline=None)
@given(batches(), st.data())
def test_decoding_a_packed_row_gives_what_was_written(batch: tuple, data: st.DataObject) -> None:
    schema, ts, gen, columns, values = batch
    raws = encode_rows(schema, ts, gen, columns)
    assert len(raws) == len(ts)
    assert [row_times(r) for r in raws] == list(zip(ts.tolist(), gen.tolist(), strict=True))
    # Read back in any order, with absent keys in between.
    order = data.draw(st.permutations(range(len(raws))))
    gaps = data.draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))
    asked: list[bytes | None] = []
    for i, gap in zip(order, gaps, strict=True):
        if gap:
            asked.append(None)
        asked.append(raws[i])
    stored = decode_rows(schema, asked)
    rows = np.array(order, dtype=np.int64)
    present = np.array([r is not None for r in asked], dtype=bool)
    assert np.array_equal(stored.present, present)
    assert stored.feature_timestamp[present].tolist() == ts[rows].tolist()
    assert stored.generated_at[present].tolist() == gen[rows].tolist()
    for j, name in enumerate(schema.names):
        got = stored.columns[name].to_list()
        assert all(v is None for v, p in zip(got, present, strict=True) if not p)
        want = [values[j][i] for i in order]
        assert same_values([v for v, p in zip(got, present, strict=True) if p], want), name
        # The canonical buffers too: null slots hold 0 / nothing.
        assert same(stored.columns[name].take(np.flatnonzero(present)), columns[name].take(rows))


def test_the_layout_is_compact_and_versioned() -> None:
    schema = schema_of(["int64", "string", "bool", "float_list"], "v1")
    (raw,) = encode_rows(
        schema,
        np.array([7]),
        np.array([9]),
        {
            "f0": from_values("int64", [None]),
            "f1": from_values("string", ["ab"]),
            "f2": from_values("bool", [True]),
            "f3": from_values("float_list", [()]),
        },
    )
    header = struct.pack("<qqH", 7, 9, 2) + b"v1"
    assert raw.startswith(header) and raw[len(header)] == FORMAT
    # bitmap 0b1110, int64 slot, two uint32 ends, a bool byte, then "ab"
    assert raw[len(header) + 1] == 0b1110
    assert len(raw) == len(header) + 1 + 1 + 8 + 4 + 1 + 4 + 2
    assert raw.endswith(b"ab")


def legacy_row(ts: int, gen: int, version: str, values: list[Any]) -> bytes:
    """A row as the store wrote it before format 2 (JSON array body)."""
    v = version.encode()
    body = json.dumps(values, separators=(",", ":"), allow_nan=False).encode()
    return struct.pack("<qqH", ts, gen, len(v)) + v + body


def test_rows_written_in_the_old_format_still_read_beside_new_ones() -> None:
    schema = schema_of(["string", "int64", "float64", "bool", "float_list"], "v1")
    old = [
        legacy_row(5, 6, "v1", ["x", 2**62, 0.1 + 0.2, True, [1.5, -2.0]]),
        legacy_row(1, 1, "v1", [None, None, None, None, None]),
        legacy_row(2, 3, "v1", ["", -1, -0.0, False, []]),
    ]
    (new,) = encode_rows(
        schema,
        np.array([8]),
        np.array([8]),
        {
            "f0": from_values("string", ["new"]),
            "f1": from_values("int64", [3]),
            "f2": from_values("float64", [math.pi]),
            "f3": from_values("bool", [None]),
            "f4": from_values("float_list", [(0.5,)]),
        },
    )
    stored = decode_rows(schema, [old[0], None, new, old[1], old[2]])
    assert stored.present.tolist() == [True, False, True, True, True]
    assert stored.feature_timestamp.tolist() == [5, 0, 8, 1, 2]
    got = [stored.columns[n].to_list() for n in schema.names]
    assert got[0] == ["x", None, "new", None, ""]
    assert got[1] == [2**62, None, 3, None, -1]
    assert same_values(got[2], [0.1 + 0.2, None, math.pi, None, -0.0])
    assert got[3] == [True, None, None, None, False]
    assert got[4] == [(1.5, -2.0), None, (0.5,), None, ()]


def test_a_row_of_another_group_version_is_refused() -> None:
    import pytest

    from core.errors import Internal

    schema = schema_of(["int64"], "v1")
    (raw,) = encode_rows(
        schema_of(["int64"], "v2"), np.array([1]), np.array([1]), {"f0": from_values("int64", [1])}
    )
    with pytest.raises(Internal, match="not of group version"):
        decode_rows(schema, [raw])


def test_column_helpers_keep_the_canonical_form() -> None:
    col = from_values("string", ["a", None, "bcd", ""])
    assert col.take(np.array([2, 1, 0])).to_list() == ["bcd", None, "a"]
    assert col.valid.tolist() == [True, False, True, True]
    assert isinstance(col, FeatureColumn) and col.lengths.tolist() == [1, 0, 3, 0]
