"""Concurrent calls of one client share batch calls.

Why: a serving tier answers many requests at once from threads sharing one
`RetrievalClient`, each with one retrieval query or one lookup. One query
per `Search` call costs the servers ~2.2 ms of CPU per query, most of it
gRPC's per-call cost in three processes; the same queries 16 to a
`SearchBatch` cost ~0.55 (`vecshard bench search`, 100,000 × 128, 2
shards). Coalescing gives callers that cannot batch themselves the batched
cost: searches share `SearchBatch` calls, `get_embeddings` lookups of one
embedding version share one `BatchGetEmbeddings` (`client.coalesced_rpcs`).

The rules (no timer: nothing waits for company):
- A call that finds fewer than `max_in_flight` calls in flight and nobody
  queued goes at once, alone, as the ordinary blocking call on its own
  thread — a lone caller takes exactly the uncoalesced path (same RPC, same
  retries, same deadline).
- Otherwise it queues. Whenever a call in flight ends, the oldest queued
  request and those queued after it that can share its call (the
  transport's `group`), up to `max_batch` requests and `max_weight` in all,
  leave as one batch call; it ends on gRPC's callback thread, which hands
  each caller its answer and sends the next batch.
- Each caller waits until its own deadline and no longer; a batch's
  deadline is the latest of its members', so nobody is cut short by a
  batch-mate's shorter one.
- A queued caller waits for a call in flight to end only so long (its
  patience): `queue_patience` of its own timeout, and once calls have been
  timed no more than 4 times their recent p95 (at least 50 ms). Past it the
  calls in flight are stalled (a paused coordinator, heavy searches with long
  deadlines), and it leaves the queue and goes alone with the time it has
  left: two stalled calls held every other thread of the client until their
  own deadlines, unsent (found in review). At normal load a queued caller
  leaves within a call or two, well inside its patience.
- A failed batch is nobody's answer: each member sends its own request
  again alone, with the usual retries, within its own deadline — so one bad
  request's error reaches only its caller. Only a batch of one that failed
  with a final (non-retryable) status gives that status directly.

The transport (`BatchTransport`) is injected: `RetrievalClient` sends over
gRPC, the tests over plain functions.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from core.errors import DeadlineExceeded, InvalidArgument, Unavailable

Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass(frozen=True)
class Coalescing:
    """How a client coalesces concurrent calls (`RetrievalClient(coalescing=...)`;
    None there turns it off). `max_batch` bounds the searches of one batch
    call (the coordinator refuses more than `limits.max_searches_per_request`,
    256 by default); `max_lookup_keys` the ids of one coalesced lookup (it
    refuses more than `limits.max_keys_per_request`, 10,000); `max_in_flight`
    bounds the client's calls in flight at once, per kind — two let the
    coordinator work on one batch while the shards work on the other."""

    max_batch: int = 64
    max_in_flight: int = 2
    max_lookup_keys: int = 4096
    # The share of its own timeout a queued call waits for a call in flight
    # to end before it goes alone (sooner once calls have been timed).
    queue_patience: float = 0.5

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_in_flight", "max_lookup_keys"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name}={value!r}: expected an int ≥ 1")
        if not 0.0 < self.queue_patience <= 1.0:
            raise InvalidArgument(
                f"queue_patience={self.queue_patience!r}: expected a share of the timeout in (0, 1]"
            )


DEFAULT_COALESCING = Coalescing()


class BatchTransport(Protocol[Req, Resp]):
    def group(self, request: Req) -> Hashable:
        """Requests share a batch call only with requests of their group."""
        ...

    def weight(self, request: Req) -> int:
        """What a request counts against `max_weight` (e.g. its keys)."""
        ...

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
# Patience once calls have been timed: this many times the p95 of the last
# `_TIMED` calls (recomputed every `_RETIME` calls), and at least `_MIN_PATIENCE` s.
_STALL_FACTOR, _MIN_PATIENCE, _TIMED, _RETIME = 4.0, 0.05, 64, 16


class _Waiter(Generic[Req, Resp]):
    """One queued caller. `wake` is held until its outcome is set: a bare
    lock is the cheapest way to block a thread and wake it in CPython."""

    __slots__ = ("request", "deadline", "group", "weight", "wake", "state", "outcome", "value")

    def __init__(self, request: Req, deadline: float, group: Hashable, weight: int) -> None:
        self.request = request
        self.deadline = deadline
        self.group = group
        self.weight = weight
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
    impatient: int = 0  # queued queries sent alone, the calls in flight stalled

    @property
    def mean_batch(self) -> float:
        return self.batched_queries / self.batches if self.batches else 0.0


class CallCoalescer(Generic[Req, Resp]):
    """One kind of call of one client, coalesced (the rules: module docstring)."""

    def __init__(
        self,
        transport: BatchTransport[Req, Resp],
        settings: Coalescing,
        clock: Callable[[], float] = time.monotonic,
        max_weight: int | None = None,
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.max_weight = max_weight
        self.stats = CoalescingStats()
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: deque[_Waiter[Req, Resp]] = deque()
        self._in_flight = 0
        self._closed = False
        self._took: deque[float] = deque(maxlen=_TIMED)  # recent calls' durations
        self._timed = 0
        self._stalled_after: float | None = None  # 4 × their p95, once known

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def call(self, request: Req, timeout: float) -> Resp:
        """`request`'s answer, within `timeout` seconds."""
        # Group and weight once, outside the lock (a lone caller's cost next
        # to its call: a tuple and a lock).
        waiter: _Waiter[Req, Resp] = _Waiter(
            request,
            self._clock() + timeout,
            self.transport.group(request),
            self.transport.weight(request),
        )
        with self._lock:
            if self._closed:
                raise Unavailable("the client is closed")
            direct = self._in_flight < self.settings.max_in_flight and not self._queue
            if direct:
                self._in_flight += 1
                self.stats.alone += 1
            else:
                self._queue.append(waiter)
        if direct:
            began = self._clock()
            try:
                return self.transport.one(request, timeout)
            except Exception as exc:
                if self._closed:  # whatever cut the call short, this is why
                    raise Unavailable("the client was closed") from exc
                raise
            finally:
                self._ended(self._clock() - began)
        return self._await(waiter, timeout)

    def close(self) -> None:
        """Fails every queued call; calls in flight end as their channel closes.
        Each caller cut short gets Unavailable("the client was closed")."""
        with self._lock:
            self._closed = True
            while self._queue:
                self._settle(self._queue.popleft(), _ERROR, Unavailable("the client was closed"))

    def _patience(self, timeout: float) -> float:
        share = self.settings.queue_patience * timeout
        stalled = self._stalled_after
        return share if stalled is None else min(share, max(_MIN_PATIENCE, stalled))

    def _await(self, w: _Waiter[Req, Resp], timeout: float) -> Resp:
        remaining = w.deadline - self._clock()
        patience = min(remaining, self._patience(timeout))
        if not (patience > 0 and w.wake.acquire(timeout=patience)):
            with self._lock:
                impatient = w.state == _QUEUED
                if impatient:  # the calls in flight are stalled: it goes alone
                    self._queue.remove(w)
                    w.state = _GONE
            if impatient:
                return self._alone(w, timeout)
            remaining = w.deadline - self._clock()
            if not (remaining > 0 and w.wake.acquire(timeout=remaining)):
                with self._lock:
                    if w.state == _SENT:
                        w.state = _GONE  # its batch goes on for the others
                if w.state == _GONE:
                    raise DeadlineExceeded(f"no answer within {timeout:.3g} s (its batch call)")
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
            raise DeadlineExceeded(f"no answer within {timeout:.3g} s (its batch call failed)")
        with self._lock:
            self.stats.resent += 1
        return self.transport.one(w.request, remaining)

    def _alone(self, w: _Waiter[Req, Resp], timeout: float) -> Resp:
        """A queued caller past its patience, sent alone with what it has left
        (outside the calls in flight: those are stalled)."""
        remaining = w.deadline - self._clock()
        if remaining <= 0:
            raise DeadlineExceeded(
                f"no answer within {timeout:.3g} s (queued behind the client's calls in flight)"
            )
        with self._lock:
            if self._closed:
                raise Unavailable("the client was closed")
            self.stats.impatient += 1
        try:
            return self.transport.one(w.request, remaining)
        except Exception as exc:
            if self._closed:  # whatever cut the call short, this is why
                raise Unavailable("the client was closed") from exc
            raise

    def _time(self, took: float) -> None:
        """Under the lock: one call's duration, for the patience of queued calls."""
        self._took.append(took)
        self._timed += 1
        if self._timed % _RETIME == 0:
            ordered = sorted(self._took)
            self._stalled_after = _STALL_FACTOR * ordered[int(0.95 * (len(ordered) - 1))]

    def _ended(self, took: float | None) -> None:
        """A call in flight ended (after `took` s): its slot carries the queue,
        if any, as the next batch. A loop, not recursion: a send that fails at
        once ends too."""
        while True:
            with self._lock:
                if took is not None:
                    self._time(took)
                    took = None
                batch = self._take()
                if not batch:
                    self._in_flight -= 1
                    return
                self.stats.batches += 1
                self.stats.batched_queries += len(batch)
            timeout = max(w.deadline for w in batch) - self._clock()
            if timeout <= 0:
                self._deliver(batch, DeadlineExceeded("every request of the batch expired"))
                continue
            try:
                self.transport.start(
                    [w.request for w in batch],
                    timeout,
                    functools.partial(self._landed, batch, self._clock()),
                )
                return
            except Exception as exc:  # e.g. a closed channel: nobody's answer
                self._deliver(batch, exc)

    def _take(self) -> list[_Waiter[Req, Resp]]:
        """Under the lock: the oldest queued request and those after it of
        its group, within `max_batch` and `max_weight` (the oldest goes
        whatever its weight); the rest keep their places."""
        if not self._queue:
            return []
        head = self._queue.popleft()
        batch, kept = [head], deque[_Waiter[Req, Resp]]()
        weight = head.weight
        while self._queue:
            w = self._queue.popleft()
            fits = len(batch) < self.settings.max_batch and (
                self.max_weight is None or weight + w.weight <= self.max_weight
            )
            if fits and w.group == head.group:
                batch.append(w)
                weight += w.weight
            else:
                kept.append(w)
        self._queue = kept
        for w in batch:
            w.state = _SENT
        return batch

    def _landed(
        self, batch: list[_Waiter[Req, Resp]], began: float, out: list[Resp] | BaseException
    ) -> None:
        try:
            self._deliver(batch, out)
        finally:
            self._ended(self._clock() - began)

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
