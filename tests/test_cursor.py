"""Cursor encoding: round trip, binding to the query, clear errors."""

from __future__ import annotations

import base64
import json
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.cursor import Cursor, Pins, decode, encode, query_hash
from core.domain import EntityKey, VersionRef
from core.errors import InvalidArgument
from core.filters import Eq

text = st.text(min_size=0, max_size=12)


@given(
    score=st.floats(allow_nan=False, allow_infinity=False, width=32),
    key=st.builds(EntityKey, text, text, text),
    served=st.integers(0, 10**6),
    shards=st.dictionaries(
        text, st.tuples(st.lists(st.integers(0, 63)).map(tuple), st.integers(0, 2**62)), max_size=5
    ),
)
def test_round_trip(score: float, key: EntityKey, served: int, shards: dict) -> None:
    c = Cursor("r", "b", VersionRef("ix", "v1"), "h", served, score, key, shards)
    assert decode(encode(c)) == c


def test_small_cursors_are_plain_large_ones_deflated_and_both_decode() -> None:
    key = EntityKey("t", "item", "i-1")
    small = Cursor("r", "b", VersionRef("ix", "v1"), "h", 10, 0.5, key, {"s0": ((0, 1), 3)})
    many: Pins = {f"shard-{i}": (tuple(range(i * 8, i * 8 + 8)), 10**9 + i) for i in range(64)}
    large = Cursor("r", "b", VersionRef("ix", "v1"), "h", 10, 0.5, key, many)
    small_raw = base64.urlsafe_b64decode(encode(small) + "==")
    large_raw = base64.urlsafe_b64decode(encode(large) + "==")
    assert small_raw.startswith(b"{") and not large_raw.startswith(b"{")
    assert len(encode(large)) < len(json.dumps(many))  # deflate pays off here
    assert decode(encode(small)) == small and decode(encode(large)) == large
    # A cursor from a coordinator that deflated every cursor still continues.
    old = base64.urlsafe_b64encode(zlib.compress(small_raw)).decode().rstrip("=")
    assert decode(old) == small


def test_query_hash_binds_vector_k_tenant_and_filter() -> None:
    v = np.ones(4, np.float32)
    base = query_hash(v, 10, "t", None)
    assert base == query_hash(v.copy(), 10, "t", None)
    assert (
        len(
            {
                base,
                query_hash(v * 2, 10, "t", None),
                query_hash(v, 11, "t", None),
                query_hash(v, 10, "u", None),
                query_hash(v, 10, "t", Eq("a", "b")),
            }
        )
        == 5
    )


@pytest.mark.parametrize("bad", ["", "not-a-cursor", "eJwDAAAAAAE"])
def test_garbage_is_invalid_argument(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="next_cursor"):
        decode(bad)


def _raw(doc: object, deflate: bool = False) -> str:
    raw = json.dumps(doc).encode()
    return base64.urlsafe_b64encode(zlib.compress(raw) if deflate else raw).decode().rstrip("=")


GOOD = json.loads(
    base64.urlsafe_b64decode(
        encode(Cursor("r", "b", VersionRef("ix", "v1"), "h", 1, 0.5, EntityKey("t", "e", "i"), {}))
        + "=="
    )
)


@pytest.mark.parametrize(
    "bad",
    [
        _raw({**GOOD, "sh": []}),  # pins as a list
        _raw({**GOOD, "sh": {"s0": [[0, "x"], 1]}}),  # a bucket that is no number
        _raw({**GOOD, "mb": ["x"]}),
        _raw([GOOD], deflate=True),  # deflated, not an object
        _raw("text"),
    ],
)
def test_a_malformed_cursor_of_any_shape_is_invalid_argument(bad: str) -> None:
    """Shapes that passed the first checks raised AttributeError: INTERNAL
    instead of INVALID_ARGUMENT (found in review)."""
    with pytest.raises(InvalidArgument, match="next_cursor"):
        decode(bad)


def test_the_buckets_page_one_missed_travel_and_old_cursors_still_read() -> None:
    c = Cursor("r", "b", VersionRef("ix", "v1"), "h", 1, 0.5, EntityKey("t", "e", "i"), {}, (0, 3))
    assert decode(encode(c)) == c
    assert decode(_raw(GOOD)).missing == ()  # none missed (or a cursor from before)


def test_a_replica_answering_for_its_own_buckets_and_in_a_cover_is_pinned_to_both() -> None:
    from coordinator.cursor import next_cursor
    from coordinator.merge import Hit
    from coordinator.model import ShardTrace

    hits = [Hit(1.0, EntityKey("t", "item", "x"), "b", 0)]
    trace = [
        ShardTrace("b", (2, 3), None, "searched", 0, sequence=5),
        ShardTrace("a", (0, 1), None, "failed", 0),
        ShardTrace("b", (0,), None, "searched", 0, sequence=7),
        ShardTrace("c", (1,), None, "searched", 0, sequence=2),
    ]
    cur = decode(
        next_cursor("r", "b", VersionRef("ix", "v1"), "q", 0, hits, trace, None, 1, [0, 1])
    )
    assert cur.shards == {"b": ((0, 2, 3), 7), "c": ((1,), 2)}
    assert cur.missing == ()


def test_a_shard_skipped_by_bound_is_pinned_at_its_summarys_sequence() -> None:
    """It was pinned at 0 — "no limit" to a shard — until it first answered."""
    from coordinator.cursor import next_cursor
    from coordinator.merge import Hit
    from coordinator.model import ShardTrace

    hits = [Hit(1.0, EntityKey("t", "item", "x"), "a", 0)]
    trace = [
        ShardTrace("a", (0,), 9.0, "searched", 0, sequence=5),
        ShardTrace("b", (1,), 0.5, "skipped_by_bound", 1, sequence=3),
        ShardTrace("c", (2,), None, "searched", 1, sequence=0),  # no write yet
    ]
    cur = decode(next_cursor("r", "b", VersionRef("ix", "v1"), "q", 0, hits, trace, None, 1))
    assert cur.shards == {"a": ((0,), 5), "b": ((1,), 3), "c": ((2,), 0)}


def test_a_zero_pin_of_an_older_cursor_is_not_pinned_yet() -> None:
    """Before pins of 0 were pins, a cursor wrote 0 for a shard skipped on
    page 1 (pinned at its first answer): read without the `pz` mark, 0 is
    None, and a cursor still holding one is written without the mark."""
    old = dict(GOOD, sh={"a": [[0], 0], "b": [[1], 4]})
    del old["pz"]
    cur = decode(_raw(old))
    assert cur.shards == {"a": ((0,), None), "b": ((1,), 4)}
    assert decode(encode(cur)) == cur
    assert decode(_raw(dict(old, pz=1))).shards == {"a": ((0,), 0), "b": ((1,), 4)}
