"""The `Shard` contract (coordinator/shard.py), reads: search in the global
order with canonical scores, filters, lookups of every key in request order,
describe and the summary that bounds every row; and what every shard refuses
alike (bad requests, any call once closed). Run against the in-memory shard
and a real shard process alike, through both write calls
(tests/shard_contract_support.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from coordinator.model import ShardIndex, ShardQuery
from coordinator.shard import Shard
from core.bounds import score_upper_bound
from core.domain import VersionRef
from core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from core.filters import And, Eq, Filter, In, Not, Range
from core.scoring import prepare_query
from tests import shard_contract_support as support
from tests.polling import poll_async
from tests.shard_contract_support import (
    BUCKETS,
    DIM,
    TIMEOUT,
    Names,
    Write,
    bucket_of,
    catalogue,
    expected,
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


def test_upsert_then_search_gives_every_match_in_the_global_order(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    data = catalogue(16)
    others = [record(f"o{i}", [1.0, 0.0, 0.0, float(i)], tenant="u") for i in range(4)]

    async def body(shard: Shard) -> None:
        assert await write(shard, names.index, data + others) == (len(data) + 4, 0)
        rng = np.random.default_rng(1)
        for q in [data[0].vector, *rng.normal(size=(4, DIM))]:
            for k in (1, 5, len(data), 50):
                assert await search(shard, names.index, q, k) == expected(data, q, k)
        (answer,) = await shard.search(names.index, [ShardQuery(data[3].vector, 3, "t")], TIMEOUT)
        assert answer.candidates == len(data) and not answer.approximate
        assert {h.bucket for h in answer.hits} <= set(range(BUCKETS))
        assert all(
            h.bucket == bucket_of(next(r for r in data if r.key == h.key)) for h in answer.hits
        )
        assert await search(shard, names.index, data[0].vector, 10, tenant="nobody") == []

    run(make_shard, body)


def test_batch_get_answers_every_key_in_request_order(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    a = record("a", [3, 0, 0, 4], 7, genre="jazz", year=2001, tags=("x", "y"))
    b, c = record("b", [0, 1, 0, 0], 2), record("c", [0, 0, 2, 0], 3)

    async def body(shard: Shard) -> None:
        await write(shard, names.index, [a, b, c])
        await shard.delete(names.index, [key("b")], 4, TIMEOUT)
        eids = ["a", "x", "b", "c", "y", "a"]
        keys = [key(e) for e in eids]
        found = await shard.batch_get(names.index, keys, True, TIMEOUT, include_attributes=True)
        assert found.statuses() == ["found", "missing", "deleted", "found", "missing", "found"]
        assert found.source_version.tolist() == [7, 0, 0, 3, 0, 7]
        assert found.created_at.tolist() == [1007, 0, 0, 1003, 0, 1007]
        assert [found.model_version(i) for i in range(6)] == ["m1", "", "", "m1", "", "m1"]
        assert found.attributes_json is not None
        assert json.loads(found.attributes_json[0]) == {
            "genre": "jazz",
            "year": 2001,
            "tags": ["x", "y"],
        }
        assert found.attributes_json[1:3] == ["", ""]
        assert found.norm[0] == pytest.approx(5.0)
        assert found.vectors[0].tolist() == pytest.approx(
            [0.6, 0.0, 0.0, 0.8]
        )  # cosine: normalized
        assert not found.vectors[[1, 2, 4]].any()
        without = await shard.batch_get(names.index, [key("a")], False, TIMEOUT)
        assert without.vectors.shape == (1, 0) and without.attributes_json is None
        other = await shard.batch_get(names.index, [key("a", tenant="u")], True, TIMEOUT)
        assert other.statuses() == ["missing"] and other.vectors.tolist() == [[0.0] * DIM]

    run(make_shard, body)


def test_filters_narrow_the_search_exactly(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    data = catalogue(18, seed=3)
    filters: list[Filter] = [
        Eq("genre", "rock"),
        Range("year", gte=1995, lt=2003),
        In("tags", ("a",)),
        And((Eq("genre", "jazz"), Not(Range("year", gt=2000)))),
        Eq("genre", "none"),
    ]

    async def body(shard: Shard) -> None:
        await write(shard, names.index, data)
        for flt in filters:
            got = await search(shard, names.index, data[5].vector, 7, flt=flt)
            assert got == expected(data, data[5].vector, 7, flt=flt), flt
        with pytest.raises(InvalidArgument):
            await search(shard, names.index, data[5].vector, 7, flt=Eq("color", "red"))

    run(make_shard, body)


def test_describe_returns_the_index_and_its_summary_bounds_every_row(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    data = catalogue(12, seed=5)

    async def body(shard: Shard) -> None:
        await write(shard, names.index, data)
        await shard.delete(names.index, [key("e03")], 100, TIMEOUT)

        # The module cluster's coordinators describe this shard in the
        # background; when the write escaped a summary one of them held, the
        # shard withholds summaries for its quiet period (summary_leases).
        async def described() -> ShardIndex:
            return {i.index: i for i in await shard.describe(TIMEOUT)}[names.index]

        ix = await poll_async(described, lambda i: i.summary is not None, 15.0, 0.25)
        assert (ix.live_count, ix.tombstones) == (len(data) - 1, 1)
        assert ix.summary is not None and ix.summary.metric is names.metric
        for q in np.random.default_rng(2).normal(size=(8, DIM)):
            prepared = prepare_query(q, names.metric, True)
            best = expected(data, q.astype(np.float32), 1)[0][1]
            bound = score_upper_bound(
                names.metric, prepared, ix.summary.centroids, ix.summary.radii
            )
            assert bound >= best - 1e-5
        assert set(ix.summary.buckets) == {bucket_of(r) for r in data}
        assert all(tenants == frozenset({"t"}) for _, tenants in ix.summary.buckets.values())

    run(make_shard, body)


def test_bad_requests_are_refused_the_same_way(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    unknown = VersionRef("nosuchindex", "v1")

    async def body(shard: Shard) -> None:
        with pytest.raises(NotFound):
            await shard.search(unknown, [ShardQuery(np.ones(DIM, np.float32), 1, "t")], TIMEOUT)
        with pytest.raises(NotFound):
            await shard.batch_get(unknown, [key("a")], False, TIMEOUT)
        with pytest.raises(InvalidArgument):
            await write(shard, names.index, [record("a", [1.0, 2.0])])
        with pytest.raises(FailedPrecondition):  # a bucket the shard does not hold
            await write(shard, names.index, [record("a", [1, 0, 0, 0])], BUCKETS)
        with pytest.raises(InvalidArgument):
            await search(shard, names.index, np.ones(DIM), 0)
        with pytest.raises(InvalidArgument):
            await search(shard, names.index, np.ones(DIM + 1), 3)
        assert await statuses(shard, names.index, ["a"]) == ["missing"]  # nothing half-written

    run(make_shard, body)


def test_close_ends_the_shard(make_shard: Callable[[], Shard], names: Names, write: Write) -> None:
    async def body(shard: Shard) -> None:
        await write(shard, names.index, [record("a", [1, 0, 0, 0])])
        await shard.close()
        with pytest.raises(Unavailable):
            await shard.batch_get(names.index, [key("a")], False, TIMEOUT)

    run(make_shard, body)


def test_a_page_pinned_at_a_summarys_sequence_reads_what_the_summary_covered(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    """A search that skipped the shard on a summary reads it at the
    summary's sequence on its next pages (coordinator.cursor): a row written
    since is not there, and a pin at 0 is a pin (nothing), not "no limit"."""
    data = catalogue(6, seed=7)

    async def body(shard: Shard) -> None:
        await write(shard, names.index, data)

        async def described() -> ShardIndex:
            return {i.index: i for i in await shard.describe(TIMEOUT)}[names.index]

        ix = await poll_async(described, lambda i: i.summary is not None, 15.0, 0.25)
        assert ix.summary is not None and ix.summary.sequence is not None
        late = record("late", data[0].vector.tolist())
        await write(shard, names.index, [late])
        q = data[0].vector
        pinned = ShardQuery(q, 10, "t", max_sequence=ix.summary.sequence)
        (answer,) = await shard.search(names.index, [pinned], TIMEOUT)
        assert sorted(k.entity_id for k in answer.keys) == sorted(r.key.entity_id for r in data)
        (nothing,) = await shard.search(
            names.index, [ShardQuery(q, 10, "t", max_sequence=0)], TIMEOUT
        )
        assert list(nothing.keys) == []
        (now,) = await shard.search(names.index, [ShardQuery(q, 10, "t")], TIMEOUT)
        assert "late" in {k.entity_id for k in now.keys}

    run(make_shard, body)
