"""The one feature-row / feature-value codec (core.wire) that the SDK, the
coordinator and the shard all use: rows and resolved values survive the wire
unchanged, whatever their dtype, and null travels as an absent value."""

from __future__ import annotations

from core.domain import EntityKey
from core.wire import (
    feature_row_from_pb,
    feature_row_to_pb,
    resolved_value_from_pb,
    resolved_value_to_pb,
)
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
