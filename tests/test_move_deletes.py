"""Centroid move-deletes against failures (found in review of this stop's
own changes): a move-delete waits for its keys' new copies — only theirs —
and a late one never removes a copy written after it."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from core.domain import EntityKey
from core.errors import Unavailable
from registry.placement import encode_centroids
from tests.test_coordinator_writes import CENTROIDS, FAMILY, ME, cluster, keys_on, rec, run

CENTROIDS3 = encode_centroids(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], np.float32))


def test_a_failing_replica_set_holds_back_only_its_own_keys_move_deletes() -> None:
    """One write moved k1 to region b (up) and k2 to region c (down): the
    move-deletes were gated on every replica set of the request, so k1's
    old copy stayed beside its landed new one — two live copies."""
    engine, shards, _ = cluster(
        [("a",), ("b",), ("c",)], placement="centroid", centroids=CENTROIDS3
    )
    v5 = [rec("k1", [0.9, 0.1, 0, 0], 5), rec("k2", [0.9, 0, 0.1, 0], 5)]
    run(lambda: engine.upsert(ME, FAMILY, v5, 5.0))
    assert keys_on(shards["a"]) == {"k1", "k2"}
    shards["c"].error = Unavailable("shard c is down")
    v6 = [rec("k1", [0.1, 0.9, 0, 0], 6), rec("k2", [0.1, 0, 0.9, 0], 6)]
    with pytest.raises(Unavailable):
        run(lambda: engine.upsert(ME, FAMILY, v6, 5.0))
    shards["c"].error = None
    run(lambda: engine.drain_background())
    on = {sid: keys_on(s) for sid, s in shards.items()}
    assert on == {"a": {"k2"}, "b": {"k1"}, "c": set()}, on  # k2 keeps its old copy


def test_a_late_move_delete_never_removes_a_copy_written_after_it() -> None:
    """k@5 moved to region b, its move-delete to a failed once (repaired
    later); k@5 moved back to a. Deleting copies of the new record's own
    version, the repaired delete removed the moved-back copy: the key was
    lost everywhere. It is kept (a same-version move leaves a copy behind —
    `coordinator/moves.py` says why)."""
    engine, shards, _ = cluster([("a",), ("b",)], placement="centroid", centroids=CENTROIDS)
    k = EntityKey("t", "item", "k")

    async def scenario() -> list[str]:
        assert await engine.upsert(ME, FAMILY, [rec("k", [0.9, 0.1, 0, 0], 5)], 5.0) == (1, 0)
        real = shards["a"].delete
        calls = {"n": 0}

        async def flaky(*args: Any, **kw: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:
                raise Unavailable("blip")  # handed to the repair
            return await real(*args, **kw)

        shards["a"].delete = flaky  # type: ignore[method-assign]
        assert await engine.upsert(ME, FAMILY, [rec("k", [-0.9, 0.1, 0, 0], 5)], 5.0) == (1, 0)
        await asyncio.sleep(0.05)
        assert await engine.upsert(ME, FAMILY, [rec("k", [0.8, 0.1, 0, 0], 5)], 5.0) == (1, 0)
        await asyncio.sleep(0.5)  # the repair retries a's move-delete
        _, found = await engine.batch_get(ME, FAMILY, [k], False, 5.0)
        assert "k" in keys_on(shards["a"])
        return found.statuses()

    assert asyncio.run(scenario()) == ["found"]
