"""Records as columns (core.record_columns, core.columns_wire) and the
array forms of per-record rules: input limits (core.limits) and hash
placement (registry.placement) give the verdict and the bucket the
per-record functions give, row by row."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.columns_wire import record_columns_from_pb, record_columns_to_pb
from core.domain import AttrType, AttrValue, EntityKey
from core.errors import InvalidArgument
from core.limits import Limits
from core.record_columns import AttributeColumn, PackedStrings, RecordColumns, StringLists
from protos.vecshard.v1 import common_pb2 as pb
from registry.placement import tenant_bucket, tenant_buckets_of

TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=8)


@given(st.lists(TEXT, max_size=30), st.data())
def test_packed_strings_round_trip_and_take(strings: list[str], data: st.DataObject) -> None:
    packed = PackedStrings.of(strings)
    assert packed.tolist() == strings
    assert [packed[i] for i in range(len(strings))] == strings
    assert packed.raw_list() == [s.encode() for s in strings]
    rows = data.draw(st.lists(st.integers(0, max(len(strings) - 1, 0)), max_size=40))
    if strings:
        assert packed.take(np.array(rows, dtype=np.int64)).tolist() == [strings[r] for r in rows]
    again = PackedStrings.from_buffers(packed.data, packed.offsets, len(strings), "ids")
    assert again.tolist() == strings


@pytest.mark.parametrize(
    ("data", "offsets", "message"),
    [
        (b"abc", [0, 2], "3 offsets|offsets"),
        (b"abc", [0, 2, 1, 3], "rise"),
        (b"abc", [1, 2, 3, 3], "rise"),
        (b"ab\xff", [0, 1, 2, 3], "UTF-8"),
        ("é".encode() + b"a", [0, 1, 3, 3], "splits a UTF-8 character"),
    ],
)
def test_packed_strings_from_the_wire_are_checked(
    data: bytes, offsets: list[int], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        PackedStrings.from_buffers(data, np.array(offsets, dtype=np.int64), 3, "ids")


# Few, short characters (one needing a JSON escape, one two UTF-8 bytes) so
# that sizes land on the small limits below, and on either side of them.
SHORT = st.text(alphabet='ab"é', max_size=8)
VALUES: dict[AttrType, st.SearchStrategy[AttrValue]] = {
    AttrType.INT: st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-100, 100)),
    AttrType.FLOAT: st.floats(allow_nan=False, allow_infinity=False),
    AttrType.STRING: SHORT,
    AttrType.STRING_LIST: st.lists(SHORT, max_size=4).map(tuple),
}


@st.composite
def batches(
    draw: st.DrawFn, limits: bool = False
) -> tuple[RecordColumns, list[dict[str, AttrValue]]]:
    n = draw(st.integers(0, 12))
    ids = draw(st.lists(SHORT, min_size=n, max_size=n))
    dim = draw(st.integers(1, 5))
    vectors = np.asarray(
        draw(st.lists(st.floats(-5, 5, width=32), min_size=n * dim, max_size=n * dim)),
        dtype=np.float32,
    ).reshape(n, dim)
    names = draw(st.lists(st.sampled_from(["a", "bb", "ccc", "é"]), unique=True, max_size=4))
    kinds = {name: draw(st.sampled_from(list(AttrType))) for name in names}
    rows: list[dict[str, AttrValue]] = [{} for _ in range(n)]
    for name, kind in kinds.items():
        for row in rows:
            if draw(st.booleans()):
                row[name] = draw(VALUES[kind])
    columns = {
        name: AttributeColumn.of(kind, [row.get(name) for row in rows])
        for name, kind in kinds.items()
    }
    sv = np.asarray(draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n)), np.int64)
    batch = RecordColumns(
        PackedStrings.of(ids), vectors, sv, sv[::-1].copy(), columns, "m1", "item"
    )
    return batch, rows


@given(batches())
def test_record_columns_round_trip_through_protobuf(
    case: tuple[RecordColumns, list[dict[str, AttrValue]]],
) -> None:
    batch, rows = case
    wire = pb.RecordColumns.FromString(record_columns_to_pb(batch).SerializeToString())
    back = record_columns_from_pb(wire)
    assert back.entity_ids.tolist() == batch.entity_ids.tolist()
    assert back.vectors.tobytes() == batch.vectors.tobytes()
    assert back.source_versions.tolist() == batch.source_versions.tolist()
    assert back.created_at.tolist() == batch.created_at.tolist()
    assert (back.model_version, back.entity_type) == ("m1", "item")
    assert [back.attributes_of(i) for i in range(len(back))] == rows
    assert [
        batch.take(np.arange(len(batch))[::-1]).attributes_of(i) for i in range(len(batch))
    ] == rows[::-1]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: setattr(m, "vectors", m.vectors[:-4]), r"records.vectors: \d+ bytes, expected"),
        (lambda m: setattr(m, "dimension", 0), "dimension: 0"),
        (lambda m: setattr(m, "source_versions", b"\0" * 4), "source_versions: 4 bytes"),
        (lambda m: m.attributes.add(name="x"), "no values"),
        (lambda m: m.attributes.add(name="price", int_values=b"\0" * 16), "second column"),
        (
            lambda m: m.attributes[0].CopyFrom(
                pb.AttributeColumn(name="price", int_values=b"\0" * 16, present=b"\x02\x01")
            ),
            "0 or 1",
        ),
    ],
)
def test_malformed_columns_are_invalid_arguments(mutate: object, message: str) -> None:
    batch = RecordColumns(
        PackedStrings.of(["a", "b"]),
        np.ones((2, 3), np.float32),
        np.zeros(2, np.int64),
        np.zeros(2, np.int64),
        {"price": AttributeColumn.of(AttrType.INT, [1, None])},
    )
    m = record_columns_to_pb(batch)
    mutate(m)  # type: ignore[operator]
    with pytest.raises(InvalidArgument, match=message):
        record_columns_from_pb(m)


SMALL = Limits(
    max_entity_id_bytes=4,
    max_attributes_per_record=2,
    max_attribute_name_bytes=2,
    max_attribute_value_bytes=6,
    max_attribute_list_items=2,
    max_attributes_bytes=24,
)


def _verdict(check: Callable[[], object]) -> bool:
    try:
        check()
    except InvalidArgument:
        return False
    return True


@settings(max_examples=600)
@given(batches())
def test_limits_over_columns_agree_with_per_record_checks(
    case: tuple[RecordColumns, list[dict[str, AttrValue]]],
) -> None:
    batch, rows = case
    ids = batch.entity_ids.tolist()
    where = lambda i: f"records[{i}]"  # noqa: E731
    failing = []
    for i, (eid, row) in enumerate(zip(ids, rows, strict=True)):

        def per_record_check(eid: str = eid, row: dict[str, AttrValue] = row, i: int = i) -> None:
            SMALL.check_key(EntityKey("t", "item", eid), where(i))
            SMALL.check_attributes(row, where(i))

        per_record = _verdict(per_record_check)
        one = batch.take(np.array([i]))

        def columns_check(one: RecordColumns = one) -> None:
            SMALL.check_key_columns("t", "item", one.entity_ids, where)
            SMALL.check_attribute_columns(one.attributes, 1, where)

        columns = _verdict(columns_check)
        assert columns == per_record, (eid, row)
        if not per_record:
            failing.append(i)
    try:
        SMALL.check_key_columns("t", "item", batch.entity_ids, where)
        SMALL.check_attribute_columns(batch.attributes, len(batch), where)
    except InvalidArgument as exc:
        named = re.match(r"records\[(\d+)\]", exc.message)
        assert named is not None and int(named.group(1)) in failing, (exc.message, failing)
    else:
        assert not failing


@pytest.mark.parametrize(
    ("row", "ok"),
    [
        ({"a": "abcdef"}, True),
        ({"a": "abcdefg"}, False),  # max_attribute_value_bytes
        ({"a": ("a", "b")}, True),
        ({"a": ("a", "b", "c")}, False),  # max_attribute_list_items
        ({"a": ("abc", "def")}, True),
        ({"a": ("abc", "defg")}, False),  # max_attribute_value_bytes, over the items
        ({"a": 1, "bb": 2}, True),
        ({"a": 1, "bb": 2, "c": 3}, False),  # max_attributes_per_record
        ({"a": ("a", "b"), "bb": 123}, True),  # 24 bytes encoded
        ({"a": ("a", "b"), "bb": 1234}, False),
        ({"a": "abcdef", "bb": 1234}, True),  # 24 bytes encoded
        ({"a": "abcdef", "bb": 12345}, False),  # 25: max_attributes_bytes
        ({"a": 1.5}, True),
        ({"a": float("nan")}, False),
        ({"ccc": 1}, False),  # max_attribute_name_bytes
    ],
)
def test_limits_over_columns_at_each_boundary(row: dict[str, AttrValue], ok: bool) -> None:
    kinds = {
        str: AttrType.STRING,
        tuple: AttrType.STRING_LIST,
        int: AttrType.INT,
        float: AttrType.FLOAT,
    }
    columns = {name: AttributeColumn.of(kinds[type(v)], [None, v]) for name, v in row.items()}
    where = lambda i: f"records[{i}]"  # noqa: E731
    assert _verdict(lambda: SMALL.check_attributes(row, "records[1]")) is ok
    assert _verdict(lambda: SMALL.check_attribute_columns(columns, 2, where)) is ok


def test_string_lists_take_keeps_each_rows_items() -> None:
    lists = StringLists.of([("a", "b"), (), ("c",)])
    assert lists.take(np.array([2, 0, 1])).tolist() == [("c",), ("a", "b"), ()]


@given(
    st.text(max_size=5),
    st.lists(TEXT, max_size=50),
    st.integers(1, 2**40),
    st.lists(st.integers(-3, 40), max_size=6),
)
def test_vectorized_hash_buckets_equal_the_per_key_function(
    tenant: str, ids: list[str], num_buckets: int, own: list[int]
) -> None:
    expected = [tenant_bucket(tenant, i, num_buckets, own) for i in ids]
    got = tenant_buckets_of(tenant, [i.encode() for i in ids], num_buckets, own)
    assert got.tolist() == expected
