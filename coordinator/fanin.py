"""One query's side of a fan-out as its shard calls come back: the answers to
merge, the trace, the errors and missing buckets, and the counts.

Shared by the one-query fan-out (`SearchExecutor.run`, a call per shard) and
the batch fan-out (`SearchExecutor.run_many`, a call per shard for many
queries), so a skipped, failed or answered call is accounted for the same
way whichever path asked it.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field

from coordinator.fanout import Target
from coordinator.merge import Hit
from coordinator.model import ShardAnswer, ShardTrace
from coordinator.partial import Completeness
from core.errors import DeadlineExceeded


@dataclass(frozen=True)
class Execution:
    hits: list[Hit]
    completeness: Completeness
    trace: tuple[ShardTrace, ...]
    errors: tuple[BaseException, ...]
    candidates: int
    shards_searched: int
    shards_skipped: int
    hedges_fired: int
    deadline_hit: bool
    # Time spent merging shard answers (inside the fan-out: a query merges
    # after each wave), so the fan-out's phase can be told from the merge's.
    merge_seconds: float = 0.0


@dataclass
class QueryFanin:
    # Per target shard, the query's score bound there (None: unknown).
    bounds: dict[str, float | None]
    # Buckets no answer covers (no serving replica, or their call failed).
    missing: list[int]
    # Per target with a bound, the write sequence its summary covers: what a
    # shard skipped by bound is pinned at for the next pages.
    sequences: dict[str, int] = field(default_factory=dict)
    answers: list[ShardAnswer] = field(default_factory=list)
    trace: list[ShardTrace] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    candidates: int = 0
    searched: int = 0
    skipped: int = 0
    hedges: int = 0
    deadline_hit: bool = False
    merge_seconds: float = 0.0

    def skip(self, t: Target, wave: int) -> None:
        self.skipped += 1
        self.trace.append(
            ShardTrace(
                t.shard_id,
                t.buckets,
                self.bounds[t.shard_id],
                "skipped_by_bound",
                wave,
                sequence=self.sequences[t.shard_id],
            )
        )

    def fail(
        self,
        t: Target,
        wave: int,
        exc: BaseException,
        shard_id: str | None = None,
        buckets: tuple[int, ...] | None = None,
    ) -> None:
        """A call the request survives (the caller raised those it cannot);
        `shard_id`, `buckets`: a failover member's, when only it failed."""
        timed_out = isinstance(exc, TimeoutError | DeadlineExceeded)
        lost = t.buckets if buckets is None else buckets
        self.deadline_hit |= timed_out
        self.errors.append(exc)
        self.missing.extend(lost)
        self.trace.append(
            ShardTrace(
                shard_id or t.shard_id,
                lost,
                self.bounds[t.shard_id],
                "timed_out" if timed_out else "failed",
                wave,
                error=str(exc) or type(exc).__name__,
            )
        )

    def answer(
        self,
        t: Target,
        wave: int,
        answer: ShardAnswer,
        latency: float,
        hedged: bool,
        answered_by: str,
        buckets: tuple[int, ...] | None = None,
    ) -> None:
        """`answer`: already calibrated where it was approximate; `buckets`:
        those `answered_by` answered for, when a failover cover split the
        target's among several replicas."""
        self.hedges += hedged
        self.searched += 1
        self.candidates += answer.candidates
        self.answers.append(answer)
        self.trace.append(
            ShardTrace(
                answered_by,
                t.buckets if buckets is None else buckets,
                self.bounds[t.shard_id],
                "searched",
                wave,
                latency * 1e3,
                answer.candidates,
                hedged=hedged,
                sequence=answer.sequence,
            )
        )

    def execution(self, hits: list[Hit], buckets: int) -> Execution:
        """`buckets`: how many the query asked for (the completeness base)."""
        return Execution(
            hits=hits,
            completeness=Completeness(tuple(sorted(self.missing)), buckets),
            trace=tuple(self.trace),
            errors=tuple(self.errors),
            candidates=self.candidates,
            shards_searched=self.searched,
            shards_skipped=self.skipped,
            hedges_fired=self.hedges,
            deadline_hit=self.deadline_hit,
            merge_seconds=self.merge_seconds,
        )


async def numbered(i: int, execution: Awaitable[Execution]) -> list[tuple[int, Execution]]:
    """A query's execution with its position in a batch (a batch's fan-outs
    finish in any order)."""
    return [(i, await execution)]
