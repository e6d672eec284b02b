"""Arrow arrays ↔ feature columns (offline/arrow_columns.py and
client.feature_results.arrow_array), by property: any Arrow array of a
feature dtype — sliced, with nulls, chunked, large strings — becomes the
column of the same values, and back; and the point-in-time pick of stored
rows keeps only the picked rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from client.feature_results import arrow_array
from core.feature_columns import same
from offline.arrow_columns import column_from_arrow, stored_from_table
from offline.parquet_store import TIMESTAMP, arrow_type
from registry.features import FeatureDType
from tests.feature_catalog import CATALOG, PROFILE

FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
VALUES = {
    "int64": st.integers(-(2**63), 2**63 - 1),
    "float64": FINITE,
    "string": st.text(max_size=5),
    "bool": st.booleans(),
    "float_list": st.lists(FINITE, max_size=3),
}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_arrow_arrays_become_the_columns_of_their_values(data: st.DataObject) -> None:
    dtype = data.draw(st.sampled_from(sorted(VALUES)))
    values: list[Any] = data.draw(st.lists(st.none() | VALUES[dtype], max_size=12))
    arr = pa.array(values, arrow_type(FeatureDType(dtype)))
    start = data.draw(st.integers(0, len(values)))
    stop = data.draw(st.integers(start, len(values)))
    sliced = arr.slice(start, stop - start)
    if dtype == "string" and data.draw(st.booleans()):
        sliced = sliced.cast(pa.large_string())
    chunked = pa.chunked_array(
        [sliced[: len(sliced) // 2], sliced[len(sliced) // 2 :]], sliced.type
    )
    want = [tuple(v) if isinstance(v, list) else v for v in values[start:stop]]
    for given_arr in (sliced, chunked):
        col = column_from_arrow(given_arr, dtype)
        assert col.to_list() == want
        back = arrow_array(col)
        assert back.to_pylist() == values[start:stop]
        assert same(column_from_arrow(back, dtype), col)


def test_a_null_string_with_bytes_behind_it_reads_as_null() -> None:
    """Arrow leaves the bytes of a null slot undefined; they must not leak."""
    data = pa.py_buffer(b"abcXYZdef")
    offsets = pa.py_buffer(np.array([0, 3, 6, 9], dtype=np.int32))
    validity = pa.py_buffer(np.packbits([1, 0, 1], bitorder="little"))
    arr = pa.Array.from_buffers(pa.string(), 3, [validity, offsets, data])
    col = column_from_arrow(arr, "string")
    assert col.to_list() == ["abc", None, "def"] and col.values.tobytes() == b"abcdef"


def test_stored_rows_are_the_picked_rows_and_nothing_where_none() -> None:
    schema = CATALOG.schema(PROFILE)
    rows = pa.table(
        {
            "tenant_id": ["a", "a"],
            "entity_type": ["user", "user"],
            "entity_id": ["u1", "u2"],
            "feature_timestamp": pa.array([5, 7], pa.int64()).cast(TIMESTAMP),
            "generated_at": pa.array([6, 8], pa.int64()).cast(TIMESTAMP),
            "age_bucket": ["x", None],
            "account_days": [1, 2],
            "premium": [True, False],
        }
    )
    got = stored_from_table(schema, rows, np.array([1, -1, 0]))
    assert got.present.tolist() == [True, False, True]
    assert got.feature_timestamp.tolist() == [7, 0, 5]
    assert got.generated_at.tolist() == [8, 0, 6]
    assert got.columns["age_bucket"].to_list() == [None, None, "x"]
    assert got.columns["account_days"].to_list() == [2, None, 1]
    empty = stored_from_table(schema, rows.slice(0, 0), np.array([-1, -1]))
    assert empty.present.tolist() == [False, False]
    assert empty.columns["premium"].to_list() == [None, None]
