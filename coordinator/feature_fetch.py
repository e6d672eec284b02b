"""Fetching a GetFeatures request's groups from the shards, with failover.

One call per shard carries every group it is asked. When a call fails for a
reason about the shard (down, shutting down, overloaded) its rows are asked
again of the other replicas of their buckets — a cover found by the rule
searches and lookups use (`coordinator.failover`) — within what is left of
the request's budget. Why: a shard that dies stays in the registry until its
lease expires (seconds), and a restart takes as long as loading its rows;
without failover a feature group with two replicas per bucket would still
answer `unavailable` for a third of the candidates all that time. Rows that
no other replica holds, or that no time is left for, get the failed shard's
missing reason (`unavailable`, `timeout`); the request itself never fails
for a shard (DESIGN §8).
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from coordinator import metrics
from coordinator.failover import alternates, failover_cover
from coordinator.hedging import HedgeTimer, all_answers, counted, hedged_answer
from coordinator.metrics import labeled
from coordinator.model import FeatureBlock, GroupFetch
from coordinator.partial import Decision, classify_shard_error
from coordinator.replicas import ReplicaTracker
from coordinator.shard import ShardFactory
from core.errors import DeadlineExceeded
from registry.feature_catalog import GroupRead
from registry.features import MissingReason
from registry.placement import feature_placement_ref
from registry.snapshot import Snapshot

# Below this much time left a failover call could not answer: its rows are
# answered `timeout` at once (a first call is always sent).
MIN_FAILOVER_SECONDS = 0.002
# A call is hedged after its shard's p95 of feature calls, never sooner.
MIN_HEDGE_SECONDS = 0.002


def missing_reason_of(exc: BaseException) -> MissingReason:
    """What a tolerated shard failure means for its entities' values."""
    if isinstance(exc, DeadlineExceeded):
        return MissingReason.TIMEOUT
    return MissingReason.UNAVAILABLE


def _replicated(snap: Snapshot, call: Call) -> bool:
    """Whether the call's group has more than one replica per bucket."""
    ref = call.read.schema.ref
    placement = snap.placements.get(feature_placement_ref(ref.name, ref.version))
    return placement is not None and bool(placement.buckets) and len(placement.buckets[0]) > 1


class Call:
    """One group asked of one shard: the rows (positions among the request's
    entities of the group's type) it answers for, and each row's bucket."""

    __slots__ = ("read", "rows", "fetch", "buckets")

    def __init__(
        self, read: GroupRead, rows: np.ndarray, fetch: GroupFetch, buckets: np.ndarray
    ) -> None:
        self.read, self.rows, self.fetch, self.buckets = read, rows, fetch, buckets


class Fetches:
    """One request's calls: per shard, the groups it is asked."""

    def __init__(self) -> None:
        self.by_shard: dict[tuple[str, str], list[Call]] = defaultdict(list)
        # Some bucket had no serving replica in the snapshot routed on.
        self.unsure = False

    def add(
        self,
        target: tuple[str, str],
        read: GroupRead,
        rows: np.ndarray,
        buckets: np.ndarray,
        ids: Sequence[str],
        positions: np.ndarray,
    ) -> None:
        """Asks `target` for `rows` of `read`, whose entity ids are `ids` at
        `positions`. Another group of the type asked of the shard for the
        same rows shares its id list: it is built once and travels once
        (GroupFetch.same_entities_as)."""
        calls = self.by_shard[target]
        etype = read.schema.group.entity_type
        twin = next((c for c in calls if c.read.schema.group.entity_type == etype
                     and np.array_equal(c.rows, rows)), None)  # fmt: skip
        entity_ids = (
            twin.fetch.entity_ids if twin is not None else [ids[p] for p in positions.tolist()]
        )
        calls.append(
            Call(read, rows, GroupFetch(read.schema.ref, read.features, entity_ids), buckets)
        )


# Wire columns for rows not read: (group read, reason, how many) → columns.
Missing = Callable[[GroupRead, MissingReason, int], object]


