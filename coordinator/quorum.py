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
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field

from core.errors import Unavailable
from registry.model import IndexVersion, Placement, ShardMember
from registry.snapshot import Snapshot


def replica_count(placement: Placement) -> int:
    return max(len(r) for r in placement.buckets)


def needed(quorum: int, replicas: int) -> int:
    """Acknowledgements a bucket needs: the quorum (0 = every replica),
    never more than there are replicas."""
    return min(quorum or replicas, replicas)


def write_members(
    snap: Snapshot, index: IndexVersion, bucket: int, placement: Placement
) -> list[ShardMember]:
    """The registered replicas of a bucket. With fewer than the quorum
    registered the write is refused before anything is sent, rather than
    half-written."""
    replicas = placement.buckets[bucket]
    need = needed(index.write_quorum, len(replicas))
    out = [m for m in (snap.shards.get(s) for s in replicas) if m is not None]
    if len(out) < need:
        missing = [s for s in replicas if s not in snap.shards]
        raise Unavailable(
            f"bucket {bucket} of index {index.ref}: replica(s) {missing} not registered; "
            f"writes need {need} of {len(replicas)}"
        )
    return out


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


async def _quietly(task: asyncio.Future[tuple[int, int]]) -> None:
    """A write past the quorum: its failure was already tolerated."""
    with contextlib.suppress(Exception):
        await task


async def run_quorum(
    calls: Sequence[ReplicaCall],
    quorum: int,
    replicas: int,
    on_write: Callable[[str], None],
    background: Callable[[Awaitable[None]], None],
) -> tuple[int, int]:
    """Runs every call; returns once each bucket has its quorum. `on_write`
    hears of every shard written to (when sent and when acknowledged: its
    cached summary no longer bounds its rows); `background` takes the calls
    still running."""
    tally = QuorumTally(needed(quorum, replicas), frozenset().union(*(c.buckets for c in calls)))
    for c in calls:
        on_write(c.shard_id)
    tasks: dict[asyncio.Future[tuple[int, int]], ReplicaCall] = {
        asyncio.ensure_future(c.run()): c for c in calls
    }
    pending = set(tasks)
    while pending and not tally.met:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            call, exc = tasks[task], task.exception()
            if exc is not None:
                tally.fail(exc)
                continue
            on_write(call.shard_id)
            tally.ack(call.buckets, call.group, task.result())
    # Why before the result: with the quorum short, nothing is pending (the
    # loop only stops early once it is met), so no write is left unawaited.
    for task in pending:
        background(_quietly(task))
    return tally.result()
