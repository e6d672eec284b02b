"""Calls to the shards that serve a target, for a search: the attempt (the
replica tracker's in-flight and latency accounting, the deadline), a
hedge to another replica after the shard's p95, and failover to a cover of
replicas when one refuses. What a call answers is an `Outcome`; what the
search does with it is `coordinator.search`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from coordinator import metrics
from coordinator.failover import Alternate, failover_cover
from coordinator.fanout import FanoutSettings, Target
from coordinator.model import ShardAnswer, ShardQuery
from coordinator.partial import Decision, classify_shard_error
from coordinator.replicas import ReplicaTracker
from coordinator.shard import ShardFactory
from core import tracing
from core.domain import VersionRef
from core.errors import DeadlineExceeded, VecshardError

# One replica's part of a call: the replica, the buckets it answered for
# (None: the target's), and its answers (one per query the call carried) — or
# the error of a failover member no replica was left to stand in for.
Part = tuple[str, tuple[int, ...] | None, list[ShardAnswer] | VecshardError]
# A shard call's parts (one, or a failover cover's members), its latency in
# seconds, and whether it was hedged.
Outcome = tuple[tuple[Part, ...], float, bool]


def result_of(task: asyncio.Future[Outcome]) -> Outcome | BaseException:
    """A finished call's answer or its error (a cancellation propagates)."""
    if task.cancelled():
        raise asyncio.CancelledError
    exc = task.exception()
    return exc if exc is not None else task.result()


# A call that ran out of time counts against its shard (a cool-down) only if
# it had a fair budget: this many of the shard's p95, and at least this long.
FAIR_BUDGET_P95S = 4.0
FAIR_BUDGET_FLOOR = 0.05


