"""Replicas → one answer: which replica serves a bucket, when to hedge.

Replica choice is healthy first, then least in-flight, then shard id, so a
slow or overloaded replica sheds load to its peers. A shard that just failed
is avoided for a short cool-down, and so is one that keeps being outrun by
its hedges (stalled: a pause, a partition, an overloaded host — it neither
answers nor refuses, and its lease may still be live). Latency is tracked per
shard to hedge a call that has run past that shard's observed p95.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from coordinator import metrics
from core.errors import ResourceExhausted

# Latencies recorded before a shard's p95 is computed again: the window holds
# 256, so a p95 at most 16 calls old differs from a fresh one by a few of
# them — and sorting the window on every hedged call cost ~10 µs each.
P95_REFRESH = 16
# Hedges answering first in a row, with no answer from the shard in between,
# before the shard is avoided for a cool-down. One is what a p95 hedge is for
# (1 call in 20 of a healthy shard); several in a row is a shard that stalled.
SLOW_AFTER = 3


@dataclass
class ShardHealth:
    in_flight: int = 0
    failed_until: float = 0.0
    # Calls a hedge answered first since the shard last answered one itself.
    outrun: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    _p95: float | None = None
    _since_p95: int = P95_REFRESH  # latencies recorded since `_p95` was computed

    def record(self, latency: float) -> None:
        self.latencies.append(latency)
        self._since_p95 += 1

    def p95(self) -> float | None:
        if len(self.latencies) < 20:
            return None
        if self._since_p95 >= P95_REFRESH or self._p95 is None:
            ordered = sorted(self.latencies)
            self._p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            self._since_p95 = 0
        return self._p95


class ReplicaTracker:
    """In-flight counts, failure cool-downs and latency windows per shard."""

    def __init__(
        self,
        max_in_flight_per_shard: int = 256,
        cooldown: float = 1.0,
        slow_after: int = SLOW_AFTER,
    ) -> None:
        self.max_in_flight = max_in_flight_per_shard
        self.cooldown = cooldown
        self.slow_after = slow_after
        self._shards: dict[str, ShardHealth] = defaultdict(ShardHealth)

    def health(self, shard_id: str) -> ShardHealth:
        return self._shards[shard_id]

    def choose(
        self, candidates: Sequence[str], now: float | None = None, *, by_position: bool = False
    ) -> str | None:
        """The best replica among `candidates` (already filtered to serving
        ones); on a tie the lowest shard id, or with `by_position` the first
        candidate — a bucket's replicas in placement order, whose first
        replicas are spread evenly over the shards."""
        if len(candidates) < 2:  # one replica (the default): nothing to rank
            return candidates[0] if candidates else None
        now = time.monotonic() if now is None else now
        rank = {s: i for i, s in enumerate(candidates)} if by_position else None
        return min(
            candidates,
            key=lambda s: (
                self._shards[s].failed_until > now,
                self._shards[s].in_flight,
                rank[s] if rank is not None else s,
            ),
        )

    def acquire(self, shard_id: str) -> None:
        h = self._shards[shard_id]
        if h.in_flight >= self.max_in_flight:
            metrics.SHED.labels("shard_in_flight").inc()
            raise ResourceExhausted(
                f"shard {shard_id} has {h.in_flight} calls in flight (limit {self.max_in_flight}); retry later"
            )
        h.in_flight += 1

    def release(
        self, shard_id: str, latency: float | None, failed: bool = False, timed: bool = True
    ) -> None:
        """`timed`: the latency joins the window searches hedge by (their
        p95); lookups and feature reads keep their own (`HedgeTimer`) — a
        20 ms lookup in it made searches of 1 ms hedge at 20 ms."""
        h = self._shards[shard_id]
        h.in_flight = max(0, h.in_flight - 1)
        if failed:
            h.failed_until = time.monotonic() + self.cooldown
            metrics.labeled(metrics.REPLICA_COOLDOWNS, shard_id, "failed").inc()
        elif latency is not None:
            if timed:
                h.record(latency)
            h.outrun = 0

    def outran(self, shard_id: str, now: float | None = None) -> bool:
        """A hedge answered a call to `shard_id` while the shard's own call
        was still running. After `slow_after` in a row the shard is avoided
        for a cool-down like a failed one (True): without it a stalled shard
        was asked first by every request, each waiting its p95 before the
        hedge, until its lease ran out — or for good, if the lease thread
        kept running. After the cool-down one request asks it again; it
        stays avoided until it answers a call itself."""
        h = self._shards[shard_id]
        h.outrun += 1
        if h.outrun < self.slow_after:
            return False
        h.failed_until = (time.monotonic() if now is None else now) + self.cooldown
        metrics.labeled(metrics.REPLICA_COOLDOWNS, shard_id, "slow").inc()
        return True

    def hedge_delay(self, shard_id: str, floor: float = 0.002) -> float | None:
        """Seconds to wait before hedging a call to this shard (its p95)."""
        p95 = self._shards[shard_id].p95()
        return None if p95 is None else max(floor, p95)
