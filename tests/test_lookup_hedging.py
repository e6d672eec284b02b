"""BatchGetEmbeddings over replicas, on in-memory shards: a replica that
stalls is hedged to the others after its p95 of lookups (the first complete
answer wins), a hedge that fails leaves the slow replica to answer, and a
replica that refused is not asked first again during its cool-down — the
rules feature reads follow (`coordinator.hedging`, `coordinator.lookups`)."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY

from core.errors import Unavailable
from tests.static_registry import FAMILY
from tests.test_coordinator_writes import ME, RECORDS, cluster, run

KEYS = [r.key for r in RECORDS]
BUCKETS: list[tuple[str, ...]] = [("a", "b"), ("b", "c"), ("c", "a")]  # ring, two replicas each


def hedges(outcome: str) -> float:
    return REGISTRY.get_sample_value("vecshard_lookup_hedges_total", {"outcome": outcome}) or 0.0


def lookup(engine: object, timeout: float = 5.0) -> list[str]:
    _, found = run(lambda: engine.batch_get(ME, FAMILY, KEYS, True, timeout))  # type: ignore[attr-defined]
    return list(found.statuses())


def warmed() -> tuple[object, dict]:
    engine, shards, _ = cluster(BUCKETS)
    run(lambda: engine.upsert(ME, FAMILY, RECORDS, 5.0))
    for _ in range(25):  # every shard's p95 of lookups is known
        assert lookup(engine) == ["found"] * len(KEYS)
    assert all(engine.lookups.hedges.delay(s, 5.0) is not None for s in "abc")
    return engine, shards


def test_a_stalled_replica_is_hedged_to_the_others() -> None:
    engine, shards = warmed()
    fired, won = hedges("fired"), hedges("won")
    shards["b"].delay = 3.0
    start = time.monotonic()
    assert lookup(engine) == ["found"] * len(KEYS)
    took = time.monotonic() - start
    assert took < 1.0, took
    assert hedges("fired") == fired + 1 and hedges("won") == won + 1
    shards["b"].delay = 0.0
    assert lookup(engine) == ["found"] * len(KEYS)
    assert hedges("fired") == fired + 1  # answered in time: no hedge


def test_a_replica_its_hedges_keep_outrunning_is_not_asked_first_during_a_cool_down() -> None:
    """Without it a stalled replica (lease still live) was asked first by
    every lookup, each waiting its p95 before the hedge."""
    engine, shards = warmed()
    fired = hedges("fired")
    asked = shards["b"].ops["batch_get"]
    shards["b"].delay = 3.0
    for _ in range(8):
        start = time.monotonic()
        assert lookup(engine) == ["found"] * len(KEYS)
        assert time.monotonic() - start < 1.0
    assert shards["b"].ops["batch_get"] - asked == 3  # then avoided: its buckets went to a and c
    assert hedges("fired") == fired + 3


def test_a_hedge_that_fails_leaves_the_slow_replica_to_answer() -> None:
    engine, shards = warmed()
    shards["b"].delay = 0.4
    shards["c"].error = Unavailable("shard c is restarting")
    start = time.monotonic()
    assert lookup(engine) == ["found"] * len(KEYS)
    assert time.monotonic() - start >= 0.4


def test_a_replica_that_refused_is_not_asked_first_during_its_cool_down() -> None:
    engine, shards, _ = cluster(BUCKETS)
    run(lambda: engine.upsert(ME, FAMILY, RECORDS, 5.0))
    shards["a"].error = Unavailable("shard a is down")
    assert lookup(engine) == ["found"] * len(KEYS)
    asked = shards["a"].ops["batch_get"]
    assert asked == 1
    for _ in range(3):
        assert lookup(engine) == ["found"] * len(KEYS)
    assert shards["a"].ops["batch_get"] == asked  # its buckets went to b and c


def test_a_hedge_asks_no_replica_for_buckets_without_keys() -> None:
    """a holds buckets 0 and 1 (b and c hold one each); the keys are all in
    bucket 0. The hedge asked c too — a call of no keys, whose near-zero
    latency joined c's p95 (found in review)."""
    from registry.placement import tenant_buckets_of

    engine, shards, _ = cluster([("a", "b"), ("a", "c")])
    run(lambda: engine.upsert(ME, FAMILY, RECORDS, 5.0))
    buckets = tenant_buckets_of("t", [k.entity_id for k in KEYS], 2).tolist()
    keys = [k for k, b in zip(KEYS, buckets, strict=True) if b == 0]
    assert keys and len(keys) < len(KEYS)

    def found() -> list[str]:
        _, got = run(lambda: engine.batch_get(ME, FAMILY, keys, False, 5.0))
        return list(got.statuses())

    for _ in range(25):
        assert found() == ["found"] * len(keys)
    fired = hedges("fired")
    asked_c = shards["c"].ops["batch_get"]
    shards["a"].delay = 3.0
    assert found() == ["found"] * len(keys)
    assert hedges("fired") == fired + 1
    assert shards["c"].ops["batch_get"] == asked_c
