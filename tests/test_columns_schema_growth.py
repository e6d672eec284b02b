"""Attribute columns when an index version's schema grows (a metadata
backfill): segments built before lack the new attribute, and a filter on it
treats their rows as lacking it (false; `not` of it true), as
`core.filters.matches` does for a record without the attribute."""

from __future__ import annotations

import numpy as np

from core.domain import AttrType
from core.filters import Eq, Not, Range, matches
from shard_server.columns import AttributeColumns


def test_a_filter_on_an_attribute_a_segment_predates_matches_no_row() -> None:
    old = AttributeColumns({"cat": AttrType.STRING}, 3)
    for row, cat in enumerate(("a", "b", "a")):
        old.set_row(row, {"cat": cat})
    assert old.mask(Eq("region", "eu"), 3).tolist() == [False] * 3
    assert old.mask(Range("price", gte=1.0), 3).tolist() == [False] * 3
    assert old.mask(Not(Eq("region", "eu")), 3).tolist() == [True] * 3
    assert not matches(Eq("region", "eu"), {"cat": "a"})  # the reference semantics agree


def test_added_columns_start_missing_and_concat_fills_older_parts() -> None:
    grown = AttributeColumns({"cat": AttrType.STRING}, 2)
    grown.set_row(0, {"cat": "a"})
    grown.add_columns({"region": AttrType.STRING, "n": AttrType.INT}, 2)
    grown.set_row(1, {"cat": "b", "region": "eu", "n": 3})
    assert grown.mask(Eq("region", "eu"), 2).tolist() == [False, True]
    assert grown.value(0, "n") is None and grown.value(1, "n") == 3
    old = AttributeColumns({"cat": AttrType.STRING}, 1)
    old.set_row(0, {"cat": "c"})
    both = AttributeColumns.concat(grown.schema, [old, grown], [1, 2])
    assert both.mask(Eq("region", "eu"), 3).tolist() == [False, False, True]
    assert both.mask(Range("n", gte=1), 3).tolist() == [False, False, True]
    assert [both.value(i, "cat") for i in range(3)] == ["c", "a", "b"]
    assert np.array_equal(both.mask(Eq("cat", "a"), 3), [False, True, False])
