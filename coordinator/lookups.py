"""BatchGetEmbeddings: fetch stored records by key, with a status per key,
as arrays (`core.embedding_columns`).

Each bucket is read from its first serving replica; a replica that is
unreachable is answered for by the failover rule searches use
(`coordinator.failover`). Where several shards answer for one key (centroid
placement asks them all; a cover may overlap) the answers are reconciled by
`core.embedding_columns.merge`; records past the family's TTL read as
missing.

Per-key misses are statuses, never an error for the request (DESIGN §8):
keys whose shard is down, refuses, has no serving replica or does not
answer in time are `unavailable`, the others answered normally. Only
request-level problems fail the call: an unknown embedding version, access,
too many keys, a malformed key, or an error every shard would give
(`coordinator.partial`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Sequence

import numpy as np
import numpy.typing as npt

from coordinator import metrics
from coordinator.access import check_access, own_keys
from coordinator.config import Limits
from coordinator.failover import alternates, failover_cover
from coordinator.fanout import FanoutSettings
from coordinator.hedging import HedgeTimer, all_answers, counted, hedged_answer
from coordinator.model import Access
from coordinator.partial import Decision, classify_shard_error
from coordinator.replicas import ReplicaTracker
from coordinator.shard import ShardFactory
from coordinator.snapshots import RegistryView
from coordinator.writes import now_micros
from core import runtime as serving
from core.domain import EntityKey, VersionRef
from core.embedding_columns import EmbeddingColumns, expire, reconcile, unanswered
from core.errors import DeadlineExceeded, InvalidArgument, Unavailable
from registry.model import IndexVersion, Placement, Status
from registry.placement import tenant_buckets_of
from registry.snapshot import Snapshot

Positions = npt.NDArray[np.int64]
Answer = tuple[Positions, EmbeddingColumns]


def primaries(
    snap: Snapshot, placement: Placement, tracker: ReplicaTracker
) -> tuple[dict[str, list[int]], list[int]]:
    """Each bucket's replica to ask → the buckets it answers for; and the
    buckets with no serving replica (their keys are unavailable). The first
    serving replica in placement order, least busy first, one that failed
    avoided for its cool-down (`ReplicaTracker.choose`), as feature reads."""
    out: dict[str, list[int]] = {}
    orphans = []
    for bucket, replicas in enumerate(placement.buckets):
        serving = [s for s in replicas if snap.serving_shard(s) is not None]
        sid = tracker.choose(serving, by_position=True)
        if sid is None:
            orphans.append(bucket)
        else:
            out.setdefault(sid, []).append(bucket)
    return out, orphans


class Lookups:
    def __init__(
        self,
        registry: RegistryView,
        shards: ShardFactory,
        limits: Limits,
        fanout: FanoutSettings | None = None,
        tracker: ReplicaTracker | None = None,
    ) -> None:
        self.registry = registry
        self.shards = shards
        self.limits = limits
        self.fanout = fanout or FanoutSettings()
        self.tracker = tracker or ReplicaTracker()
        self.hedges = HedgeTimer(self.fanout.hedge)

    async def batch_get(
        self,
        access: Access,
        embedding: VersionRef,
        keys: Sequence[EntityKey],
        include_vectors: bool,
        timeout: float,
        include_attributes: bool = False,
    ) -> tuple[list[EntityKey], EmbeddingColumns]:
        """The keys (owned: tenant and type filled in) and one answer per
        key, in request order, from the embedding version's serving index
        version (`lookup_index`)."""
        snap, family, indexes = await self.registry.embedding_indexes(
            embedding, tenant_id=access.tenant_id
        )
        return await self.read_index(
            access, snap, lookup_index(indexes), keys, include_vectors, timeout, include_attributes
        )

    async def read_index(
        self,
        access: Access,
        snap: Snapshot,
        index: IndexVersion,
        keys: Sequence[EntityKey],
        include_vectors: bool,
        timeout: float,
        include_attributes: bool = False,
    ) -> tuple[list[EntityKey], EmbeddingColumns]:
        """`batch_get` from the index version named (evaluation measures
        the rows one version holds): access checked on its family."""
        family = snap.family(index.embedding.name)
        check_access(access, family, snap)
        owned = own_keys(keys, access, family, "lookup", self.limits.input)
        width = family.dimension if include_vectors else 0
        _check_answer_size(len(owned), width)
        loop = asyncio.get_running_loop()
        # One deadline for the request, a re-read on a fresh snapshot included.
        deadline = loop.time() + max(0.001, timeout - self.fanout.margin(timeout))

        async def fetch(snap: Snapshot) -> tuple[list[Answer], bool]:
            read = _Read(self, snap, index, owned, include_vectors, include_attributes, deadline)
            plan, orphans = primaries(snap, read.placement, self.tracker)
            parts = await asyncio.gather(
                *(
                    read.ask(sid, snap.shards[sid].address, held, {sid})
                    for sid, held in plan.items()
                )
            )
            answers = [a for part in parts for a in part]
            if orphans:
                answers.append(read.unavailable(orphans))
            return answers, read.refused or bool(orphans)

        answers, refused = await fetch(snap)
        if refused and loop.time() < deadline:
            # A shard that moved (restarted on a new address) refuses at the
            # old one, and one re-registering may be missing from a snapshot
            # a moment old: once more on a fresh snapshot, if shards moved,
            # within what is left of the deadline. What the first read found
            # stays (`reconcile` keeps the better answer of a key).
            fresh = await self.registry.moved(snap, deadline)
            if fresh is not None:
                answers += (await fetch(fresh))[0]
        found = reconcile(answers, len(owned), width)
        return owned, expire(found, family.expiry_seconds, now_micros())


# Which index version of an embedding version a lookup reads: one that serves
# first — writes reach every version, but one created later (a new kind being
# tried, still building) lacks the rows written before it until backfilled,
# and reading the first by name answered those keys `missing`.
_READ_ORDER = {
    Status.PRODUCTION: 0,
    Status.READY: 1,
    Status.DEPRECATED: 2,
    Status.VALIDATING: 3,
    Status.BUILDING: 4,
}


def lookup_index(indexes: Sequence[IndexVersion]) -> IndexVersion:
    """The version a lookup reads (ties: the registry's order, by name)."""
    return min(indexes, key=lambda ix: _READ_ORDER.get(ix.status, len(_READ_ORDER)))


class _Read:
    """One lookup request's reads on one snapshot."""

    def __init__(
        self,
        lookups: Lookups,
        snap: Snapshot,
        index: IndexVersion,
        keys: list[EntityKey],
        include_vectors: bool,
        include_attributes: bool,
        deadline: float,
    ) -> None:
        self.shards, self.tracker, self.hedges = lookups.shards, lookups.tracker, lookups.hedges
        self.snap, self.index = snap, index
        self.placement = snap.placement(index.ref)
        self.keys = keys
        # With centroid placement the bucket depends on the vector: every
        # key is asked of every shard (bucket -1: whichever holds it).
        if index.placement == "centroid" or not keys:
            self.buckets = np.full(len(keys), -1, dtype=np.int64)
        else:
            tenant = snap.tenants.get(keys[0].tenant_id)  # a lookup's keys share one
            self.buckets = tenant_buckets_of(
                keys[0].tenant_id,
                [k.entity_id for k in keys],
                index.num_buckets,
                tenant.buckets if tenant else (),
            )
        self.include_vectors, self.include_attributes = include_vectors, include_attributes
        self.deadline = deadline
        # Hedged only where every key has a bucket another replica holds.
        self.hedgeable = bool(keys) and self.buckets[0] >= 0 and len(self.placement.buckets[0]) > 1
        self.width = snap.family(index.embedding.name).dimension if include_vectors else 0
        self.refused = False

    def positions(self, held: Sequence[int]) -> Positions:
        # A table by bucket (its last entry, False, is what -1 reads).
        table = np.zeros(self.index.num_buckets + 1, dtype=np.bool_)
        table[list(held)] = True
        return np.flatnonzero((self.buckets < 0) | table[self.buckets])

    def unavailable(self, held: Sequence[int]) -> Answer:
        positions = self.positions(held)
        return positions, unanswered(len(positions), self.width)

    async def _attempt(self, sid: str, address: str, positions: Positions) -> EmbeddingColumns:
        """One call, counted by the replica tracker (in flight, latency, a
        failure's cool-down) and timed for hedging."""
        timeout = self.deadline - asyncio.get_running_loop().time()
        if timeout <= 0:
            raise DeadlineExceeded(f"no time left to ask shard {sid}")
        # The call's deadline bounds it (DEADLINE_EXCEEDED past the budget).
        return await counted(
            self.tracker,
            self.hedges,
            sid,
            lambda: self.shards(sid, address).batch_get(
                self.index.ref,
                [self.keys[p] for p in positions.tolist()],
                self.include_vectors,
                timeout,
                include_attributes=self.include_attributes,
            ),
        )

    async def _hedged(
        self, sid: str, address: str, held: Sequence[int], tried: set[str], delay: float
    ) -> list[Answer]:
        """`sid`'s answer; past `delay` the same keys are also asked of a
        cover of the other replicas, and the first complete answer wins."""
        positions = self.positions(held)
        primary = asyncio.ensure_future(self._attempt(sid, address, positions))
        shares: list[Positions] = []

        def start_hedge() -> Awaitable[list[EmbeddingColumns]] | None:
            others = tried | {sid}
            cover = failover_cover(
                held, alternates(self.snap, self.placement, held, others), others
            )
            if not cover:
                return None
            # Members whose buckets hold none of the keys are not asked (a
            # call of no keys, and its near-zero latency in their p95).
            asked = [(alt, a, p) for alt, a, share in cover if len(p := self.positions(share))]
            shares.extend(p for _, _, p in asked)
            return all_answers([self._attempt(alt, a, p) for alt, a, p in asked])

        try:
            answers = await hedged_answer(
                primary,
                delay,
                start_hedge,
                metrics.LOOKUP_HEDGES,
                functools.partial(self.tracker.outran, sid),
            )
            if answers is not None:
                return list(zip(shares, answers, strict=True))
            return [(positions, await primary)]
        finally:
            if not primary.done():
                primary.cancel()

    async def ask(
        self, sid: str, address: str, held: Sequence[int], tried: set[str]
    ) -> list[Answer]:
        """Answers for the keys of `held` buckets, from `sid` or, when it
        cannot answer, from the replicas the failover rule picks; keys no
        one answered for are unavailable. A call past the shard's p95 is
        hedged (`coordinator.hedging`)."""
        positions = self.positions(held)
        if not len(positions):
            return []
        remaining = self.deadline - asyncio.get_running_loop().time()
        delay = self.hedges.delay(sid, remaining) if self.hedgeable else None
        try:
            if delay is not None:
                return await self._hedged(sid, address, held, tried, delay)
            return [(positions, await self._attempt(sid, address, positions))]
        except Exception as exc:  # noqa: BLE001 - classified just below
            if classify_shard_error(exc) is Decision.ABORT:
                raise
            if isinstance(exc, DeadlineExceeded):
                # Too late to ask anyone else.
                return [(positions, unanswered(len(positions), self.width))]
            self.refused |= isinstance(exc, Unavailable)
            candidates = alternates(self.snap, self.placement, held, tried)
            # Buckets no other replica serves are unavailable; the others are
            # asked of a cover of replicas, the rule searches use.
            coverable = sorted({b for _, _, bs in candidates for b in bs})
            lost = [b for b in held if b not in coverable]
            cover = failover_cover(coverable, candidates, tried) or []
            # Each member's own failover may ask its siblings (they hold
            # other buckets too): excluded, a third replica answering in the
            # same request was never asked for a failed sibling's keys.
            parts = await asyncio.gather(
                *(self.ask(alt, addr, share, tried | {alt}) for alt, addr, share in cover)
            )
            answers = [a for part in parts for a in part]
            if lost:
                answers.append(self.unavailable(lost))
            return answers


# Room for the vectors of one answer, the rest of the message (keys, statuses,
# versions, attributes) aside.
ANSWER_VECTOR_BYTES = (serving.MAX_MESSAGE_MB - 4) * 1024 * 1024


def _check_answer_size(keys: int, dimension: int) -> None:
    """Refused before any shard is asked: 10,000 keys of 2,048 dimensions are
    82 MB of vectors, past what one answer may carry — the shards did the
    work, the coordinator failed to send it ("Sent message larger than max",
    RESOURCE_EXHAUSTED, which callers retry) after ten seconds."""
    size = keys * dimension * 4
    if size > ANSWER_VECTOR_BYTES:
        most = ANSWER_VECTOR_BYTES // (dimension * 4)
        raise InvalidArgument(
            f"lookup of {keys} keys × {dimension} dimensions: {size / 1e6:.0f} MB of vectors; "
            f"one answer carries at most {serving.MAX_MESSAGE_MB} MiB: ask for at most "
            f"{most} keys per call, or without vectors"
        )
