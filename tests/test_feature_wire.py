"""The one feature-row / feature-value codec (core.wire) that the SDK, the
coordinator and the shard all use: rows and resolved values survive the wire
unchanged, whatever their dtype, and null travels as an absent value."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from core.column_wire import column_from_pb, column_to_pb, row_columns_from_pb, row_columns_to_pb
from core.domain import EntityKey
from core.errors import InvalidArgument
from core.feature_columns import BOOL, FLOAT64, STRING, FeatureColumn
from core.wire import (
    feature_row_from_pb,
    feature_row_to_pb,
    resolved_value_from_pb,
    resolved_value_to_pb,
)
from protos.vecshard.v1 import common_pb2 as pb
from registry.feature_values import FeatureValue
from registry.features import FillAction, GroupRow, MissingReason


def test_a_group_row_round_trips_with_every_dtype() -> None:
    row = GroupRow(
        EntityKey("acme", "user", "u1"),
        1_700_000_000_000_000,
        1_700_000_000_000_123,
        {"age": "25-34", "days": 41, "premium": True, "ctr": 0.25, "taste": (0.5, -1.0)},
    )
    wire = feature_row_to_pb(*row)
    assert GroupRow(*feature_row_from_pb(wire)) == row
    assert GroupRow(*feature_row_from_pb(type(wire).FromString(wire.SerializeToString()))) == row


def test_a_null_value_is_absent_on_the_wire_and_reads_as_null() -> None:
    row = GroupRow(EntityKey("acme", "user", "u1"), 5, 5, {"age": None, "days": 3})
    wire = feature_row_to_pb(*row)
    assert set(wire.values) == {"days"}
    decoded = GroupRow(*feature_row_from_pb(wire))
    assert decoded.stored("age").value is None and decoded.stored("days").value == 3


def test_resolved_values_keep_reason_fill_staleness_and_timestamp() -> None:
    values = [
        FeatureValue(0.5, None, None, 60, 1000),
        FeatureValue(-1.0, MissingReason.STALE, FillAction.CONSTANT, 7200, 9),
        FeatureValue(None, MissingReason.NO_HISTORY, FillAction.NULL, 0, 9),
        FeatureValue("unknown", MissingReason.ENTITY_NOT_FOUND, FillAction.FEATURE_DEFAULT),
    ]
    assert [resolved_value_from_pb(resolved_value_to_pb(v)) for v in values] == [
        (0.5, None, None, 60, 1000),
        (-1.0, "stale", "constant", 7200, 9),
        (None, "no_history", "null", 0, 9),
        ("unknown", "entity_not_found", "feature_default", None, None),
    ]


def test_a_column_length_is_checked_against_its_bytes_before_anything_is_allocated() -> None:
    """A feature column of `length` 2**32 - 1 with no bytes made a 4 GB mask
    on the coordinator and on every shard before its bytes were found short
    (found by tests/test_shard_api_fuzz.py: the shard took past its deadline)."""
    good = column_to_pb(FeatureColumn(FLOAT64, np.array([True, False]), np.array([0.5, 0.0])))
    assert column_from_pb(good, "f").values.tolist() == [0.5, 0.0]
    for dtype in (FLOAT64, BOOL, STRING):
        huge = pb.FeatureColumn(dtype=dtype, length=2**32 - 1)
        tracemalloc.start()
        with pytest.raises(InvalidArgument, match="expected 429496729[56] values|for 4294967295"):
            column_from_pb(huge, "feature 'ctr'")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 1 << 20, f"{dtype}: {peak} bytes allocated"
    rows = row_columns_to_pb("t", ["a", "b"], np.zeros(2, np.int64), np.zeros(2, np.int64), {})
    rows.values["ctr"].CopyFrom(good)
    rows.values["ctr"].length = 3
    with pytest.raises(
        InvalidArgument, match="feature 'ctr': length 3; expected 2, one per entity"
    ):
        row_columns_from_pb(rows, "batch 0")