class ShardCaller:
    def __init__(
        self, shards: ShardFactory, tracker: ReplicaTracker, settings: FanoutSettings
    ) -> None:
        self.shards = shards
        self.tracker = tracker
        self.settings = settings

    async def _attempt(
        self,
        shard_id: str,
        address: str,
        index: VersionRef,
        queries: Sequence[ShardQuery],
        deadline: float,
    ) -> tuple[list[ShardAnswer], float]:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise DeadlineExceeded(f"no time left to ask shard {shard_id}")
        self.tracker.acquire(shard_id)
        start = time.perf_counter()
        try:
            # Queueing in the shard's batcher and the call: the fanout to one shard.
            with tracing.span("coordinator.shard", shard_id=shard_id, index=str(index)):
                answers = await self.shards(shard_id, address).search(
                    index, list(queries), remaining
                )
        except asyncio.CancelledError:
            self.tracker.release(shard_id, None)
            raise
        except VecshardError as exc:
            failed = classify_shard_error(exc) is Decision.TOLERATE
            if isinstance(exc, DeadlineExceeded) and not self._fair_budget(shard_id, remaining):
                # The caller's own short deadline, not a slow shard: a client
                # asking with a few milliseconds put healthy replicas on a
                # cool-down, and every other request then went without them.
                failed = False
            self.tracker.release(shard_id, None, failed=failed)
            raise
        except BaseException:
            self.tracker.release(shard_id, None, failed=True)
            raise
        latency = time.perf_counter() - start
        self.tracker.release(shard_id, latency)
        return answers, latency

    def _fair_budget(self, shard_id: str, remaining: float) -> bool:
        """Whether a call given `remaining` seconds should have been answered:
        several of the shard's recent p95 (`FAIR_BUDGET_P95S`), and at least
        `FAIR_BUDGET_FLOOR`."""
        p95 = self.tracker.hedge_delay(shard_id, floor=0.0) or 0.0
        return remaining >= max(FAIR_BUDGET_FLOOR, FAIR_BUDGET_P95S * p95)

    def _full_alternates(self, t: Target) -> list[tuple[str, str]]:
        """Replicas holding every bucket of the target (safe to hedge to)."""
        return [(sid, addr) for sid, addr, cov in t.alternates if len(cov) == len(t.buckets)]

    async def _attempt_cover(
        self,
        cover: list[Alternate],
        candidates: Sequence[Alternate],
        tried: set[str],
        index: VersionRef,
        queries: Sequence[ShardQuery],
        deadline: float,
    ) -> tuple[tuple[Part, ...], float]:
        """Asks several replicas for one target's buckets. Each member stays
        a part of its own: the cursor pins each to the buckets it answered
        for at its own write sequence, and approximate scores are calibrated
        by the replica that made them (the result merge removes duplicates).
        A member that fails has its buckets asked of the replicas left (its
        siblings too: they hold other buckets); those no one is left for are
        a failed part, missing from the answer — one member's failure failed
        the whole cover, every bucket of the target missing."""
        results = await asyncio.gather(
            *(self._attempt(sid, addr, index, queries, deadline) for sid, addr, _ in cover),
            return_exceptions=True,
        )
        failed = tried | {
            sid
            for (sid, _, _), r in zip(cover, results, strict=True)
            if isinstance(r, BaseException)
        }
        parts: list[Part] = []
        latency = 0.0
        for (sid, _, buckets), result in zip(cover, results, strict=True):
            if not isinstance(result, BaseException):
                parts.append((sid, buckets, result[0]))
                latency = max(latency, result[1])
                continue
            if not isinstance(result, VecshardError) or (
                classify_shard_error(result) is Decision.ABORT
            ):
                raise result
            left = failover_cover(buckets, candidates, failed)
            if not left:
                parts.append((sid, buckets, result))
                continue
            more, took = await self._attempt_cover(
                left, candidates, failed, index, queries, deadline
            )
            parts.extend(more)
            latency = max(latency, took)
        if all(isinstance(answers, BaseException) for _, _, answers in parts):
            raise next(answers for _, _, answers in parts if isinstance(answers, BaseException))
        return tuple(parts), latency

    async def _call_only(
        self, t: Target, index: VersionRef, queries: Sequence[ShardQuery], deadline: float
    ) -> Outcome:
        """`_call` where no other replica serves the target (nothing to hedge
        or fail over to): the attempt runs in the caller's task under the
        deadline, with no task and no wait of its own."""
        timeout = asyncio.timeout_at(deadline)
        try:
            async with timeout:
                answers, latency = await self._attempt(
                    t.shard_id, t.address, index, queries, deadline
                )
        except TimeoutError:
            if not timeout.expired():
                raise
            raise DeadlineExceeded(
                f"shard {t.shard_id} did not answer before the deadline"
            ) from None
        return ((t.shard_id, None, answers),), latency, False

    async def call(
        self,
        t: Target,
        index: VersionRef,
        queries: Sequence[ShardQuery],
        deadline: float,
        route: str,
    ) -> Outcome:
        """The target's answers to `queries`; after its shard's p95 a hedged
        call goes to another replica and the first good answer wins (the
        other is cancelled)."""
        if not t.alternates:
            return await self._call_only(t, index, queries, deadline)
        loop = asyncio.get_running_loop()
        primary: asyncio.Future[tuple[Any, float]] = asyncio.ensure_future(
            self._attempt(t.shard_id, t.address, index, queries, deadline)
        )
        # Each call in flight: the replicas it asks, whether it is the hedge,
        # and whether it is a failover cover (answering parts; an attempt
        # answers for the whole target).
        tasks: dict[asyncio.Future[tuple[Any, float]], tuple[list[str], bool, bool]] = {
            primary: ([t.shard_id], False, False)
        }

        def outcome(task: asyncio.Future[tuple[Any, float]]) -> Outcome:
            asked, hedged, cover = tasks[task]
            answered, latency = task.result()
            return (answered if cover else ((asked[0], None, answered),)), latency, hedged

        full = self._full_alternates(t)
        delay = self.tracker.hedge_delay(t.shard_id) if self.settings.hedge and full else None
        errors: list[BaseException] = []
        try:
            if delay is not None:
                done, _ = await asyncio.wait(
                    {primary}, timeout=min(delay, max(0.0, deadline - loop.time()))
                )
                if done and primary.exception() is None:
                    # Answered before its p95 (most calls): nothing to race.
                    return outcome(primary)
                if not done:
                    alt = self.tracker.choose([s for s, _ in full]) or full[0][0]
                    address = dict(full)[alt]
                    hedge = asyncio.ensure_future(
                        self._attempt(alt, address, index, queries, deadline)
                    )
                    tasks[hedge] = ([alt], True, False)
                    metrics.HEDGES.labels(route, "fired").inc()
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(
                    pending,
                    timeout=max(0.0, deadline - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    raise DeadlineExceeded(f"shard {t.shard_id} did not answer before the deadline")
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        if tasks[task][1]:  # the hedge
                            metrics.HEDGES.labels(route, "won").inc()
                            if not primary.done():
                                self.tracker.outran(t.shard_id)
                        return outcome(task)
                    errors.append(exc)
                    # Fail over: a replica that refuses (shutting down, crashed)
                    # is answered by another before the buckets count as missing.
                    tried = {sid for asked, _, _ in tasks.values() for sid in asked}
                    cover = failover_cover(t.buckets, t.alternates, tried)
                    if cover and classify_shard_error(exc) is Decision.TOLERATE:
                        retry = asyncio.ensure_future(
                            self._attempt_cover(
                                cover, t.alternates, tried, index, queries, deadline
                            )
                        )
                        tasks[retry] = ([sid for sid, _, _ in cover], False, True)
                        pending.add(retry)
            raise errors[0]
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
