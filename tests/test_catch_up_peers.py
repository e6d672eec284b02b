"""Which replicas a catching-up shard asks for each bucket, and in what
order: every registered one, SERVING first, the next when one fails
(`shard_server.replica_peers`). The real processes: tests/test_shard_rejoin_e2e.py."""

from __future__ import annotations

from registry.model import ShardMember, ShardState
from registry.snapshot import Snapshot
from shard_server.replica_peers import peer_candidates, pull_from_replicas


def snapshot() -> Snapshot:
    return Snapshot(
        shards={
            "a": ShardMember("a", "a:1"),
            "b": ShardMember("b", "b:1", state=ShardState.DRAINING),
            "c": ShardMember("c", "c:1"),
        }
    )


def test_every_registered_replica_is_a_candidate_serving_first() -> None:
    buckets = [["a", "b", "c"], ["b", "c"], ["c", "a"], ["a", "gone"], ["a"]]
    assert peer_candidates(snapshot(), "a", buckets) == {0: ["c", "b"], 2: ["c"]}
    assert peer_candidates(snapshot(), "b", buckets) == {0: ["a", "c"], 1: ["c"]}


def test_a_failing_replica_hands_its_buckets_to_the_next() -> None:
    """The first replica may be dead with its lease still alive: its buckets
    are copied from the next one instead of being skipped."""
    asked: list[tuple[str, list[int]]] = []

    def pull(peer: str, buckets: list[int]) -> None:
        asked.append((peer, buckets))
        if peer == "c":
            raise ConnectionError("connection refused")

    candidates = peer_candidates(snapshot(), "a", [["a", "b", "c"], ["a", "c"], ["a", "b"]])
    failed = pull_from_replicas("ix@v1", candidates, pull)
    assert asked == [("c", [0, 1]), ("b", [2]), ("b", [0])]
    assert failed == {1}  # no other replica of bucket 1 answered: the caller asks again
    asked.clear()
    assert pull_from_replicas("ix@v1", candidates, pull, only={2}) == set()
    assert asked == [("b", [2])]
