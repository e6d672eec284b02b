"""Issue 14: any interleaving of upserts and deletes with random versions, on
both placements, ends in the state the version rules define — through the
coordinator's write path (move-deletes included) over in-memory shards that
implement the shard contract."""

from __future__ import annotations

import asyncio

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.model import Access, WriteRecord
from coordinator.service import RetrievalEngine
from coordinator.shard import Shard
from core.domain import EntityKey
from core.embedding_columns import EmbeddingColumns
from registry.placement import encode_centroids
from tests.inmemory import InMemoryShard
from tests.static_registry import FAMILY, INDEX, registry_for

ME = Access("t", "test")
CENTRES = np.array([[4, 0, 0, 0], [-4, 0, 0, 0], [0, 4, 0, 0], [0, -4, 0, 0]], np.float32)
KEYS = ["x", "y", "z"]
Op = tuple[str, int, int, int]  # (kind, key index, version, region)


@st.composite
def histories(draw: st.DrawFn) -> list[Op]:
    n = draw(st.integers(1, 20))
    versions = draw(st.lists(st.integers(1, 80), min_size=n, max_size=n, unique=True))
    ops: list[Op] = []
    for v in versions:
        kind = draw(st.sampled_from(["upsert", "upsert", "delete"]))
        if kind == "delete" and ops:  # a delete may share an upsert's version: it wins
            v = draw(st.sampled_from([v, *[o[2] for o in ops]]))
        ops.append((kind, draw(st.integers(0, len(KEYS) - 1)), v, draw(st.integers(0, 3))))
    return ops


def expected(ops: list[Op]) -> dict[str, tuple[str, int, int]]:
    """Per key: (status, version, region of that version)."""
    out = {}
    for k, name in enumerate(KEYS):
        ups = {v: r for kind, key, v, r in ops if key == k and kind == "upsert"}
        dels = [v for kind, key, v, _ in ops if key == k and kind == "delete"]
        best = max(ups, default=None)
        if best is not None and (not dels or best > max(dels)):
            out[name] = ("found", best, ups[best])
        elif dels:
            out[name] = ("deleted", 0, -1)
        else:
            out[name] = ("missing", 0, -1)
    return out


def apply(ops: list[Op], placement: str) -> tuple[dict[str, tuple[str, int]], dict[str, int]]:
    buckets = [("a",), ("b",), ("c",), ("d",)]
    centroids = encode_centroids(CENTRES) if placement == "centroid" else ""
    reg = registry_for(["a", "b", "c", "d"], buckets, placement=placement, centroids=centroids)
    shards = {s: InMemoryShard(s, registry=reg) for s in "abcd"}

    def factory(shard_id: str, address: str) -> Shard:
        return shards[shard_id]

    engine = RetrievalEngine(reg, factory)

    async def run() -> EmbeddingColumns:
        for kind, k, v, region in ops:
            key = EntityKey("t", "item", KEYS[k])
            if kind == "upsert":
                vec = CENTRES[region] + np.float32(0.01 * v)
                await engine.upsert(ME, FAMILY, [WriteRecord(key, vec, v)], 5.0)
            else:
                await engine.delete(ME, FAMILY, [key], v, 5.0)
        keys = [EntityKey("t", "item", k) for k in KEYS]
        _, columns = await engine.batch_get(ME, FAMILY, keys, True, 5.0)
        return columns

    columns = asyncio.run(run())
    state = {}
    for i, (name, status) in enumerate(zip(KEYS, columns.statuses(), strict=True)):
        state[name] = (status, int(columns.source_version[i]) if status == "found" else 0)
    copies = {
        name: sum(
            EntityKey("t", "item", name)
            in (s._partitions[INDEX].records if INDEX in s._partitions else {})
            for s in shards.values()
        )
        for name in KEYS
    }
    return state, copies


@settings(max_examples=80, deadline=None)
@given(ops=histories(), placement=st.sampled_from(["hash", "centroid"]))
def test_any_history_ends_as_the_rules_say_on_both_placements(
    ops: list[Op], placement: str
) -> None:
    state, copies = apply(ops, placement)
    for name, (status, version, _) in expected(ops).items():
        assert state[name] == (status, version), (name, placement, ops)
        assert copies[name] == (1 if status == "found" else 0), (name, placement, ops)
