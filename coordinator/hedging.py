"""Hedging reads that are not searches (feature calls, lookups): when to
hedge a call to a shard, and the hedge itself — one attempt per other
replica, all of which must answer. Searches hedge in
`coordinator.shard_calls`."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from coordinator.partial import Decision, classify_shard_error
from coordinator.replicas import ReplicaTracker, ShardHealth

T = TypeVar("T")


class HedgeTimer:
    """When to hedge one kind of read (feature calls, lookups): per shard,
    the p95 of that kind's own latencies, apart from its searches' (the
    tracker's) — a feature call reads hundreds of rows and is slower, so a
    shared p95 would hedge searches late and feature calls early."""

    def __init__(self, enabled: bool = True, floor: float = 0.002, spare: float = 0.002) -> None:
        self.enabled = enabled
        # Never sooner than `floor`; only with `spare` seconds left after it.
        self.floor, self.spare = floor, spare
        self._shards: dict[str, ShardHealth] = defaultdict(ShardHealth)

    def record(self, shard_id: str, latency: float) -> None:
        self._shards[shard_id].record(latency)

    def delay(self, shard_id: str, remaining: float) -> float | None:
        """Seconds to wait for the shard before hedging; None: no hedge (off,
        too few calls seen, or no time left for a second call)."""
        if not self.enabled:
            return None
        p95 = self._shards[shard_id].p95()
        if p95 is None:
            return None
        delay = max(self.floor, p95)
        return delay if remaining > delay + self.spare else None


def succeeded(task: asyncio.Future[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


async def all_answers(attempts: Sequence[Awaitable[T]]) -> list[T]:
    """Every attempt's answer in order, or the first failure with the
    others cancelled: a hedge that cannot answer for all of its rows does
    not count (and runs no failover of its own — the call it hedges is
    still running)."""
    tasks = [asyncio.ensure_future(a) for a in attempts]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task in done and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [t.result() for t in tasks]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()


async def counted(
    tracker: ReplicaTracker, hedges: HedgeTimer, shard_id: str, call: Callable[[], Awaitable[T]]
) -> T:
    """One call to a shard, counted by the replica tracker (in flight, its
    latency, a failure's cool-down: replicas are chosen least busy first and
    one that failed is avoided) and timed for hedging."""
    tracker.acquire(shard_id)
    start = time.perf_counter()
    try:
        answer = await call()
    except asyncio.CancelledError:
        tracker.release(shard_id, None)
        raise
    except BaseException as exc:
        tracker.release(shard_id, None, failed=classify_shard_error(exc) is Decision.TOLERATE)
        raise
    latency = time.perf_counter() - start
    tracker.release(shard_id, latency, timed=False)  # its own p95 is `hedges`'
    hedges.record(shard_id, latency)
    return answer


async def hedged_answer(
    primary: asyncio.Future[Any],
    delay: float,
    start_hedge: Callable[[], Awaitable[T] | None],
    counter: Any,
    outran: Callable[[], object],
) -> T | None:
    """Waits `delay` for `primary`; then starts `start_hedge()` (None: nothing
    to hedge) and waits for either. The hedge's answer when it came while the
    primary had not succeeded, else None: the caller awaits the primary (a
    failed hedge counts as none). `counter` (labels fired/won) counts them;
    `outran()` hears of a hedge that answered while the primary was still
    running (`ReplicaTracker.outran`: a stalled shard). The hedge is
    cancelled when not used; the primary is the caller's."""
    hedge: asyncio.Future[T] | None = None
    try:
        done, _ = await asyncio.wait({primary}, timeout=delay)
        work = None if done else start_hedge()
        if work is None:
            return None
        counter.labels("fired").inc()
        hedge = asyncio.ensure_future(work)
        await asyncio.wait({primary, hedge}, return_when=asyncio.FIRST_COMPLETED)
        if succeeded(primary):
            return None
        try:
            answer = await hedge
        except Exception:  # noqa: BLE001 - another replica refused or stalled too
            return None
        counter.labels("won").inc()
        if not primary.done():
            outran()
        return answer
    finally:
        if hedge is not None and not hedge.done():
            hedge.cancel()
