"""Adaptive batching of searches per shard, with no timer (DESIGN §5).

One Python gRPC hop costs ~0.2 ms of CPU at each end, more than a shard's
search of one query; answering each query with its own shard call caps
throughput far below the target. So per (shard, index version) at most
`max_in_flight` calls are out at once: an idle shard gets a query at once
(no latency added at low load), and queries that arrive while its calls are
out wait in a queue and leave together, as one call, when one returns — or
at once when the queue holds `max_batch` of them. The busier the shard, the
bigger its batches. Queries with different routes, tenants, filters, k or
pages share a batch; each gets exactly its own answer.

Each caller keeps its own deadline and cancellation: a query that is
cancelled (its caller gave up, lost a hedge, timed out) is dropped from the
batch it waits in — before it is sent, or from the answer — and never
cancels its batch-mates; a query whose deadline passed while it queued fails
alone with DEADLINE_EXCEEDED. A query the shard's access checks refuse
fails alone too (`QueriesRefused`); its batch-mates get their answers. A
call lives until the latest deadline among its live members: once every
member has given up, the call is cancelled and its slot goes to the queries
waiting for it — a call nobody waited for held the lane's only slot until
the latest deadline its dead members had, and everything queued behind it
failed DEADLINE_EXCEEDED though the shard was idle for it (found in review).
Batches are per shard, so a slow shard only delays queries bound for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from coordinator import metrics
from coordinator.errors import QueriesRefused
from coordinator.model import (
    GroupFetch,
    ShardAnswer,
    ShardIndex,
    ShardQuery,
    WriteRecord,
)
from coordinator.shard import Shard
from core import tracing
from core.domain import EntityKey, VersionRef
from core.embedding_columns import EmbeddingColumns
from core.errors import DeadlineExceeded, Internal
from core.record_columns import RecordColumns
from registry.feature_batches import RowBatch


@dataclass
class _Member:
    query: ShardQuery
    future: asyncio.Future[ShardAnswer]
    deadline: float  # event-loop time


@dataclass
class _Lane:
    """The queue and the calls out for one index version on this shard."""

    queue: list[_Member] = field(default_factory=list)
    in_flight: int = 0


class _Abandoned:
    """Counts the live members of one call; when the last one gives up
    (cancelled: its caller went away, its hedge won, its deadline passed),
    cancels the call, as a gRPC call is cancelled when its caller goes."""

    def __init__(self, call: asyncio.Future[list[ShardAnswer]], members: int) -> None:
        self.call = call
        self.live = members

    @property
    def all_gone(self) -> bool:
        return self.live == 0

    def gone(self, member: asyncio.Future[ShardAnswer]) -> None:
        self.live -= 1
        if self.live == 0 and not self.call.done():
            self.call.cancel()


def _fail(batch: list[_Member], exc: BaseException) -> None:
    for m in batch:
        if not m.future.done():
            m.future.set_exception(exc)


class BatchingShard:
    """A `Shard` that batches concurrent searches adaptively (see module doc)."""

    def __init__(self, inner: Shard, max_batch: int = 64, max_in_flight: int = 1) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be ≥ 1")
        self.inner = inner
        self.shard_id = inner.shard_id
        self.address = inner.address
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._lanes: dict[VersionRef, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0
        self._batch_sizes = metrics.labeled(metrics.SHARD_CALL_QUERIES, self.shard_id)

    async def search(
        self, index: VersionRef, queries: Sequence[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(index)
        if lane is None:
            lane = self._lanes[index] = _Lane()
        deadline = loop.time() + timeout
        futures: list[asyncio.Future[ShardAnswer]] = []
        for q in queries:
            fut: asyncio.Future[ShardAnswer] = loop.create_future()
            lane.queue.append(_Member(q, fut, deadline))
            futures.append(fut)
        self._pump(index, lane)
        # Its own deadline while it queues: a query waits for the call ahead
        # of it to return, which may be stalled (it failed only then, long
        # past its deadline; found in review).
        waiting = asyncio.timeout_at(deadline)
        try:
            async with waiting:
                if len(futures) == 1:
                    return [await futures[0]]
                return [await f for f in futures]
        except TimeoutError:
            if not waiting.expired():
                raise
            raise DeadlineExceeded(
                f"shard {self.shard_id}: the deadline passed before its answer"
            ) from None
        finally:
            for f in futures:  # on an error: this caller's other slots go too
                if not f.cancel() and not f.cancelled():
                    f.exception()  # retrieved: asyncio must not log it as lost

    def _pump(self, index: VersionRef, lane: _Lane) -> None:
        """Sends what is queued while a call slot is free, or a full batch."""
        while lane.queue and (
            lane.in_flight < self.max_in_flight or len(lane.queue) >= self.max_batch
        ):
            now = asyncio.get_running_loop().time()
            batch: list[_Member] = []
            rest: list[_Member] = []
            for m in lane.queue:
                if m.future.done():
                    continue  # cancelled while queued: its slot is dropped
                if m.deadline <= now:
                    m.future.set_exception(
                        DeadlineExceeded(f"shard {self.shard_id}: no time left to ask it")
                    )
                elif len(batch) < self.max_batch:
                    batch.append(m)
                else:
                    rest.append(m)
            lane.queue = rest
            if not batch:
                return
            lane.in_flight += 1
            task = asyncio.ensure_future(self._send(index, lane, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, index: VersionRef, lane: _Lane, batch: list[_Member]) -> None:
        self.calls += 1
        self._batch_sizes.observe(len(batch))
        loop = asyncio.get_running_loop()
        try:
            # The call lives as long as its most patient member needs.
            remaining = max(0.001, max(m.deadline for m in batch) - loop.time())
            try:
                # In the context of the member that opened the call (the inner
                # call's task copies it); the others' spans end when it answers.
                with tracing.span(
                    "coordinator.shard_call", shard_id=self.shard_id, batch=len(batch)
                ):
                    call = asyncio.ensure_future(
                        self.inner.search(index, [m.query for m in batch], remaining)
                    )
                    abandoned = _Abandoned(call, len(batch))
                    for m in batch:
                        m.future.add_done_callback(abandoned.gone)
                    answers = await call
                # Checked here, not by the zip below: a short answer left the
                # members past it unset, waiting out their deadlines.
                if len(answers) != len(batch):
                    raise Internal(
                        f"shard {self.shard_id} answered {len(answers)} of {len(batch)} queries"
                    )
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if abandoned.all_gone and not (task is not None and task.cancelling()):
                    return  # every member gave up: the call is cancelled, its slot freed
                # This task itself is cancelled (the loop is shutting down).
                call.cancel()
                for m in batch:
                    m.future.cancel()
                raise
            except QueriesRefused as exc:  # each member its own outcome
                self._refused(batch, exc)
                return
            except Exception as exc:  # noqa: BLE001 - every waiting member gets it
                _fail(batch, exc)
                return
            for m, answer in zip(batch, answers, strict=True):
                if not m.future.done():  # a member that gave up is skipped
                    m.future.set_result(answer)
        finally:
            lane.in_flight -= 1
            self._pump(index, lane)

    def _refused(self, batch: list[_Member], exc: QueriesRefused) -> None:
        if len(exc.answers) != len(batch):
            _fail(batch, Internal(f"shard {self.shard_id} refused with a malformed answer: {exc}"))
            return
        for i, (m, answer) in enumerate(zip(batch, exc.answers, strict=True)):
            if m.future.done():
                continue
            refusal = exc.refused.get(i)
            if refusal is not None:
                m.future.set_exception(refusal)
            else:
                m.future.set_result(answer)  # type: ignore[arg-type]  # a ShardAnswer

    async def upsert(
        self, index: VersionRef, records: Sequence[tuple[WriteRecord, int]], timeout: float
    ) -> tuple[int, int]:
        return await self.inner.upsert(index, records, timeout)

    async def upsert_columns(
        self,
        index: VersionRef,
        tenant_id: str,
        records: RecordColumns,
        buckets: np.ndarray,
        timeout: float,
    ) -> tuple[int, int]:
        return await self.inner.upsert_columns(index, tenant_id, records, buckets, timeout)

    async def delete(
        self, index: VersionRef, keys: Sequence[EntityKey], source_version: int, timeout: float
    ) -> int:
        return await self.inner.delete(index, keys, source_version, timeout)

    async def batch_get(
        self,
        index: VersionRef,
        keys: Sequence[EntityKey],
        include_vectors: bool,
        timeout: float,
        include_attributes: bool = False,
    ) -> EmbeddingColumns:
        return await self.inner.batch_get(
            index, keys, include_vectors, timeout, include_attributes=include_attributes
        )

    async def describe(self, timeout: float = 5.0) -> list[ShardIndex]:
        return await self.inner.describe(timeout)

    async def get_feature_columns(
        self,
        tenant_id: str,
        fetches: Sequence[GroupFetch],
        request_time: int,
        personalized: bool,
        timeout: float,
    ) -> list[object]:
        return await self.inner.get_feature_columns(
            tenant_id, fetches, request_time, personalized, timeout
        )

    async def put_features(
        self, group: VersionRef, batch: RowBatch, timeout: float
    ) -> tuple[int, int]:
        return await self.inner.put_features(group, batch, timeout)

    async def close(self) -> None:
        await self.inner.close()
