"""The packed search answer a shard sends (`shard_server.convert.
packed_search_response`) and the coordinator reads (`coordinator.convert.
shard_packed_answers`): hits whose keys are rows of a segment's key table
are packed from its arrays, with no key object per hit, into exactly the
bytes a list of keys packs into — and read back as those keys."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.convert import shard_packed_answers
from coordinator.errors import QueriesRefused
from coordinator.model import ShardQuery
from core.domain import EntityKey, VersionRef
from core.errors import InvalidArgument, PermissionDenied
from shard_server.convert import packed_search_response
from shard_server.key_table import KeyRows, KeyTable
from shard_server.model import SearchResult

ids = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6)
types = st.sampled_from(["item", "user", "ad"])


def _result(keys: list[EntityKey] | KeyRows, rng: np.random.Generator) -> SearchResult:
    n = len(keys)
    return SearchResult(
        np.sort(rng.random(n).astype(np.float32))[::-1],
        keys,
        rng.integers(0, 16, n).astype(np.int64),
        rng.integers(1, 99, n).astype(np.int64),
        candidates=n + 3,
        sequence=7,
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(types, ids), min_size=1, max_size=30, unique=True),
    st.lists(st.lists(st.integers(0, 29), max_size=8), max_size=6),
    st.integers(0, 2**32 - 1),
)
def test_hits_of_a_key_table_pack_as_their_keys_would(
    table_keys: list[tuple[str, str]], picks: list[list[int]], seed: int
) -> None:
    table = KeyTable.of([EntityKey("t", e, i) for e, i in table_keys])
    per_query = [np.array([p % len(table) for p in ps], dtype=np.int64) for ps in picks]
    rows = [KeyRows(table, r) for r in per_query]
    as_lists = [[table[int(x)] for x in r] for r in per_query]
    assert rows == as_lists  # the lazy keys are the keys
    lazy = [_result(r, np.random.default_rng(seed)) for r in rows]
    plain = [_result(k, np.random.default_rng(seed)) for k in as_lists]
    packed = packed_search_response("s0", lazy)
    assert packed.SerializeToString(deterministic=True) == packed_search_response(
        "s0", plain
    ).SerializeToString(deterministic=True)
    queries = [ShardQuery(np.zeros(2, np.float32), 10, "t") for _ in picks]
    answers = shard_packed_answers(packed, "s0", queries)
    assert [list(a.keys) for a in answers] == as_lists
    assert [a.scores.tolist() for a in answers] == [r.scores.tolist() for r in plain]


def test_hits_of_two_tables_are_packed_key_by_key() -> None:
    a = KeyTable.of([EntityKey("t", "item", "x"), EntityKey("t", "user", "é")])
    b = KeyTable.of([EntityKey("t", "ad", "y")])
    rng = np.random.default_rng(1)
    mixed = [
        _result(KeyRows(a, np.array([1, 0])), rng),
        _result(KeyRows(b, np.array([0])), rng),
        _result([EntityKey("t", "item", "z")], rng),
    ]
    packed = packed_search_response("s0", mixed)
    assert list(packed.entity_types) == ["ad", "item", "user"]
    queries = [ShardQuery(np.zeros(2, np.float32), 10, "t") for _ in mixed]
    got = [list(x.keys) for x in shard_packed_answers(packed, "s0", queries)]
    assert got == [[a[1], a[0]], [b[0]], [EntityKey("t", "item", "z")]]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.booleans(), min_size=2, max_size=8).filter(lambda r: any(r) and not all(r)),
    st.integers(0, 2**32 - 1),
)
def test_refused_queries_travel_by_position_and_the_others_keep_their_answers(
    refused_at: list[bool], seed: int
) -> None:
    """A shard that refuses some queries of a batch (its access checks)
    answers the others; the coordinator reads each query's own outcome."""
    rng = np.random.default_rng(seed)
    answered = [
        _result([EntityKey("t", "item", f"q{i}-{j}") for j in range(3)], rng)
        for i, refused in enumerate(refused_at)
        if not refused
    ]
    refused = {
        i: PermissionDenied(f"no grant for query {i}") for i, r in enumerate(refused_at) if r
    }
    packed = packed_search_response("s0", answered, refused)
    queries = [ShardQuery(np.zeros(2, np.float32), 10, "t") for _ in refused_at]
    with pytest.raises(QueriesRefused) as err:
        shard_packed_answers(packed, "s0", queries)
    assert set(err.value.refused) == set(refused)
    for i, exc in err.value.refused.items():
        assert exc.message == f"shard s0: no grant for query {i}"
    got = [a for i, a in enumerate(err.value.answers) if i not in refused]
    assert [list(a.keys) for a in got] == [list(r.keys) for r in answered]  # type: ignore[attr-defined]
    assert all(not len(err.value.answers[i].keys) for i in refused)  # type: ignore[attr-defined]


def test_a_refusal_of_an_answered_or_missing_query_is_malformed() -> None:
    rng = np.random.default_rng(2)
    queries = [ShardQuery(np.zeros(2, np.float32), 10, "t") for _ in range(2)]
    packed = packed_search_response(
        "s0", [_result([EntityKey("t", "item", "a")], rng)], {1: PermissionDenied("no")}
    )
    packed.refused[0].query = 0  # the answered one
    with pytest.raises(InvalidArgument, match="malformed"):
        shard_packed_answers(packed, "s0", queries)
    packed.refused[0].query = 5  # beyond the batch
    with pytest.raises(InvalidArgument, match="malformed"):
        shard_packed_answers(packed, "s0", queries)


def test_a_pin_at_zero_travels_and_an_older_peers_zero_is_no_limit() -> None:
    """A shard read 0 as "no limit", so a shard pinned before its first write
    was read unpinned on later pages; `pinned` says 0 is a pin. An older
    coordinator leaves it unset (its 0 still means no limit), an older
    shard ignores it (as before)."""
    from coordinator.convert import shard_packed_pb
    from shard_server.convert import packed_queries_from_pb

    v = np.ones(2, np.float32)
    queries = [ShardQuery(v, 1, "t"), ShardQuery(v, 1, "t", max_sequence=0)]
    queries.append(ShardQuery(v, 1, "t", max_sequence=7))
    req = shard_packed_pb(VersionRef("ix", "v1"), queries)
    assert [q.max_sequence for q in packed_queries_from_pb(req)] == [None, 0, 7]
    for q in req.queries:
        q.ClearField("pinned")  # what an older coordinator sends
    assert [q.max_sequence for q in packed_queries_from_pb(req)] == [None, None, 7]
