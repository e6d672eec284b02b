"""The quorum-write protocol: every replica of a record's bucket gets the
write; the request succeeds once each bucket has `write_quorum` of them
(default: all).

`QuorumTally` is the rule, pure: it is fed replica outcomes in the order they
arrive and says when the quorum is met and what the request answers.
`run_quorum` is the driver that makes the calls and feeds it. Writes still
running when the quorum is met finish in the background; a replica that
misses them catches up from a peer before it serves again
(`shard_server.replication`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from coordinator import metrics
from coordinator.partial import Decision, classify_shard_error
from core.errors import Unavailable
from registry.features import FeatureGroup
from registry.model import IndexVersion, Placement, ShardMember
from registry.snapshot import Snapshot

Item = TypeVar("Item")


def replica_count(placement: Placement) -> int:
    return max(len(r) for r in placement.buckets)


def needed(quorum: int, replicas: int) -> int:
    """Acknowledgements a bucket needs: the quorum (0 = every replica),
    never more than there are replicas."""
    return min(quorum or replicas, replicas)


def write_members(
    snap: Snapshot, written: IndexVersion | FeatureGroup, bucket: int, placement: Placement
) -> list[ShardMember]:
    """The registered replicas of a bucket of an index version or feature
    group. With fewer than its write quorum registered the write is refused
    before anything is sent, rather than half-written."""
    replicas = placement.buckets[bucket]
    need = needed(written.write_quorum, len(replicas))
    out = [m for m in (snap.shards.get(s) for s in replicas) if m is not None]
    if len(out) < need:
        missing = [s for s in replicas if s not in snap.shards]
        what = "index" if isinstance(written, IndexVersion) else "feature group"
        raise Unavailable(
            f"bucket {bucket} of {what} {written.ref}: replica(s) {missing} not registered; "
            f"writes need {need} of {len(replicas)}"
        )
    return out


# replica shard ids → (their members, the buckets they share, what they get)
ReplicaSets = dict[tuple[str, ...], tuple[list[ShardMember], set[int], list[Item]]]


def replica_sets(
    snap: Snapshot,
    index: IndexVersion,
    placement: Placement,
    items: Sequence[tuple[int, Item]],
) -> ReplicaSets[Item]:
    """Groups (bucket, item) pairs by the replica set of their bucket."""
    sets: ReplicaSets[Item] = {}
    for bucket, item in items:
        members = write_members(snap, index, bucket, placement)
        entry = sets.setdefault(tuple(m.shard_id for m in members), (members, set(), []))
        entry[1].add(bucket)
        entry[2].append(item)
    return sets


def column_replica_sets(
    snap: Snapshot, index: IndexVersion | FeatureGroup, placement: Placement, buckets: np.ndarray
) -> dict[tuple[str, ...], tuple[list[ShardMember], set[int], np.ndarray]]:
    """`replica_sets` over a bucket array: per replica set (in the order its
    first row comes), its members, its buckets and the rows placed in them
    (in row order). The replicas of each distinct bucket are looked up once,
    not per row."""
    distinct, first = np.unique(buckets, return_index=True)
    sets: dict[tuple[str, ...], tuple[list[ShardMember], set[int]]] = {}
    ids: dict[tuple[str, ...], int] = {}
    set_of_bucket = np.empty(distinct.shape[0], dtype=np.int64)
    for i in np.argsort(first, kind="stable").tolist():
        b = int(distinct[i])
        members = write_members(snap, index, b, placement)
        name = tuple(m.shard_id for m in members)
        sets.setdefault(name, (members, set()))[1].add(b)
        set_of_bucket[i] = ids.setdefault(name, len(ids))
    set_of_row = set_of_bucket[np.searchsorted(distinct, buckets)]
    return {
        name: (members, bs, np.flatnonzero(set_of_row == ids[name]))
        for name, (members, bs) in sets.items()
    }


@dataclass
class QuorumTally:
    need: int
    buckets: frozenset[int]
    acks: Counter[int] = field(default_factory=Counter)
    written: int = 0
    ignored: int = 0
    errors: list[BaseException] = field(default_factory=list)
    _counted: set[Hashable] = field(default_factory=set)

    def ack(self, buckets: Iterable[int], group: Hashable | None, counts: tuple[int, int]) -> None:
        """A replica acknowledged a write for `buckets`. Calls of one group
        carry the same records to different replicas, so only the group's
        first acknowledgement is counted (None: the call counts nothing)."""
        for b in buckets:
            self.acks[b] += 1
        if group is not None and group not in self._counted:
            self._counted.add(group)
            self.written += counts[0]
            self.ignored += counts[1]

    def fail(self, exc: BaseException) -> None:
        self.errors.append(exc)

    @property
    def met(self) -> bool:
        return all(self.acks[b] >= self.need for b in self.buckets)

    def result(self) -> tuple[int, int]:
        """(written, ignored_stale), or the first replica's error (Unavailable
        when none failed outright) for a bucket short of its quorum."""
        short = sorted(b for b in self.buckets if self.acks[b] < self.need)
        if short:
            if self.errors:
                raise self.errors[0]
            raise Unavailable(f"buckets {short} got fewer than {self.need} acknowledgements")
        return self.written, self.ignored


@dataclass(frozen=True)
class ReplicaCall:
    """One write to one replica: the buckets it acknowledges (none for a
    move-delete) and the group whose counts it reports."""

    shard_id: str
    buckets: frozenset[int]
    run: Callable[[], Awaitable[tuple[int, int]]]
    group: Hashable | None = None
    # The same write sent to the shard at a given address (a restarted shard
    # comes back on a new one): how a repair reaches it where it is now.
    # None: only `run`.
    to: Callable[[str], Awaitable[tuple[int, int]]] | None = None
    # A call with no replica set of its own (a move-delete): the groups of
    # its request that must all be acknowledged before a repair retries it
    # (deleting a key's old copy is right only once its new one landed).
    after: frozenset[Hashable] = frozenset()


def replica_call(
    member: ShardMember,
    buckets: Iterable[int],
    group: Hashable | None,
    send: Callable[[str, str], Awaitable[tuple[int, int]]],
    after: frozenset[Hashable] = frozenset(),
) -> ReplicaCall:
    """A write to `member`: `send(shard_id, address)` makes it, to the
    member's address or, for a repair, to where the shard is registered then."""
    sid = member.shard_id
    return ReplicaCall(
        sid,
        frozenset(buckets),
        lambda: send(sid, member.address),
        group,
        lambda address: send(sid, address),
        after,
    )


