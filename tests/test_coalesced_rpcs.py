"""Cutting a coalesced lookup's answer back per caller
(`client.coalesced_rpcs.cut_answer`), on plain data: each part reads as
the answer to that caller's ids alone."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.coalesced_rpcs import cut_answer
from core.column_wire import embeddings_from_pb
from core.errors import InvalidArgument
from protos.vecshard.v1 import common_pb2 as cpb


def _columns(n: int, dim: int, vectors: bool, attributes: bool, seed: int) -> cpb.EmbeddingColumns:
    rng = np.random.default_rng(seed)
    versions = ["m1", "m2", "m3"]
    return cpb.EmbeddingColumns(
        status=rng.integers(0, 4, n, dtype=np.uint8).tobytes(),
        dimension=dim if vectors else 0,
        vectors=rng.normal(size=(n, dim)).astype("<f4").tobytes() if vectors else b"",
        source_version=rng.integers(0, 2**40, n, dtype="<i8").tobytes(),
        created_at_us=rng.integers(0, 2**40, n, dtype="<i8").tobytes(),
        norm=rng.random(n).astype("<f4").tobytes(),
        model_versions=versions,
        model_version_index=rng.integers(-1, len(versions), n, dtype="<i4").tobytes(),
        attributes_json=[f'{{"i": {i}}}' for i in range(n)] if attributes else [],
    )


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 7), min_size=1, max_size=6),
    dim=st.integers(1, 5),
    vectors=st.booleans(),
    attributes=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_each_part_is_the_answer_for_its_own_ids(
    counts: list[int], dim: int, vectors: bool, attributes: bool, seed: int
) -> None:
    whole_pb = _columns(sum(counts), dim, vectors, attributes, seed)
    whole = embeddings_from_pb(whole_pb, sum(counts), "whole")
    parts = cut_answer(whole_pb, counts)
    assert len(parts) == len(counts)
    start = 0
    for n, part in zip(counts, parts, strict=True):
        assert len(part) == n
        rows = slice(start, start + n)
        np.testing.assert_array_equal(part.status, whole.status[rows])
        np.testing.assert_array_equal(part.vectors, whole.vectors[rows])
        np.testing.assert_array_equal(part.source_version, whole.source_version[rows])
        np.testing.assert_array_equal(part.created_at, whole.created_at[rows])
        np.testing.assert_array_equal(part.norm, whole.norm[rows])
        # The version table is shared; each key's version is unchanged.
        assert [part.model_version(i) for i in range(n)] == [
            whole.model_version(i) for i in range(start, start + n)
        ]
        assert part.attributes_json == (
            whole.attributes_json[rows] if whole.attributes_json is not None else None
        )
        start += n


def test_an_answer_that_does_not_fit_the_ids_is_refused() -> None:
    whole = _columns(5, 3, True, True, 0)
    with pytest.raises(InvalidArgument, match="status: 5 bytes; expected 6 values"):
        cut_answer(whole, [3, 3])
    broken = cpb.EmbeddingColumns()
    broken.CopyFrom(whole)
    del broken.attributes_json[-1]
    with pytest.raises(InvalidArgument, match="4 attribute objects for 5 keys"):
        cut_answer(broken, [2, 3])
