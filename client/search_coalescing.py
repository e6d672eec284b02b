"""Concurrent `search` calls of one client share `SearchBatch` calls.

Why: a serving tier answers many requests at once, each with one retrieval
query, from threads sharing one `RetrievalClient`. One query per `Search`
call costs the servers ~2.2 ms of CPU per query, most of it gRPC's per-call
cost in three processes; the same queries 16 to a `SearchBatch` cost ~0.55
(`vecshard bench search`, 100,000 × 128, 2 shards). Coalescing gives callers
that cannot batch themselves the batched cost.

The rules (no timer: nothing waits for company):
- A call that finds fewer than `max_in_flight` calls in flight and nobody
  queued goes at once, alone, as the ordinary blocking `Search` on its own
  thread — a lone caller takes exactly the uncoalesced path (same RPC, same
  retries, same deadline).
- Otherwise it queues. Whenever a call in flight ends, everything queued
  (up to `max_batch`) leaves as one batch call; it ends on gRPC's callback
  thread, which hands each caller its answer and sends the next queue.
- Each caller waits until its own deadline and no longer; a batch's
  deadline is the latest of its members', so nobody is cut short by a
  batch-mate's shorter one.
- A failed batch is nobody's answer: each member sends its own query again
  alone, with the usual retries, within its own deadline — so one bad
  query's error reaches only its caller. Only a batch of one that failed
  with a final (non-retryable) status gives that status directly.

The transport (`BatchTransport`) is injected: `RetrievalClient` sends over
gRPC, the tests over plain functions.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import grpc

from client.connection import RETRYABLE, Connection
from core import tracing
from core.errors import DeadlineExceeded, InvalidArgument, Unavailable, from_rpc_error
from protos.vecshard.v1 import retrieval_pb2 as pb
from protos.vecshard.v1 import retrieval_pb2_grpc

Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass(frozen=True)
class Coalescing:
    """How a client coalesces concurrent searches (`RetrievalClient(coalescing=...)`;
    None there turns it off). `max_batch` bounds the queries of one batch call
    (the coordinator refuses more than `limits.max_searches_per_request`,
    256 by default); `max_in_flight` bounds the client's search calls in
    flight at once — two let the coordinator work on one batch while the
    shards work on the other."""

    max_batch: int = 64
    max_in_flight: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise InvalidArgument(f"max_batch={self.max_batch!r}: expected an int ≥ 1")
        if not isinstance(self.max_in_flight, int) or self.max_in_flight < 1:
            raise InvalidArgument(f"max_in_flight={self.max_in_flight!r}: expected an int ≥ 1")


DEFAULT_COALESCING = Coalescing()


class BatchTransport(Protocol[Req, Resp]):
    def one(self, request: Req, timeout: float) -> Resp:
        """One query, blocking, retried as any call of the client is."""
        ...

    def start(
        self,
        requests: list[Req],
        timeout: float,
        done: Callable[[list[Resp] | BaseException], None],
    ) -> None:
        """Sends `requests` as one call without waiting; `done` gets the
        answers in order, or the failure, exactly once, on any thread."""
        ...

    def final(self, failure: BaseException) -> BaseException | None:
        """The error a lone query's failed call gives its caller, or None when
        sending it again (with retries) could still answer it."""
        ...


_QUEUED, _SENT, _DONE, _GONE = range(4)
_OK, _ERROR, _ALONE = range(3)


class _Waiter(Generic[Req, Resp]):
    """One queued caller. `wake` is held until its outcome is set: a bare
    lock is the cheapest way to block a thread and wake it in CPython."""

    __slots__ = ("request", "deadline", "wake", "state", "outcome", "value")

    def __init__(self, request: Req, deadline: float) -> None:
        self.request = request
        self.deadline = deadline
        self.wake = threading.Lock()
        self.wake.acquire()
        self.state = _QUEUED
        self.outcome = _ALONE
        self.value: Resp | BaseException | None = None


@dataclass
class CoalescingStats:
    """What the coalescer did (for benchmarks and tuning)."""

    alone: int = 0  # calls sent directly, one query each
    batches: int = 0  # batch calls sent
    batched_queries: int = 0  # queries they carried
    resent: int = 0  # queries sent again alone after their batch failed

    @property
    def mean_batch(self) -> float:
        return self.batched_queries / self.batches if self.batches else 0.0


class SearchCoalescer(Generic[Req, Resp]):
    def __init__(
        self,
        transport: BatchTransport[Req, Resp],
        settings: Coalescing,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.stats = CoalescingStats()
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: deque[_Waiter[Req, Resp]] = deque()
        self._in_flight = 0
        self._closed = False

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def call(self, request: Req, timeout: float) -> Resp:
        """`request`'s answer, within `timeout` seconds."""
        with self._lock:
            if self._closed:
                raise Unavailable("the client is closed")
            direct = self._in_flight < self.settings.max_in_flight and not self._queue
            if direct:
                self._in_flight += 1
                self.stats.alone += 1
            else:
                waiter: _Waiter[Req, Resp] = _Waiter(request, self._clock() + timeout)
                self._queue.append(waiter)
        if direct:
            try:
                return self.transport.one(request, timeout)
            except Exception as exc:
                if self._closed:  # whatever cut the call short, this is why
                    raise Unavailable("the client was closed") from exc
                raise
            finally:
                self._ended()
        return self._await(waiter, timeout)

    def close(self) -> None:
        """Fails every queued call; calls in flight end as their channel closes.
        Each caller cut short gets Unavailable("the client was closed")."""
        with self._lock:
            self._closed = True
            while self._queue:
                self._settle(self._queue.popleft(), _ERROR, Unavailable("the client was closed"))

    def _await(self, w: _Waiter[Req, Resp], timeout: float) -> Resp:
        remaining = w.deadline - self._clock()
        if not (remaining > 0 and w.wake.acquire(timeout=remaining)):
            with self._lock:
                if w.state == _QUEUED:
                    self._queue.remove(w)
                    w.state = _GONE
                elif w.state == _SENT:
                    w.state = _GONE  # its batch goes on for the others
            if w.state == _GONE:
                raise DeadlineExceeded(
                    f"search: no answer within {timeout:.3g} s "
                    "(queued behind the client's searches in flight)"
                )
        if w.outcome == _OK:
            return w.value  # type: ignore[return-value]
        if self._closed:  # whatever cut the call short, this is why
            raise Unavailable("the client was closed")
        if w.outcome == _ERROR:
            assert isinstance(w.value, BaseException)
            raise w.value
        # Its batch failed: the query goes again alone, with the usual retries.
        remaining = w.deadline - self._clock()
        if remaining <= 0:
            raise DeadlineExceeded(f"search: no answer within {timeout:.3g} s (its batch failed)")
        with self._lock:
            self.stats.resent += 1
        return self.transport.one(w.request, remaining)

    def _ended(self) -> None:
        """A call in flight ended: its slot carries the queue, if any, as the
        next batch. A loop, not recursion: a send that fails at once ends too."""
        while True:
            with self._lock:
                batch: list[_Waiter[Req, Resp]] = []
                while self._queue and len(batch) < self.settings.max_batch:
                    w = self._queue.popleft()
                    w.state = _SENT
                    batch.append(w)
                if not batch:
                    self._in_flight -= 1
                    return
                self.stats.batches += 1
                self.stats.batched_queries += len(batch)
            timeout = max(w.deadline for w in batch) - self._clock()
            if timeout <= 0:
                self._deliver(batch, DeadlineExceeded("search: every query of the batch expired"))
                continue
            try:
                self.transport.start(
                    [w.request for w in batch], timeout, functools.partial(self._landed, batch)
                )
                return
            except Exception as exc:  # e.g. a closed channel: nobody's answer
                self._deliver(batch, exc)

    def _landed(self, batch: list[_Waiter[Req, Resp]], out: list[Resp] | BaseException) -> None:
        try:
            self._deliver(batch, out)
        finally:
            self._ended()

    def _deliver(self, batch: list[_Waiter[Req, Resp]], out: list[Resp] | BaseException) -> None:
        outcomes: list[tuple[int, Resp | BaseException | None]]
        if isinstance(out, BaseException):
            final = self.transport.final(out) if len(batch) == 1 else None
            outcomes = [(_ALONE, None) if final is None else (_ERROR, final)] * len(batch)
        elif len(out) != len(batch):  # not an answer to this batch: ask again alone
            outcomes = [(_ALONE, None)] * len(batch)
        else:
            outcomes = [(_OK, r) for r in out]
        with self._lock:
            for w, (kind, value) in zip(batch, outcomes, strict=True):
                self._settle(w, kind, value)

    @staticmethod
    def _settle(w: _Waiter[Req, Resp], kind: int, value: Resp | BaseException | None) -> None:
        """Under the lock: a caller still waiting gets its outcome."""
        if w.state in (_QUEUED, _SENT):
            w.outcome, w.value, w.state = kind, value, _DONE
            w.wake.release()


