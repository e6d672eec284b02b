"""The SDK's columns from user arrays (client.column_writes, and
client.feature_calls for features): attribute types inferred per column,
None for rows without the attribute, and the checks that fail before
anything is sent."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest

from client.column_writes import attribute_column, record_columns
from client.feature_calls import to_column
from core.domain import AttrType, EntityKey
from core.errors import InvalidArgument
from core.feature_columns import BOOL, FLOAT64, FLOAT_LIST, INT64, STRING, from_values, same


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


def test_entities_become_columns_in_request_order_whatever_their_form() -> None:
    """Pairs, EntityKeys, a mix, a generator or a mapping give the same types
    and ids in request order; keys naming another tenant ask for it; keys
    naming two tenants are refused before anything is sent."""
    from client.retrieval_client import RetrievalClient
    from core.column_wire import key_columns_from_pb, key_columns_to_pb

    c = RetrievalClient("127.0.0.1:1", purpose="p")
    pairs = [("user", "u1"), ("item", "a"), ("item", "é"), ("user", "u2")]
    want = (["user", "item", "item", "user"], ["u1", "a", "é", "u2"])
    keys = [EntityKey("", t, i) for t, i in pairs]
    mixed: list[EntityKey | tuple[str, str]] = [pairs[0], keys[1], pairs[2], keys[3]]
    forms: list[Iterable[EntityKey | tuple[str, str]]] = [
        pairs,
        keys,
        mixed,
        iter(pairs),
        tuple(pairs),
    ]
    for form in forms:
        types, ids, access = c._entities(form)
        assert (types, ids) == want and access.tenant_id == ""
    types, ids, _ = c._entities({"user": ["u1", "u2"], "item": ["a"]})
    assert (types, ids) == (["user", "user", "item"], ["u1", "u2", "a"])
    _, _, access = c._entities([EntityKey("acme", "item", "a"), ("item", "b")])
    assert access.tenant_id == "acme" and access.purpose == "p"
    with pytest.raises(InvalidArgument, match="entities of tenants"):
        c._entities([EntityKey("acme", "item", "a"), EntityKey("globex", "item", "b")])
    assert c._entities([]) == ([], [], c.access)
    wire = key_columns_to_pb(*want)
    assert list(wire.entity_types) == ["user", "item"] and wire.type_index == bytes([0, 1, 1, 0])
    distinct, index, back_ids = key_columns_from_pb(wire, "test")
    assert [distinct[i] for i in index.tolist()] == want[0] and back_ids == want[1]
    # A type listed twice (another client's encoder) would number its rows in
    # two halves: refused (found in review: wrong rows, then INTERNAL).
    twice = key_columns_to_pb(*want)
    twice.entity_types.append("user")
    twice.type_index = bytes([0, 1, 1, 2])
    with pytest.raises(InvalidArgument, match="entity type 'user' is listed twice"):
        key_columns_from_pb(twice, "test")
    with pytest.raises(InvalidArgument, match="257 entity types"):
        key_columns_to_pb([f"t{i}" for i in range(257)], [str(i) for i in range(257)])
    c.close()


def test_integer_columns_are_written_as_given_or_refused() -> None:
    """Versions, created_at, int attributes and int features went through
    numpy's unchecked casts: a float version column with a gap (NaN) was
    written as -2**63, 12.9 as 12, a uint64 past 2**63 as a negative number."""
    one = np.ones((2, 2))
    for column in ("source_versions", "created_at"):
        with pytest.raises(InvalidArgument, match=rf"{column}\[0\]: nan \(float64\)"):
            record_columns(["a", "b"], one, **odd({column: np.array([np.nan, 1.7e15])}))
        with pytest.raises(InvalidArgument, match=rf"{column}\[1\]: float 12.9"):
            record_columns(["a", "b"], one, **odd({column: [3, 12.9]}))
    # A float column of whole numbers (pandas, once a gap was filled) is taken.
    cols = record_columns(["a", "b"], one, source_versions=np.array([5.0, 1.7e15]))
    assert cols.source_versions.tolist() == [5, 1_700_000_000_000_000]

    big = np.array([2**63 + 5, 1], dtype=np.uint64)
    with pytest.raises(InvalidArgument, match=r"attribute 'h'\[0\]: 9223372036854775813"):
        attribute_column("h", big, 2)
    with pytest.raises(InvalidArgument, match=r"attribute 'h'\[2\]: int 9223372036854775808"):
        attribute_column("h", [1, None, 2**63], 3)
    col = attribute_column("h", [2**63 - 1, None, -(2**63)], 3)
    assert col.tolist() == [2**63 - 1, None, -(2**63)]
    assert attribute_column("h", big[1:], 1).tolist() == [1]

    with pytest.raises(InvalidArgument, match=r"feature 'n'\[0\]: 18446744073709551615"):
        to_column("n", np.array([2**64 - 1], dtype=np.uint64))
    with pytest.raises(InvalidArgument, match=r"feature 'n'\[1\]: int 9223372036854775808"):
        to_column("n", [1, 2**63])
    # A masked (null) value is not written, so it is not checked.
    masked = np.ma.masked_array(np.array([2**64 - 1, 7], dtype=np.uint64), mask=[True, False])
    feature = to_column("n", masked)
    assert feature.valid.tolist() == [False, True] and feature.values.tolist() == [0, 7]


def test_feature_timestamps_are_integers_or_refused_before_sending() -> None:
    from client.retrieval_client import RetrievalClient

    c = RetrievalClient("127.0.0.1:1", purpose="p")  # never reached
    with pytest.raises(InvalidArgument, match=r"feature_timestamp_us\[1\]: nan"):
        c.put_feature_columns("g", "v1", ["a", "b"], np.array([1.0, np.nan]), {"n": [1, 2]})
    with pytest.raises(InvalidArgument, match=r"generated_at_us\[0\]: float 1.5"):
        c.put_feature_columns("g", "v1", ["a"], [1], {"n": [1]}, generated_at_us=[1.5])
    with pytest.raises(InvalidArgument, match=r"feature_timestamp_us of rows\[0\]: float 2.5"):
        c.put_features("g", "v1", odd([(("user", "a"), 2.5, {"n": 1})]))
    with pytest.raises(InvalidArgument, match=r"generated_at\[0\]: str '3'"):
        c.put_features("g", "v1", [(("user", "a"), 2, {"n": 1})], generated_at=odd(["3"]))
    with pytest.raises(InvalidArgument, match=r"generated_at_us: float 0.5"):
        c.put_features("g", "v1", [(("user", "a"), 2, {"n": 1})], generated_at_us=odd(0.5))


def odd(value: object) -> Any:
    """An argument of a type its parameter does not declare."""
    return value


def test_one_generated_at_for_a_whole_batch_of_feature_columns() -> None:
    """A scalar generated_at_us (the batch's run time) was a TypeError from
    len(); it now stands for every row."""
    from client.retrieval_client import RetrievalClient
    from core.column_wire import row_columns_from_pb
    from protos.vecshard.v1 import retrieval_pb2 as rpb

    c = RetrievalClient("127.0.0.1:1", purpose="p")
    sent: list[Any] = []

    def rpc(method: str, request: Any, timeout: float | None, *rest: Any) -> Any:
        sent.extend(request)  # what would go on the wire; nothing is listening
        return rpb.PutFeaturesResponse(written=2)

    c._rpc = rpc  # type: ignore[method-assign,assignment]  # the transport, stood in
    assert c.put_feature_columns(
        "g", "v1", ["a", "b"], [5, 6], {"n": [1, 2]}, generated_at_us=9
    ) == (2, 0)
    (req,) = sent
    assert row_columns_from_pb(req.columns, "test")[4].tolist() == [9, 9]
    c.close()


@pytest.mark.parametrize("items", [["1", "2"], [True, False], [1.0, None]])
def test_a_float_list_holds_numbers_only_as_the_server_says(items: list[object]) -> None:
    """float() per item wrote "1" and True as 1.0 (the server's rule refuses
    both), and a None item raised a bare TypeError (found in review)."""
    with pytest.raises(InvalidArgument, match=r"feature 'emb', row 1, item \d: .* not a number"):
        to_column("emb", [[0.5], items])


def test_numpy_scalars_and_string_arrays_are_feature_values() -> None:
    """Refused as "unknown types" though the docstring takes numpy arrays."""
    cases: list[tuple[Any, str, list[Any]]] = [
        ([np.int64(3), None], INT64, [3, None]),
        ([np.float64(0.5), np.float32(1.5)], FLOAT64, [0.5, 1.5]),
        ([np.bool_(True), False], BOOL, [True, False]),
        (np.array(["a", "bc"]), STRING, ["a", "bc"]),
        ([np.array([1.0, 2.0]), None], FLOAT_LIST, [(1.0, 2.0), None]),
    ]
    for values, dtype, expected in cases:
        col = to_column("f", values)
        assert col.dtype == dtype and same(col, from_values(dtype, expected)), values


def test_feature_column_requests_are_split_by_bytes_as_well_as_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """By rows alone, 10,000 rows of a 1,024-item list made one 82 MB
    message, past every channel's limit (found in review). Here the budget
    is made small: rows go in order, each message within it, and a row
    larger than the budget goes alone."""
    from client.retrieval_client import RetrievalClient
    from core.column_wire import row_columns_from_pb
    from protos.vecshard.v1 import retrieval_pb2 as rpb

    budget = 64 << 10
    monkeypatch.setattr("client.feature_calls.MAX_REQUEST_BYTES", budget)
    c = RetrievalClient("127.0.0.1:1", purpose="p")
    sent: list[Any] = []

    def rpc(method: str, request: Any, timeout: float | None, *rest: Any) -> Any:
        sent.extend(request)
        return rpb.PutFeaturesResponse(written=0)

    c._rpc = rpc  # type: ignore[method-assign,assignment]  # the transport, stood in
    lists: list[Any] = [np.full(64, float(i)) for i in range(500)]
    lists[250] = np.zeros(20_000)  # 160 KB: more than the whole budget
    ids = [f"u{i}" for i in range(500)]
    c.put_feature_columns("g", "v1", ids, np.arange(500) + 1, {"taste": lists}, batch_size=300)
    got = [i for r in sent for i in row_columns_from_pb(r.columns, "r")[2]]
    assert got == ids and len(sent) > 5
    alone = [r for r in sent if r.columns.entity_ids == ["u250"]]
    assert len(alone) == 1
    assert all(r.ByteSize() <= budget * 1.1 for r in sent if r not in alone)
