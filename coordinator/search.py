"""One search's trip through the shards: plan (a replica per bucket, tenant
buckets only), order by score bound, fan out in waves with per-shard
deadlines and hedging, skip what cannot matter, tolerate what failed.

The logic sees shards only through the `Shard` protocol, so it runs the same
against in-memory shards in unit tests and real processes in integration tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from coordinator import metrics
from coordinator.calibration import calibrate
from coordinator.exclusion import BucketStats, excludes
from coordinator.fanin import Execution, QueryFanin, numbered
from coordinator.fanout import (
    FanoutSettings,
    Target,
    WavePolicy,
    can_skip,
    order_by_bound,
    plan_targets,
    waves,
)
from coordinator.merge import Hit, merge_ranked, merge_ranked_many
from coordinator.model import ShardAnswer, ShardBounds, ShardQuery
from coordinator.partial import Decision, classify_shard_error
from coordinator.replicas import ReplicaTracker
from coordinator.shard import ShardFactory
from coordinator.shard_calls import Outcome, ShardCaller, result_of
from core import tracing
from core.domain import VersionRef
from core.filters import Filter
from registry.model import IndexVersion, Placement
from registry.snapshot import Snapshot

# (shard_id, index, query vectors as rows) → per row an upper bound on any
# score the shard can return for that query, with the write sequence they
# hold for, or None when the shard published no summary. One search asks
# with one row, a SearchBatch with all of its queries: a row's bound must not
# depend on the rows beside it.
BoundsProvider = Callable[[str, VersionRef, np.ndarray], ShardBounds | None]


def no_bounds(shard_id: str, index: VersionRef, vectors: np.ndarray) -> ShardBounds | None:
    return None


# (index, bucket) → (min/max per numeric attribute, tenants with rows) over
# the bucket, or None when unknown.
StatsProvider = Callable[[VersionRef, int], tuple[BucketStats, frozenset[str]] | None]


def no_stats(index: VersionRef, bucket: int) -> tuple[BucketStats, frozenset[str]] | None:
    return None


def _pinned(query: ShardQuery, watermark: int | None) -> ShardQuery:
    return query if watermark is None else dataclasses.replace(query, max_sequence=watermark)


class SearchExecutor:
    def __init__(
        self,
        shards: ShardFactory,
        tracker: ReplicaTracker,
        bounds: BoundsProvider = no_bounds,
        settings: FanoutSettings | None = None,
        stats: StatsProvider = no_stats,
        wave_policy: WavePolicy | None = None,
    ) -> None:
        self.shards = shards
        self.tracker = tracker
        self.bounds = bounds
        self.settings = settings or FanoutSettings()
        self.caller = ShardCaller(shards, tracker, self.settings)
        self.stats = stats
        self.wave_policy = wave_policy or WavePolicy()

    def _deadline(self, timeout: float) -> float:
        """`timeout`: how long the shard calls may take from now. The request
        keeps its margin for merging and answering (`FanoutSettings.calls_by`)
        and passes what is left of ONE deadline, on a second run too."""
        return asyncio.get_running_loop().time() + max(0.0, timeout)

    async def run(
        self,
        snap: Snapshot,
        index: IndexVersion,
        placement: Placement,
        query: ShardQuery,
        buckets: Sequence[int],
        timeout: float,
        route: str = "",
        pins: dict[str, tuple[tuple[int, ...], int | None]] | None = None,
    ) -> Execution:
        deadline = self._deadline(timeout)
        # Exact exclusion: buckets whose min/max rule the filter out are answered
        # (empty) without a call, and are not missing.
        watermarks: dict[str, int] = {}
        if pins is None:
            wanted = [b for b in buckets if not self._excluded(index.ref, b, query)]
            targets, unavailable = plan_targets(snap, placement, self.tracker, wanted)
        else:
            # A later page: the replicas and write sequences the first page
            # pinned; a bucket no pin covers (its shard failed on page 1) is
            # missing here too — its hits cannot join the order mid-way.
            covered = {b for bs, _ in pins.values() for b in bs}
            targets, unavailable = [], [b for b in buckets if b not in covered]
            for sid, (pinned, seq) in pins.items():
                member = snap.serving_shard(sid)
                if member is None:
                    unavailable.extend(pinned)
                else:
                    targets.append(Target(sid, member.address, pinned))
                    if seq is not None:  # None: an older coordinator's cursor
                        watermarks[sid] = seq
        fanin = self._fanin(self._bounds(index, [query], targets), 0, unavailable)
        plan = self._waves(index, fanin.bounds, targets)
        return await self._fan_out(
            index, query, plan, fanin, watermarks, len(buckets), deadline, route
        )

    async def run_many(
        self,
        snap: Snapshot,
        index: IndexVersion,
        placement: Placement,
        queries: Sequence[ShardQuery],
        buckets: Sequence[int],
        timeout: float,
        route: str = "",
    ) -> list[Execution]:
        """`run` for many first-page queries of one index version (a
        SearchBatch): queries bound for the same shards in one wave share one
        call per shard — one task, one hedge, one failover for all — instead
        of a call, a task and a wait per query and shard. Each query gets the
        Execution `run` would give it (hits, trace, completeness); a query
        that goes in waves is fanned out on its own."""
        deadline = self._deadline(timeout)
        stats = {b: self.stats(index.ref, b) for b in buckets}
        groups: dict[tuple[int, ...], list[int]] = {}
        # The buckets a query may touch depend only on its tenant and filter
        # (filters are frozen dataclasses of tuples: hashable).
        seen: dict[tuple[str, Filter | None], tuple[int, ...]] = {}
        for i, q in enumerate(queries):
            wanted = seen.get((q.tenant_id, q.filter))
            if wanted is None:
                wanted = tuple(b for b in buckets if not self._excluded(index.ref, b, q, stats))
                seen[(q.tenant_id, q.filter)] = wanted
            groups.setdefault(wanted, []).append(i)
        jobs: list[Awaitable[list[tuple[int, Execution]]]] = []
        for wanted, members in groups.items():
            targets, unavailable = plan_targets(snap, placement, self.tracker, wanted)
            together: list[tuple[int, QueryFanin, list[Target]]] = []
            bounds = self._bounds(index, [queries[i] for i in members], targets)
            for j, i in enumerate(members):
                fanin = self._fanin(bounds, j, unavailable)
                plan = self._waves(index, fanin.bounds, targets)
                if len(plan) > 1:
                    alone = self._fan_out(
                        index, queries[i], plan, fanin, {}, len(buckets), deadline, route
                    )
                    jobs.append(numbered(i, alone))
                else:
                    together.append((i, fanin, plan[0]))
            if together:
                jobs.append(
                    self._fan_out_together(
                        index, queries, together, targets, len(buckets), deadline, route
                    )
                )
        out: list[Execution | None] = [None] * len(queries)
        for part in await asyncio.gather(*jobs):
            for i, execution in part:
                out[i] = execution
        assert all(e is not None for e in out)
        return out  # type: ignore[return-value]  # every position was filled just above

    async def _fan_out_together(
        self,
        index: IndexVersion,
        queries: Sequence[ShardQuery],
        together: list[tuple[int, QueryFanin, list[Target]]],
        targets: list[Target],
        buckets: int,
        deadline: float,
        route: str,
    ) -> list[tuple[int, Execution]]:
        """One call per target carrying every query of `together` (each
        with its fan-in and its targets in bound order, all one wave)."""
        batch = [queries[i] for i, _, _ in together]
        calls = {
            t.shard_id: asyncio.ensure_future(
                self.caller.call(t, index.ref, batch, deadline, route)
            )
            for t in targets
        }
        if calls:
            try:
                await asyncio.wait(calls.values())
            except asyncio.CancelledError:
                for task in calls.values():
                    task.cancel()
                raise
        outcomes = {sid: result_of(task) for sid, task in calls.items()}
        for outcome in outcomes.values():
            if isinstance(outcome, BaseException) and (
                classify_shard_error(outcome) is Decision.ABORT
            ):
                raise outcome
        for j, (_, fanin, ordered) in enumerate(together):
            # In bound order, as `run` sends them (deterministic traces).
            for t in ordered:
                self._settle(fanin, index, t, 0, outcomes[t.shard_id], j)
        with tracing.span("coordinator.merge", queries=len(together)):
            started = time.perf_counter()
            merged = merge_ranked_many(
                [fanin.answers for _, fanin, _ in together], [queries[i].k for i, _, _ in together]
            )
            # One merge for the batch: each of its queries waited for all of it.
            spent = time.perf_counter() - started
        for _, fanin, _ in together:
            fanin.merge_seconds += spent
        return [
            (i, fanin.execution(hits, buckets))
            for (i, fanin, _), hits in zip(together, merged, strict=True)
        ]

    def _bounds(
        self, index: IndexVersion, queries: Sequence[ShardQuery], targets: Sequence[Target]
    ) -> dict[str, ShardBounds | None]:
        """Per target, its bounds for the queries: one provider call per target."""
        vectors = np.stack([q.vector for q in queries])
        return {t.shard_id: self.bounds(t.shard_id, index.ref, vectors) for t in targets}

    @staticmethod
    def _fanin(
        bounds: dict[str, ShardBounds | None], j: int, unavailable: Sequence[int]
    ) -> QueryFanin:
        """The `j`-th query's fan-in: its bound per target, and the write
        sequence each bound holds for (a skipped shard's pin)."""
        return QueryFanin(
            {sid: None if b is None else float(b.scores[j]) for sid, b in bounds.items()},
            list(unavailable),
            {sid: b.sequence for sid, b in bounds.items() if b is not None},
        )

    def _waves(
        self, index: IndexVersion, bounds: dict[str, float | None], targets: Sequence[Target]
    ) -> list[list[Target]]:
        """The targets ordered by bound, in waves where bounds have been
        skipping shards (`WavePolicy`: asked only when this query could
        have more than one wave), else in one."""
        known = {sid: b for sid, b in bounds.items() if b is not None}
        ordered = order_by_bound(targets, known)
        multi = bool(known) and len(ordered) > self.settings.first_wave
        if multi and self.wave_policy.use_waves(index.ref):
            return waves(ordered, self.settings.first_wave)
        return [ordered]

    def _settle(
        self,
        fanin: QueryFanin,
        index: IndexVersion,
        t: Target,
        wave: int,
        outcome: Outcome | BaseException,
        j: int = 0,
    ) -> None:
        """One call's outcome for the `j`-th query it carried: a failure the
        request survives (the caller raised the others), or its answer,
        calibrated where it was approximate."""
        if isinstance(outcome, BaseException):
            fanin.fail(t, wave, outcome)
            return
        parts, latency, hedged = outcome
        for answered_by, buckets, answers in parts:
            if isinstance(answers, BaseException):  # a failover member's buckets
                fanin.fail(t, wave, answers, answered_by, buckets)
                continue
            answer = answers[j]
            if answer.approximate:
                answer = ShardAnswer.of(
                    calibrate(answer.hits, answer.reference_scores),
                    answer.candidates,
                    answer.sequence,
                )
            fanin.answer(t, wave, answer, latency, hedged, answered_by, buckets)

    async def _fan_out(
        self,
        index: IndexVersion,
        query: ShardQuery,
        plan: list[list[Target]],
        fanin: QueryFanin,
        watermarks: dict[str, int],
        buckets: int,
        deadline: float,
        route: str,
    ) -> Execution:
        hits: list[Hit] = []
        # Calls in flight, with the wave each was sent in. A wave that has not
        # answered within its patience lets the next wave go (its calls stay
        # in flight): a slow shard early in the order must not hold the shards
        # after it until the deadline, and then leave them no time at all.
        pending: dict[asyncio.Future[Outcome], tuple[Target, int]] = {}
        for wave_no, wave in enumerate(plan):
            for t in wave:
                bound = fanin.bounds[t.shard_id]
                if can_skip(math.inf if bound is None else bound, hits, query.k):
                    fanin.skip(t, wave_no)
                    continue
                call = self.caller.call(
                    t, index.ref, [_pinned(query, watermarks.get(t.shard_id))], deadline, route
                )
                pending[asyncio.ensure_future(call)] = (t, wave_no)
            last = wave_no == len(plan) - 1
            patience = None if last else self._patience(deadline)
            done: set[asyncio.Future[Outcome]] = set()
            if pending:
                try:
                    done, _ = await asyncio.wait(pending, timeout=patience)
                except asyncio.CancelledError:
                    for task in pending:
                        task.cancel()
                    raise
            # In the order the calls were sent (deterministic traces).
            for task in [f for f in pending if f in done]:
                t, sent_in = pending.pop(task)
                outcome = result_of(task)
                if (
                    isinstance(outcome, BaseException)
                    and classify_shard_error(outcome) is Decision.ABORT
                ):
                    for other in pending:
                        other.cancel()
                    raise outcome
                self._settle(fanin, index, t, sent_in, outcome)
            with tracing.span("coordinator.merge", answers=len(fanin.answers)):
                started = time.perf_counter()
                hits = merge_ranked(fanin.answers, query.k)
                fanin.merge_seconds += time.perf_counter() - started
        if len(plan) > 1:
            self.wave_policy.record(index.ref, sum(map(len, plan[1:])), fanin.skipped)
            rate = self.wave_policy.skip_rate(index.ref)
            if rate is not None:
                metrics.labeled(metrics.WAVE_SKIP_RATE, str(index.ref)).set(rate)
        return fanin.execution(hits, buckets)

    def _patience(self, deadline: float) -> float:
        """How long a wave may hold the next one: a share of the remaining
        budget. (Not from the shards' p95s: sorting their latency windows
        for every wave of every query cost more than the rest of the wave.)"""
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        return remaining * self.settings.wave_patience_share

    def _excluded(
        self,
        index: VersionRef,
        bucket: int,
        query: ShardQuery,
        stats: dict[int, tuple[BucketStats, frozenset[str]] | None] | None = None,
    ) -> bool:
        """Exact only: the bucket holds no row of the tenant, or its ranges
        rule the filter out (see coordinator.exclusion). `stats`: the
        buckets' stats read once for a batch of queries."""
        info = stats[bucket] if stats is not None else self.stats(index, bucket)
        if info is None:
            return False
        ranges, tenants = info
        return query.tenant_id not in tenants or excludes(query.filter, ranges)
