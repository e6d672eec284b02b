"""A lookup's per-key rules, plain data, against their reference forms:
`reconcile` of answers that each cover their own keys (its scatter path)
equals merging them one by one, whatever their statuses, versions and
order; `own_keys` (its fast path for ordinary keys) owns and refuses
exactly as `own_key` + `Limits.check_key` per key, with the same errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.access import own_key, own_keys
from coordinator.model import Access
from core.domain import EntityKey, Metric
from core.embedding_columns import (
    UNAVAILABLE,
    EmbeddingColumns,
    blank,
    merge,
    reconcile,
    unanswered,
)
from core.errors import VecshardError
from core.limits import Limits
from registry.model import EmbeddingFamily

DIM = 3


def answer(n: int, rng: np.random.Generator, width: int) -> EmbeddingColumns:
    versions = [f"m{v}" for v in rng.permutation(4)[: int(rng.integers(0, 3))]]
    index = (rng.integers(-1, len(versions), n) if versions else np.full(n, -1)).astype(np.int32)
    return EmbeddingColumns(
        rng.integers(0, 5, n).astype(np.uint8),  # 0 included: a status nobody sends
        rng.normal(size=(n, width)).astype(np.float32),
        rng.integers(0, 9, n).astype(np.int64),
        rng.integers(0, 9, n).astype(np.int64),
        rng.random(n).astype(np.float32),
        versions,
        index,
    )


def by_merging(
    parts: list[tuple[np.ndarray, EmbeddingColumns]], keys: int, width: int = DIM
) -> EmbeddingColumns:
    out = unanswered(keys, width, status=0)
    for positions, a in parts:
        out = merge(out, positions, a)
    return blank(out, out.status == 0, UNAVAILABLE)


def same(a: EmbeddingColumns, b: EmbeddingColumns) -> bool:
    return (
        a.status.tobytes() == b.status.tobytes()
        and a.vectors.tobytes() == b.vectors.tobytes()
        and a.source_version.tolist() == b.source_version.tolist()
        and a.created_at.tolist() == b.created_at.tolist()
        and a.norm.tobytes() == b.norm.tobytes()
        and a.model_versions == b.model_versions
        and a.model_version_index.tolist() == b.model_version_index.tolist()
        and a.attributes_json == b.attributes_json
    )


@settings(max_examples=150, deadline=None)
@given(
    keys=st.integers(0, 30),
    shards=st.integers(1, 4),
    with_vectors=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_disjoint_answers_reconcile_as_merged_one_by_one(
    keys: int, shards: int, with_vectors: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    owner = rng.integers(-1, shards, keys)  # -1: a key no shard answered for
    width = DIM if with_vectors else 0
    parts = []
    for s in rng.permutation(shards).tolist():
        positions = np.flatnonzero(owner == s).astype(np.int64)
        parts.append((positions, answer(len(positions), rng, width)))
    assert same(reconcile(parts, keys, width), by_merging(parts, keys, width))


def test_overlapping_answers_keep_the_better_copy() -> None:
    rng = np.random.default_rng(1)
    a, b = answer(3, rng, DIM), answer(3, rng, DIM)
    parts = [(np.arange(3), a), (np.arange(3), b)]
    assert same(reconcile(parts, 3, DIM), by_merging(parts, 3))


FAMILY = EmbeddingFamily("f", "item", 4, Metric.L2)
ACCESS = Access("acme", "p")
LIMITS = Limits(max_entity_id_bytes=16, max_tenant_id_bytes=8)
keys_st = st.builds(
    EntityKey,
    st.sampled_from(["", "acme", "other", "x" * 9]),
    st.sampled_from(["", "item", "user"]),
    st.sampled_from(["", "a", "é" * 4, "é" * 5, "k" * 16, "k" * 17, "ü" * 8, "ü" * 9]),
)


def reference(keys: list[EntityKey], access: Access) -> list[EntityKey] | tuple[type, str]:
    out = []
    for i, k in enumerate(keys):
        try:
            owned = own_key(k, access, FAMILY, f"keys[{i}]")
            LIMITS.check_key(owned, f"keys[{i}]")
        except VecshardError as exc:
            return type(exc), str(exc)
        out.append(owned)
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(keys_st, max_size=6), st.sampled_from([ACCESS, Access("x" * 9, "p")]))
def test_owned_keys_and_refusals_are_the_per_key_checks(
    keys: list[EntityKey], access: Access
) -> None:
    expected = reference(keys, access)
    if isinstance(expected, tuple):
        with pytest.raises(expected[0]) as err:
            own_keys(keys, access, FAMILY, "lookup", LIMITS)
        assert str(err.value) == expected[1]
    else:
        got = own_keys(keys, access, FAMILY, "lookup", LIMITS)
        assert got == expected and all(type(k) is EntityKey for k in got)
