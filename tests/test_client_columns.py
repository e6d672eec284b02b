"""The SDK's columns from user arrays (client.column_writes): attribute types
inferred per column, None for rows without the attribute, and the checks
that fail before anything is sent."""

from __future__ import annotations

import numpy as np
import pytest

from client.column_writes import attribute_column, record_columns
from core.domain import AttrType
from core.errors import InvalidArgument


@pytest.mark.parametrize(
    ("values", "kind", "present"),
    [
        (np.array([1, 2, 3], dtype=np.int32), AttrType.INT, [True] * 3),
        (np.array([1.5, 2.0, 3.0]), AttrType.FLOAT, [True] * 3),
        ([1, None, 3], AttrType.INT, [True, False, True]),
        ([1, 2.5, None], AttrType.FLOAT, [True, True, False]),
        (["a", None, "c"], AttrType.STRING, [True, False, True]),
        ([["x"], None, ("y", "z")], AttrType.STRING_LIST, [True, False, True]),
        ([None, None, None], AttrType.STRING, [False] * 3),
    ],
)
def test_a_column_takes_its_type_from_its_values(
    values: object, kind: AttrType, present: list[bool]
) -> None:
    col = attribute_column("a", values, 3)  # type: ignore[arg-type]
    assert col.type is kind and col.present.tolist() == present
    if kind is AttrType.STRING_LIST:
        assert col.tolist() == [("x",), None, ("y", "z")]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["a", 1, None], "mixes"),
        ([True, False, True], "booleans"),
        ([{"x": 1}, None, None], "not a string"),
        ([1, 2], "2 values for 3 rows"),
    ],
)
def test_a_column_that_cannot_be_typed_is_refused(values: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        attribute_column("a", values, 3)  # type: ignore[arg-type]


def test_vectors_and_versions_are_checked_before_sending() -> None:
    with pytest.raises(InvalidArgument, match=r"shape \(2, 3\), expected \(3, dimension\)"):
        record_columns(["a", "b", "c"], np.ones((2, 3)))
    bad = np.ones((3, 2))
    bad[2, 1] = np.nan
    with pytest.raises(InvalidArgument, match=r"vectors\[2\] \('c'\): contains NaN"):
        record_columns(["a", "b", "c"], bad)
    with pytest.raises(InvalidArgument, match="source_versions: shape"):
        record_columns(["a"], np.ones((1, 2)), source_versions=[1, 2])
    cols = record_columns(["a", "é"], [[1, 2], [3, 4]], source_versions=[5, 6])
    assert cols.entity_ids.tolist() == ["a", "é"] and cols.vectors.dtype == np.float32
    assert cols.source_versions.tolist() == [5, 6] and cols.created_at.tolist() == [0, 0]