class RpcSearchTransport:
    """`BatchTransport` over gRPC for `RetrievalClient`: alone through the
    client's retried blocking call, batches as `SearchBatch` futures on the
    connection's next coordinator, asking for packed hits (the coordinator
    then builds no message per hit; `client.search_results.hit_list` reads
    either form)."""

    def __init__(
        self,
        one: Callable[[pb.SearchRequest, float], pb.SearchResponse],
        connection: Connection,
        stubs: list[retrieval_pb2_grpc.RetrievalServiceStub],
    ) -> None:
        self._one = one
        self._conn = connection
        self._stubs = stubs

    def one(self, request: pb.SearchRequest, timeout: float) -> pb.SearchResponse:
        return self._one(request, timeout)

    def start(
        self,
        requests: list[pb.SearchRequest],
        timeout: float,
        done: Callable[[list[pb.SearchResponse] | BaseException], None],
    ) -> None:
        stub = self._stubs[self._conn.next_channel()]
        # The trace context of whichever thread sends: a batch is nobody's own.
        metadata = (*self._conn.metadata, *tracing.outgoing_metadata())
        if len(requests) == 1:
            single = stub.Search.future(requests[0], timeout=timeout, metadata=metadata)
            single.add_done_callback(lambda f: done(_outcome(f, lambda r: [r])))
            return
        batch = stub.SearchBatch.future(
            pb.SearchBatchRequest(requests=requests, packed_hits=True),
            timeout=timeout,
            metadata=metadata,
        )
        batch.add_done_callback(lambda f: done(_outcome(f, lambda r: list(r.responses))))

    def final(self, failure: BaseException) -> BaseException | None:
        if isinstance(failure, grpc.RpcError) and failure.code() not in RETRYABLE:
            return from_rpc_error(failure)
        return None


def _outcome(
    future: grpc.Future[Any], answers: Callable[[Any], list[pb.SearchResponse]]
) -> list[pb.SearchResponse] | BaseException:
    """Never raises: an exception in a gRPC done-callback would be logged and
    lost, and with it the batch's slot and its callers' answers."""
    try:
        if future.cancelled():  # the channel closed under it
            return Unavailable("the search's call was cancelled (the client closed)")
        failure = future.exception()
        return failure if failure is not None else answers(future.result())
    except Exception as exc:
        return exc
