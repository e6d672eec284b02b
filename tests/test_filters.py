"""Filters: validation against the schema, and the vectorized evaluator agreeing
with the reference semantics on every record (missing fields included)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import AttrType, AttrValue
from core.errors import InvalidArgument
from core.filters import (
    And,
    Eq,
    Filter,
    In,
    Not,
    Or,
    Range,
    matches,
    validate_attributes,
    validate_filter,
)
from core.wire import filter_from_pb, filter_to_pb
from shard_server.columns import AttributeColumns

SCHEMA = {
    "cat": AttrType.STRING,
    "n": AttrType.INT,
    "x": AttrType.FLOAT,
    "tags": AttrType.STRING_LIST,
}
WORDS = ["a", "b", "c", "d"]

records = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "cat": st.sampled_from(WORDS),
            "n": st.integers(-5, 5),
            "x": st.floats(-3, 3, allow_nan=False),
            "tags": st.lists(st.sampled_from(WORDS), max_size=3).map(tuple),
        },
    ),
    min_size=1,
    max_size=30,
)


def leaves() -> st.SearchStrategy[Filter]:
    bound = st.none() | st.floats(-4, 4, allow_nan=False)
    return st.one_of(
        st.builds(Eq, st.just("cat"), st.sampled_from(WORDS)),
        st.builds(Eq, st.just("n"), st.integers(-5, 5)),
        st.builds(Eq, st.just("x"), st.floats(-3, 3, allow_nan=False)),
        st.builds(Eq, st.just("tags"), st.sampled_from(WORDS)),
        st.builds(In, st.just("cat"), st.lists(st.sampled_from(WORDS), min_size=1).map(tuple)),
        st.builds(In, st.just("n"), st.lists(st.integers(-5, 5), min_size=1).map(tuple)),
        st.builds(In, st.just("tags"), st.lists(st.sampled_from(WORDS), min_size=1).map(tuple)),
        st.builds(Range, st.sampled_from(["n", "x"]), bound, bound, bound, bound).filter(
            lambda r: any(v is not None for v in (r.gte, r.gt, r.lte, r.lt))
        ),
    )


filters = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(And, st.lists(inner, min_size=1, max_size=3).map(tuple)),
        st.builds(Or, st.lists(inner, min_size=1, max_size=3).map(tuple)),
        st.builds(Not, inner),
    ),
    max_leaves=6,
)


@settings(max_examples=300)
@given(records, filters)
def test_vectorized_mask_equals_reference(recs: list[dict], flt: Filter) -> None:
    validate_filter(flt, SCHEMA)
    cols = AttributeColumns(SCHEMA, capacity=4)
    for i, r in enumerate(recs):
        if i >= cols._obj["cat"].shape[0]:
            cols.grow(cols._obj["cat"].shape[0] * 2)
        cols.set_row(i, r)
    got = cols.mask(flt, len(recs))
    want = np.array([matches(flt, r) for r in recs])
    assert got.tolist() == want.tolist()


@given(filters)
def test_filter_proto_round_trip(flt: Filter) -> None:
    assert filter_from_pb(filter_to_pb(flt)) == flt


def test_missing_attribute_rule() -> None:
    assert not matches(Eq("cat", "a"), {})
    assert matches(Not(Eq("cat", "a")), {})
    assert not matches(Range("x", gte=0), {"cat": "a"})


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        (Eq("colour", "red"), "does not have"),
        (Eq("cat", 3), "expected a string"),
        (Eq("n", 1.5), "expected an int"),
        (Range("cat", gte=1), "int or float attribute"),
        (Range("x"), "at least one bound"),
        (In("cat", ()), "at least one value"),
        (And((Eq("cat", "a"), Eq("nope", 1))), "'nope'"),
    ],
)
def test_invalid_filters_say_what_was_expected(flt: Filter, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_filter(flt, SCHEMA)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tags", 3),  # a number where a string list is declared: no iteration over it
        ("tags", 1.5),
        ("tags", "a"),
        ("tags", ("a", 2)),
        ("cat", ("a",)),
        ("n", "1"),
    ],
)
def test_attributes_of_the_wrong_type_say_what_was_expected(name: str, value: AttrValue) -> None:
    with pytest.raises(InvalidArgument, match=f"attribute {name!r} is .*expected"):
        validate_attributes({name: value}, SCHEMA, "records[0]")


_BIG = 2**53
big_ints = (
    st.integers(-(2**63), 2**63 - 1)
    | st.integers(_BIG - 4, _BIG + 4)
    | st.integers(-_BIG - 4, -_BIG + 4)
)
big_bounds = st.none() | big_ints.map(float) | st.floats(-1e19, 1e19, allow_nan=False)


@settings(max_examples=300)
@given(
    st.lists(big_ints, min_size=1, max_size=20),
    st.builds(Range, st.just("n"), big_bounds, big_bounds, big_bounds, big_bounds),
)
def test_int64_ranges_compare_exactly_past_float64_precision(values: list[int], flt: Range) -> None:
    """Range bounds travel as doubles; an int64 column must compare with them
    exactly, as `matches` (Python's int/float comparison) does — numpy would
    round both to float64 and, past 2**53, answer differently."""
    cols = AttributeColumns(SCHEMA, capacity=len(values))
    for i, v in enumerate(values):
        cols.set_row(i, {"n": v})
    got = cols.mask(flt, len(values))
    want = [matches(flt, {"n": v}) for v in values]
    assert got.tolist() == want


def test_an_int64_just_past_2_to_the_53_is_greater_than_2_to_the_53() -> None:
    cols = AttributeColumns(SCHEMA, capacity=2)
    cols.set_row(0, {"n": _BIG + 1})
    cols.set_row(1, {"n": _BIG})
    assert cols.mask(Range("n", gt=float(_BIG)), 2).tolist() == [True, False]
    assert cols.mask(Range("n", lt=float(_BIG)), 2).tolist() == [False, False]


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**20])
def test_an_int_value_past_int64_is_refused_before_protobuf(value: int) -> None:
    # protobuf refuses it with a ValueError: a traceback from the SDK or CLI.
    with pytest.raises(InvalidArgument, match="expected an int within int64"):
        filter_to_pb(Eq("n", value))
    with pytest.raises(InvalidArgument, match="expected an int within int64"):
        filter_to_pb(In("n", (1, value)))


def test_int64_extremes_travel() -> None:
    flt = In("n", (-(2**63), 2**63 - 1))
    assert filter_from_pb(filter_to_pb(flt)) == flt


@pytest.mark.parametrize("bound", [10**400, -(10**309), True, "20"])
def test_a_range_bound_that_is_no_double_is_refused_before_protobuf(bound: object) -> None:
    with pytest.raises(InvalidArgument, match="expected a number within a double's range"):
        filter_to_pb(Range("n", gte=bound))  # type: ignore[arg-type]  # what callers may pass
    assert filter_from_pb(filter_to_pb(Range("n", gte=10**300))) == Range("n", gte=1e300)