class FeatureFetcher:
    def __init__(
        self, shards: ShardFactory, tracker: ReplicaTracker, missing: Missing, hedge: bool = True
    ) -> None:
        self.shards = shards
        self.tracker = tracker
        self.missing = missing
        self.hedges = HedgeTimer(hedge, MIN_HEDGE_SECONDS, MIN_FAILOVER_SECONDS)

    def _block(self, call: Call, columns: object) -> FeatureBlock:
        read = call.read
        return FeatureBlock(
            read.schema.ref, read.schema.group.entity_type, read.outputs, call.rows, columns
        )

    def _unread(self, call: Call, reason: MissingReason) -> FeatureBlock:
        return self._block(call, self.missing(call.read, reason, len(call.rows)))

    async def fetch(
        self,
        snap: Snapshot,
        tenant_id: str,
        fetches: Fetches,
        request_time: int,
        personalized: bool,
        budget: float,
    ) -> list[FeatureBlock]:
        """Every call's blocks; a shard that failed in a way the request
        survives is asked of other replicas, or answered for with its
        missing reason; one slower than its p95 is hedged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget

        async def asks(
            by_shard: dict[tuple[str, str], list[Call]], tried: frozenset[str]
        ) -> list[FeatureBlock]:
            parts = await asyncio.gather(
                *(ask(sid, addr, calls, tried) for (sid, addr), calls in by_shard.items())
            )
            return [b for part in parts for b in part]

        async def recover(
            sid: str, calls: list[Call], exc: BaseException, tried: frozenset[str]
        ) -> list[FeatureBlock]:
            """The blocks of `calls` after `sid` failed them with `exc`."""
            if classify_shard_error(exc) is Decision.ABORT:
                raise exc
            reason = missing_reason_of(exc)
            if reason is MissingReason.TIMEOUT:
                # The call's deadline was the request's: too late to ask anyone else.
                return [self._unread(c, reason) for c in calls]
            tried = tried | {sid}
            blocks, again = self._failover(snap, calls, tried, reason)
            if again:
                labeled(metrics.FEATURE_FAILOVERS, sid).inc()
            return blocks + await asks(again, tried)

        async def ask(
            sid: str, addr: str, calls: list[Call], tried: frozenset[str]
        ) -> list[FeatureBlock]:
            remaining = deadline - loop.time()
            if tried and remaining < MIN_FAILOVER_SECONDS:
                return [self._unread(c, MissingReason.TIMEOUT) for c in calls]
            call = self._call(sid, addr, tenant_id, calls, request_time, personalized, remaining)
            replicated = any(_replicated(snap, c) for c in calls)
            delay = self.hedges.delay(sid, remaining) if replicated else None
            if delay is None:  # no task, no timer: the common path costs nothing more
                try:
                    answer = await call
                except Exception as exc:  # noqa: BLE001 - classified by recover
                    return await recover(sid, calls, exc, tried)
                return [self._block(c, cols) for c, cols in zip(calls, answer, strict=True)]
            primary = asyncio.ensure_future(call)
            hedged: list[Call] = []

            def start_hedge() -> Awaitable[list[FeatureBlock]] | None:
                plan, again = self._hedge_plan(snap, calls, tried | {sid})
                hedged.extend(plan)
                if not again:
                    return None
                return self._hedge(again, tenant_id, request_time, personalized, deadline)

            try:
                blocks = await hedged_answer(
                    primary,
                    delay,
                    start_hedge,
                    metrics.FEATURE_HEDGES,
                    functools.partial(self.tracker.outran, sid),
                )
                # Without a hedge's answer the primary answers every call;
                # with one, the calls no other replica holds.
                rest = (
                    calls
                    if blocks is None
                    else [c for c in calls if all(c is not h for h in hedged)]
                )
                if not rest:
                    return blocks or []
                try:
                    answer = await primary
                except Exception as exc:  # noqa: BLE001 - classified by recover
                    return (blocks or []) + await recover(sid, rest, exc, tried)
                mine = dict(zip(map(id, calls), answer, strict=True))
                return (blocks or []) + [self._block(c, mine[id(c)]) for c in rest]
            finally:
                if not primary.done():
                    primary.cancel()

        return await asks(fetches.by_shard, frozenset())

    async def _hedge(
        self,
        again: dict[tuple[str, str], list[Call]],
        tenant_id: str,
        request_time: int,
        personalized: bool,
        deadline: float,
    ) -> list[FeatureBlock]:
        """The hedged calls' blocks, each from one attempt at another replica."""
        remaining = deadline - asyncio.get_running_loop().time()
        answers = await all_answers(
            [
                self._call(alt, addr, tenant_id, cs, request_time, personalized, remaining)
                for (alt, addr), cs in again.items()
            ]
        )
        return [
            self._block(c, cols)
            for cs, answer in zip(again.values(), answers, strict=True)
            for c, cols in zip(cs, answer, strict=True)
        ]

    async def _call(
        self,
        sid: str,
        addr: str,
        tenant_id: str,
        calls: list[Call],
        request_time: int,
        personalized: bool,
        timeout: float,
    ) -> list[object]:
        """The call, counted by the replica tracker: a shard that failed is
        avoided for its cool-down, and replicas are chosen least busy first."""
        # Past `timeout` the call fails DEADLINE_EXCEEDED: `timeout` values.
        return await counted(
            self.tracker,
            self.hedges,
            sid,
            lambda: self.shards(sid, addr).get_feature_columns(
                tenant_id, [c.fetch for c in calls], request_time, personalized, timeout
            ),
        )

    def _cover(
        self, snap: Snapshot, call: Call, tried: frozenset[str]
    ) -> tuple[list[tuple[tuple[str, str], np.ndarray]], np.ndarray]:
        """Who else answers for `call`'s rows: per replica of a cover (the
        rule of `coordinator.failover`), the positions in `call.rows` it
        answers for; and the positions no untried replica holds."""
        ref = call.read.schema.ref
        placement = snap.placement(feature_placement_ref(ref.name, ref.version))
        held = np.unique(call.buckets).tolist()
        candidates = alternates(snap, placement, held, tried)
        coverable = sorted({b for _, _, bs in candidates for b in bs})
        cover = failover_cover(coverable, candidates, tried) or []
        answered = np.zeros(len(call.rows), dtype=np.bool_)
        shares = []
        for alt, address, share in cover:
            mask = np.isin(call.buckets, share)
            answered |= mask
            shares.append(((alt, address), np.flatnonzero(mask)))
        return shares, np.flatnonzero(~answered)

    @staticmethod
    def _ask_of(again: Fetches, call: Call, target: tuple[str, str], picked: np.ndarray) -> None:
        rows, buckets = call.rows[picked], call.buckets[picked]
        again.add(target, call.read, rows, buckets, call.fetch.entity_ids, picked)

    def _failover(
        self, snap: Snapshot, calls: list[Call], tried: frozenset[str], reason: MissingReason
    ) -> tuple[list[FeatureBlock], dict[tuple[str, str], list[Call]]]:
        """For a failed shard's calls: blocks for the rows no untried replica
        holds, and the calls to send to a cover of replicas for the rest."""
        blocks: list[FeatureBlock] = []
        again = Fetches()
        for call in calls:
            shares, lost = self._cover(snap, call, tried)
            for target, picked in shares:
                self._ask_of(again, call, target, picked)
            if len(lost):
                rows, buckets = call.rows[lost], call.buckets[lost]
                blocks.append(self._unread(Call(call.read, rows, call.fetch, buckets), reason))
        return blocks, again.by_shard

    def _hedge_plan(
        self, snap: Snapshot, calls: list[Call], tried: frozenset[str]
    ) -> tuple[list[Call], dict[tuple[str, str], list[Call]]]:
        """The calls other replicas hold every row of (a group with one
        replica is never hedged), and the calls that ask those replicas."""
        hedged: list[Call] = []
        again = Fetches()
        for call in calls:
            shares, lost = self._cover(snap, call, tried)
            if len(lost) or not shares:
                continue
            hedged.append(call)
            for target, picked in shares:
                self._ask_of(again, call, target, picked)
        return hedged, again.by_shard