# Waits before each retry of a replica's failed write: about 8 s in all.
REPAIR_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)


class ReplicaRepair:
    """Replica writes that failed for a reason about the shard (a timeout,
    an overload, a blip), retried in the background a few times.

    Why: a write that reached some replicas of a bucket and not another —
    acknowledged under a `write_quorum` below the replicas, or refused to
    the caller after reaching the others — leaves the replicas disagreeing
    until the row is written again or the lagging shard restarts (its
    catch-up copies newer rows). A shard that stayed up was never repaired.
    Retrying is safe: writes are versioned, so a late one that is older than
    what the replica holds by then is ignored; and only a write another
    replica of the set acknowledged is retried, so a retry brings a replica
    to its peers' state and never completes a write on one replica alone.

    A retry goes to the address the shard is registered at then
    (`address_of`), skipping an attempt while it is not registered: a shard
    killed mid-write comes back on a new address, and its catch-up copies
    only what its peers held when it ran — a write that reached a peer just
    after (the coordinator still had the old address, or the call was in
    flight) was lost to it for good before, found by the chaos soak as
    replicas disagreeing on a key.

    Bounded: at most `limit` writes are held for retry (each keeps its rows
    in memory); past it the oldest is abandoned — the newest matter most,
    the older ones' shards have often restarted and caught up — and closing
    abandons them all (a restart's catch-up covers what they would have done)."""

    def __init__(
        self,
        spawn: Callable[[Awaitable[None]], None],
        limit: int = 64,
        delays: Sequence[float] = REPAIR_DELAYS,
        address_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self.spawn, self.limit, self.delays = spawn, limit, tuple(delays)
        self.address_of = address_of
        self.closed = False
        # Retries in the order they began (the oldest is dropped first).
        self._retrying: dict[asyncio.Task[None], None] = {}

    @property
    def held(self) -> int:
        return len(self._retrying)

    def close(self) -> None:
        """Abandons every retry (at shutdown: nothing waits on them)."""
        self.closed = True
        for task in list(self._retrying):
            task.cancel()

    def failed(self, call: ReplicaCall, exc: BaseException, acked: set[Hashable]) -> None:
        """`call` failed with `exc`: retried later, unless the error is about
        the request (it would fail again), the call counts for no replica
        set and waits for none (`after`), or too many are held. `acked`: the replica sets
        of its request that some replica acknowledged, as they come in."""
        if classify_shard_error(exc) is not Decision.TOLERATE or self.closed:
            return
        if call.group is None and not call.after:
            return
        while self.held >= self.limit:
            oldest = next(iter(self._retrying))
            del self._retrying[oldest]
            oldest.cancel()
            metrics.REPLICA_REPAIRS.labels("dropped").inc()
        task = asyncio.ensure_future(self._retry(call, acked))
        self._retrying[task] = None
        task.add_done_callback(lambda t: self._retrying.pop(t, None))
        self.spawn(task)

    def _attempt(self, call: ReplicaCall) -> Awaitable[tuple[int, int]] | None:
        """The write to the shard where it is registered now (None: it is not)."""
        if self.address_of is None or call.to is None:
            return call.run()
        address = self.address_of(call.shard_id)
        return None if address is None else call.to(address)

    async def _retry(self, call: ReplicaCall, acked: set[Hashable]) -> None:
        try:
            for delay in self.delays:
                await asyncio.sleep(delay)
                if not (call.after <= acked if call.group is None else call.group in acked):
                    # No replica of the set has the write (yet): completing it
                    # on this one alone, seconds later — maybe after a peer
                    # restarted and caught up without it — would make the
                    # replicas disagree where they now agree. (A move-delete:
                    # not before every new copy of its keys landed.)
                    continue
                attempt = self._attempt(call)
                if attempt is None:
                    continue
                try:
                    await attempt
                except Exception as exc:  # noqa: BLE001 - classified just below
                    if classify_shard_error(exc) is not Decision.TOLERATE:
                        break
                    continue
                metrics.REPLICA_REPAIRS.labels("repaired").inc()
                return
            metrics.REPLICA_REPAIRS.labels("gave_up").inc()
        except asyncio.CancelledError:
            return  # closed, dropped, or the loop ended: abandoned, as documented


async def _settle(
    task: asyncio.Future[tuple[int, int]],
    call: ReplicaCall,
    repair: ReplicaRepair | None,
    acked: set[Hashable],
) -> None:
    """A write still out past the quorum, or when its caller gave up: a
    failure goes to the repair; an acknowledgement makes the failed calls of
    its replica set repairable."""
    try:
        await task
    except Exception as exc:  # noqa: BLE001 - tolerated, handed to the repair
        if repair is not None:
            repair.failed(call, exc, acked)
    else:
        if call.group is not None:
            acked.add(call.group)


async def _settle_then_send(
    out: dict[asyncio.Future[tuple[int, int]], ReplicaCall],
    held: Sequence[ReplicaCall],
    repair: ReplicaRepair | None,
    acked: set[Hashable],
    on_write: Callable[[str], None],
) -> None:
    """The caller gave up with writes out and calls held for them (`after`):
    once the writes settled, the held calls whose groups all landed are
    sent (and repaired like any other); the others are dropped."""
    await asyncio.gather(*(_settle(t, c, repair, acked) for t, c in out.items()))
    ready = [c for c in held if c.after <= acked]
    for c in ready:
        on_write(c.shard_id)
    await asyncio.gather(
        *(_settle(asyncio.ensure_future(c.run()), c, repair, acked) for c in ready)
    )


async def run_quorum(
    calls: Sequence[ReplicaCall],
    quorum: int,
    replicas: int,
    on_write: Callable[[str], None],
    background: Callable[[Awaitable[None]], None],
    repair: ReplicaRepair | None = None,
) -> tuple[int, int]:
    """Runs every call; returns once each bucket has its quorum. `on_write`
    hears of every shard written to (when sent and when acknowledged: its
    cached summary no longer bounds its rows); `background` takes the calls
    still running; `repair` retries the ones that fail.

    A call with an `after` set (a move-delete) is held back until every
    group in it was acknowledged somewhere, then sent: sent at once, a
    move-delete removed a key's acknowledged old copy while its new copy's
    write was failing, and the key was gone everywhere though the caller
    was told the write failed. Held calls whose groups never all land are
    dropped: nothing is deleted."""
    tally = QuorumTally(needed(quorum, replicas), frozenset().union(*(c.buckets for c in calls)))
    held = [c for c in calls if c.after]
    tasks: dict[asyncio.Future[tuple[int, int]], ReplicaCall] = {}
    # Replica sets some replica acknowledged (later ones too): only their
    # failed calls are repaired, and only once all of theirs landed are the
    # held calls sent.
    acked: set[Hashable] = set()

    def send(ready: Iterable[ReplicaCall]) -> set[asyncio.Future[tuple[int, int]]]:
        started: set[asyncio.Future[tuple[int, int]]] = set()
        for c in ready:
            on_write(c.shard_id)
            task = asyncio.ensure_future(c.run())
            tasks[task] = c
            started.add(task)
        return started

    def release() -> set[asyncio.Future[tuple[int, int]]]:
        ready = [c for c in held if c.after <= acked]
        held[:] = [c for c in held if not c.after <= acked]
        return send(ready)

    pending = send(c for c in calls if not c.after)
    try:
        while pending and not tally.met:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                call, exc = tasks[task], task.exception()
                if exc is not None:
                    tally.fail(exc)
                    if repair is not None:
                        repair.failed(call, exc, acked)
                    continue
                on_write(call.shard_id)
                tally.ack(call.buckets, call.group, task.result())
                if call.group is not None:
                    acked.add(call.group)
            pending |= release()
    except asyncio.CancelledError:
        # The caller gave up (its deadline, a cancelled RPC) with calls out:
        # they run on, and one that fails is repaired like any other — left
        # alone, a write that reached one replica and failed on the other
        # kept them disagreeing (the soak found it after a shard's restart).
        # The held calls wait for them.
        background(_settle_then_send({t: tasks[t] for t in pending}, held, repair, acked, on_write))
        raise
    # Why before the result: with the quorum short, nothing is pending (the
    # loop only stops early once it is met), so no write is left unawaited.
    # Calls still held then wait for a group that failed: dropped.
    for task in pending:
        background(_settle(task, tasks[task], repair, acked))
    return tally.result()
