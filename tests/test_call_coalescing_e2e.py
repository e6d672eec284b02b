"""Threads searching and looking up through one SDK client share batch calls
(`client.call_coalescing`) — through real processes: the answers are the
ones each request gets alone, and one request's error stays its caller's."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from client.call_coalescing import Coalescing
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.errors import InvalidArgument, Unavailable
from core.filters import Eq, Filter
from tests.conftest import ClusterFactory
from tests.polling import poll
from tests.specs import route_spec

pytestmark = pytest.mark.integration
SPEC = route_spec(dim=8, metric="inner_product", num_buckets=6, attributes={"colour": "string"})


def _answer(r: Any) -> tuple[Any, ...]:
    return (
        [(h.key, h.score, h.rank, h.shard_id) for h in r.hits],
        r.route,
        r.index,
        r.metric,
        r.partial,
        r.completeness,
        bool(r.next_cursor),
    )


def _together(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Runs the calls on threads released at once; each one's result or exception."""
    out: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            out[i] = calls[i]()
        except Exception as exc:  # the test inspects it
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@contextlib.contextmanager
def _clients(make_cluster: ClusterFactory) -> Iterator[tuple[RetrievalClient, RetrievalClient]]:
    """A 2-shard cluster serving SPEC, and two clients of it: one sending
    every call alone, one coalescing with one call in flight (so concurrent
    calls queue and share)."""
    cluster = make_cluster(num_shards=2)
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(SPEC)
    kw: dict[str, Any] = {"tenant_id": "t", "purpose": "p"}
    with (
        RetrievalClient(cluster.coordinator_target, coalescing=None, **kw) as alone,
        RetrievalClient(
            cluster.coordinator_target, coalescing=Coalescing(max_in_flight=1), **kw
        ) as shared,
    ):
        yield alone, shared


def test_concurrent_searches_share_batch_calls_and_keep_their_own_answers(
    make_cluster: ClusterFactory,
) -> None:
    rng = np.random.default_rng(3)
    with _clients(make_cluster) as (alone, shared):
        alone.upsert(
            "v",
            "v1",
            [
                Record(f"e{i}", rng.normal(size=8), attributes={"colour": "rgb"[i % 3]})
                for i in range(400)
            ],
        )
        # Queries that differ in k, filter and page.
        queries = [rng.normal(size=8).astype(np.float32) for _ in range(10)]
        filters: list[Filter | None] = [None, Eq("colour", "r"), None, Eq("colour", "g")]
        asks = [(q, 3 + i % 5, filters[i % 4]) for i, q in enumerate(queries)]
        firsts = [alone.search("r", q, k, filter=f) for q, k, f in asks]
        pages = [
            (q, k, f, first.next_cursor) for (q, k, f), first in zip(asks, firsts, strict=True)
        ][:3]
        expected = [_answer(a) for a in firsts] + [
            _answer(alone.search("r", q, k, filter=f, cursor=c)) for q, k, f, c in pages
        ]
        calls: list[Any] = [
            functools.partial(shared.search, "r", q, k, filter=f) for q, k, f in asks
        ] + [
            functools.partial(shared.search, "r", q, k, filter=f, cursor=c) for q, k, f, c in pages
        ]
        assert shared.searches is not None
        for _ in range(20):  # until calls have shared a batch (almost always the first round)
            got = _together(calls)
            assert [_answer(g) for g in got] == expected
            if shared.searches.stats.mean_batch > 1:  # some call carried several queries
                break
        assert shared.searches.stats.mean_batch > 1
        assert shared.searches.in_flight == 0

        # A query the coordinator refuses fails alone; its batch-mates get their answers.
        def bad() -> Any:
            return shared.search("r", queries[0], 5, filter=Eq("colour", 7))

        rode_along = False
        for _ in range(20):
            resent = shared.searches.stats.resent
            got = _together([bad, *calls[:6]])
            assert isinstance(got[0], InvalidArgument)
            assert "filter eq on 'colour'" in str(got[0])
            assert [_answer(g) for g in got[1:]] == expected[:6]
            if shared.searches.stats.resent > resent:
                rode_along = True  # the refusal came from a batch call, not a lone one
                break
        assert rode_along
        assert shared.searches.in_flight == 0


def test_closing_a_client_under_concurrent_searches_ends_every_caller(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(num_shards=2)
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(SPEC)
    rng = np.random.default_rng(4)
    client = RetrievalClient(
        cluster.coordinator_target,
        tenant_id="t",
        purpose="p",
        coalescing=Coalescing(max_in_flight=1),
    )
    client.upsert("v", "v1", [Record(f"e{i}", rng.normal(size=8)) for i in range(200)])
    query = rng.normal(size=8).astype(np.float32)
    outcomes: list[str] = []

    def loop() -> None:
        while True:
            try:
                client.search("r", query, 5)
            except Unavailable as exc:
                outcomes.append(f"unavailable: {exc}")
                return
            except Exception as exc:  # anything else fails the test below
                outcomes.append(f"{type(exc).__name__}: {exc}")
                return

    threads = [threading.Thread(target=loop) for _ in range(12)]
    for t in threads:
        t.start()
    assert client.searches is not None
    stats = client.searches.stats
    assert poll(lambda: stats.batches, lambda n: n >= 3, timeout=10, interval=0.01) >= 3
    client.close()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == 12
    assert all(o.startswith("unavailable:") for o in outcomes), outcomes
    assert client.searches.in_flight == 0


def _lookup(b: Any) -> tuple[Any, ...]:
    return (
        b.statuses(),
        b.vectors.tolist(),
        b.source_version.tolist(),
        b.norm.tolist(),
        [b.model_version(i) for i in range(len(b.status))],
        b.keys,
    )


def test_concurrent_lookups_share_calls_and_keep_their_own_answers(
    make_cluster: ClusterFactory,
) -> None:
    rng = np.random.default_rng(5)
    with _clients(make_cluster) as (alone, shared):
        alone.upsert("v", "v1", [Record(f"e{i}", rng.normal(size=8)) for i in range(300)])
        alone.delete("v", "v1", ["e7"])
        # Different ids (some missing, one deleted, one repeated), with and
        # without vectors (those two kinds never share a call).
        asks = [
            (
                [f"e{j}" for j in rng.choice(320, size=5 + i, replace=False)] + ["e7", "e1"],
                i % 3 > 0,
            )
            for i in range(9)
        ]
        expected = [
            _lookup(alone.get_embeddings("v", "v1", ids, include_vectors=v)) for ids, v in asks
        ]
        calls = [
            functools.partial(shared.get_embeddings, "v", "v1", ids, include_vectors=v)
            for ids, v in asks
        ]
        assert shared.lookups is not None
        for _ in range(20):
            got = _together(calls)
            assert [_lookup(g) for g in got] == expected
            if shared.lookups.stats.mean_batch > 1:
                break
        assert shared.lookups.stats.mean_batch > 1
        assert shared.lookups.in_flight == 0
