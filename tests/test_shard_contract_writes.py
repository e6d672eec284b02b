"""The `Shard` contract (coordinator/shard.py), writes and deletes: the
version rules (a stale write is ignored and counted, an equal version
replaces, a delete wins over its version and older and never removes a newer
write), idempotent replay, and what a lookup says after a delete. Run
against the in-memory shard and a real shard process alike, through both
write calls (tests/shard_contract_support.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from coordinator.shard import Shard
from tests import shard_contract_support as support
from tests.shard_contract_support import (
    TIMEOUT,
    Names,
    Write,
    catalogue,
    key,
    record,
    run,
    search,
    statuses,
)

pytestmark = pytest.mark.integration

# The suite's fixtures, bound by name (tests/shard_contract_support.py says why).
cluster, registry = support.cluster, support.registry
make_shard, names, write = support.make_shard, support.names, support.write


def test_a_stale_upsert_is_ignored_and_counted(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    async def body(shard: Shard) -> None:
        assert await write(shard, names.index, [record("a", [1, 0, 0, 0], 5)]) == (1, 0)
        assert await write(shard, names.index, [record("a", [0, 1, 0, 0], 4)]) == (0, 1)
        mixed = [record("a", [0, 0, 1, 0], 3), record("b", [0, 0, 0, 1], 1)]
        assert await write(shard, names.index, mixed) == (1, 1)
        a = await shard.batch_get(names.index, [key("a")], True, TIMEOUT)
        assert a.statuses() == ["found"] and a.source_version.tolist() == [5]
        assert a.vectors.tolist() == [[1.0, 0.0, 0.0, 0.0]]
        # Within one batch the highest version of a key wins, whatever the order.
        batch = [record("c", [1, 1, 0, 0], 9), record("c", [0, 1, 1, 0], 2)]
        assert await write(shard, names.index, batch) == (1, 0)
        c = await shard.batch_get(names.index, [key("c")], False, TIMEOUT)
        assert c.statuses() == ["found"] and c.source_version.tolist() == [9]

    run(make_shard, body)


def test_replaying_a_batch_is_idempotent(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    data = catalogue(8)

    async def body(shard: Shard) -> None:
        assert await write(shard, names.index, data) == (len(data), 0)
        before = await search(shard, names.index, data[2].vector, 20)
        assert await write(shard, names.index, data) == (len(data), 0)  # equal version replaces
        assert await search(shard, names.index, data[2].vector, 20) == before
        (ix,) = [i for i in await shard.describe(TIMEOUT) if i.index == names.index]
        assert (ix.live_count, ix.tombstones) == (len(data), 0)

    run(make_shard, body)


def test_delete_then_lookup_says_deleted(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    data = catalogue(6)

    async def body(shard: Shard) -> None:
        await write(shard, names.index, data)
        assert (
            await shard.delete(names.index, [key("e01"), key("e02"), key("e01")], 10, TIMEOUT) == 2
        )
        assert await statuses(shard, names.index, ["e00", "e01", "e02"]) == [
            "found", "deleted", "deleted",
        ]  # fmt: skip
        hits = await search(shard, names.index, data[1].vector, 20)
        assert {k.entity_id for k, _ in hits} == {r.key.entity_id for r in data} - {"e01", "e02"}
        # A key never written: nothing removed, but the delete is remembered.
        assert await shard.delete(names.index, [key("ghost")], 10, TIMEOUT) == 0
        assert await statuses(shard, names.index, ["ghost"]) == ["deleted"]
        (ix,) = [i for i in await shard.describe(TIMEOUT) if i.index == names.index]
        assert (ix.live_count, ix.tombstones) == (len(data) - 2, 3)

    run(make_shard, body)


def test_a_delete_wins_over_equal_and_older_writes(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    async def body(shard: Shard) -> None:
        await write(shard, names.index, [record("k", [1, 0, 0, 0], 5)])
        assert await shard.delete(names.index, [key("k")], 8, TIMEOUT) == 1
        assert await write(shard, names.index, [record("k", [1, 1, 0, 0], 8)]) == (0, 1)
        assert await write(shard, names.index, [record("k", [1, 1, 1, 0], 6)]) == (0, 1)
        assert await statuses(shard, names.index, ["k"]) == ["deleted"]
        assert await write(shard, names.index, [record("k", [0, 0, 0, 1], 9)]) == (1, 0)
        k = await shard.batch_get(names.index, [key("k")], True, TIMEOUT)
        assert k.statuses() == ["found"]
        assert (int(k.source_version[0]), k.vectors[0].tolist()) == (9, [0.0, 0.0, 0.0, 1.0])
        (ix,) = [i for i in await shard.describe(TIMEOUT) if i.index == names.index]
        assert (ix.live_count, ix.tombstones) == (1, 0)  # the newer write revived the key

    run(make_shard, body)


def test_a_delete_never_removes_a_newer_write(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    async def body(shard: Shard) -> None:
        await write(shard, names.index, [record("k", [1, 0, 0, 0], 100)])
        assert await shard.delete(names.index, [key("k")], 5, TIMEOUT) == 0
        k = await shard.batch_get(names.index, [key("k")], False, TIMEOUT)
        assert k.statuses() == ["found"] and k.source_version.tolist() == [100]
        assert [e for e, _ in await search(shard, names.index, [1, 0, 0, 0], 3)] == [key("k")]
        # The older delete still fences writes of its version and older.
        await shard.delete(names.index, [key("k")], 100, TIMEOUT)
        assert await write(shard, names.index, [record("k", [1, 0, 0, 0], 50)]) == (0, 1)

    run(make_shard, body)
