"""Packed hits (`core.hits_wire`), plain data: any hits round-trip; the
coordinator's packed answer carries exactly the hits of its per-hit answer;
the audit trail records the same ids for either form; the SDK reads an
answer without packed hits (an older coordinator) the same way; malformed
packed hits are refused naming what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.search_results import hit_columns
from coordinator.audit_records import Hasher, _search
from coordinator.convert import search_to_pb
from coordinator.merge import Hit
from coordinator.model import Diagnostics, SearchResult
from core.domain import EntityKey, VersionRef
from core.errors import InvalidArgument
from core.hits_wire import (
    HitColumns,
    fill_packed_hits,
    from_string_table,
    join_utf8,
    packed_hits_from_pb,
    split_utf8,
    string_table,
)
from protos.vecshard.v1 import retrieval_pb2 as pb
from registry.model import IndexVersion

names = st.text(min_size=0, max_size=6)  # empty, ASCII and not
keys = st.builds(EntityKey, st.sampled_from(["t", "tenant-2", "é"]), names, names)
scores = st.floats(width=32, allow_nan=False)
hit_lists = st.lists(
    st.tuples(scores, keys, st.sampled_from(["shard-0", "shard-1", "s2"])), max_size=40
)


def packed(hits: list[tuple[float, EntityKey, str]]) -> pb.PackedHits:
    msg = pb.PackedHits()
    fill_packed_hits(msg, [h[0] for h in hits], [h[1] for h in hits], [h[2] for h in hits])
    return pb.PackedHits.FromString(msg.SerializeToString())  # through the wire


@settings(max_examples=200, deadline=None)
@given(hit_lists)
def test_any_hits_round_trip(hits: list[tuple[float, EntityKey, str]]) -> None:
    msg = packed(hits)
    got = packed_hits_from_pb(msg)
    assert len(got) == len(hits)
    assert got.scores.tobytes() == np.array([h[0] for h in hits], "<f4").tobytes()
    assert got.keys == [h[1] for h in hits]
    assert got.shard_ids == [h[2] for h in hits]
    # A table of one value carries no codes: every hit has it.
    for table, codes in (
        (msg.tenant_ids, msg.tenant_codes),
        (msg.entity_types, msg.type_codes),
        (msg.shard_ids, msg.shard_codes),
    ):
        assert list(table) == sorted(set(table))
        assert (len(table) <= 1) == (codes == b"")


@given(st.lists(names, max_size=20))
def test_strings_and_tables_round_trip(values: list[str]) -> None:
    blob, ends = join_utf8(values)
    assert split_utf8(blob, np.frombuffer(ends, "<u4").tolist()) == values
    table, codes = string_table(values)
    assert from_string_table(table, codes, len(values), "x") == values


def result(hits: list[Hit]) -> SearchResult:
    ix = IndexVersion("ix", "v1", VersionRef("f", "v1"))
    return SearchResult(hits, "r", "b", ix, "cosine", Diagnostics(0.1, 0.2, 0.3, 2, 40))


@settings(max_examples=100, deadline=None)
@given(hit_lists)
def test_the_packed_answer_has_the_hits_of_the_per_hit_answer(
    hits: list[tuple[float, EntityKey, str]],
) -> None:
    r = result([Hit(s, k, sid, 0) for s, k, sid in hits])
    per_hit, arrays = search_to_pb(r), search_to_pb(r, packed=True)
    assert not arrays.hits and arrays.HasField("packed_hits")
    assert len(per_hit.hits) == len(hits)
    # The SDK reads both forms alike (an older coordinator sends the per-hit one).
    a, b = hit_columns(arrays), hit_columns(per_hit)
    assert a.scores.tobytes() == b.scores.tobytes()
    assert (
        (a.keys, a.shard_ids)
        == (b.keys, b.shard_ids)
        == ([h[1] for h in hits], [h[2] for h in hits])
    )
    # Everything else is the same answer.
    arrays.ClearField("packed_hits")
    per_hit.ClearField("hits")
    assert arrays == per_hit
    # The audit trail hashes the same ids from either form.
    h = Hasher(b"salt")
    req = pb.SearchRequest(route="r", k=10)
    assert _search(h, req, search_to_pb(r, packed=True)) == _search(h, req, search_to_pb(r))


def test_no_hits_is_a_present_empty_packed_answer() -> None:
    resp = search_to_pb(result([]), packed=True)
    assert resp.HasField("packed_hits") and len(packed_hits_from_pb(resp.packed_hits)) == 0


def test_malformed_packed_hits_are_refused_naming_the_field() -> None:
    good = packed(
        [(1.0, EntityKey("t", "item", "a"), "s0"), (0.5, EntityKey("t", "user", "bb"), "s1")]
    )
    cases = {
        "4 bytes per hit": {"scores": b"\x00" * 7},
        "2 scores but 1 id ends": {"id_ends": np.array([1], "<u4").tobytes()},
        "do not cut": {"id_ends": np.array([1, 9], "<u4").tobytes()},
        "not UTF-8": {"entity_ids": b"a\xff\xfe", "id_ends": np.array([1, 3], "<u4").tobytes()},
        "cut the 2 bytes": {"scores": b"", "id_ends": b"", "entity_ids": b"ab"},
        "bytes of entity type codes": {"type_codes": b"\x00\x00"},
        "past its table": {"shard_codes": np.array([0, 5], "<u2").tobytes()},
    }
    for match, fields in cases.items():
        bad = pb.PackedHits()
        bad.CopyFrom(good)
        for name, value in fields.items():
            setattr(bad, name, value)
        with pytest.raises(InvalidArgument, match=match):
            packed_hits_from_pb(bad)
    no_codes = pb.PackedHits()
    no_codes.CopyFrom(good)
    no_codes.ClearField("type_codes")
    with pytest.raises(InvalidArgument, match="entity type table has 2 entries, no codes"):
        packed_hits_from_pb(no_codes)


def test_hit_columns_keys_pair_the_columns() -> None:
    cols = HitColumns(np.zeros(2, np.float32), ["a", "b"], ["t", "u"], ["item", "user"], ["s", "s"])
    assert cols.keys == [EntityKey("t", "item", "a"), EntityKey("u", "user", "b")]
