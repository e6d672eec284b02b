"""The SDK's search coalescing (`client.call_coalescing`) on plain data:
a transport made of functions and threads, no server."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.call_coalescing import CallCoalescer, Coalescing
from client.coalesced_rpcs import RpcSearchTransport
from core.errors import DeadlineExceeded, InvalidArgument, Unavailable
from protos.vecshard.v1 import retrieval_pb2 as pb
from tests.polling import poll
from tests.rpc_failures import Failure


class Refused(Exception):
    """What the fake server raises for a request named 'bad…' (final)."""


class Flaky(Exception):
    """A failure of the call, not of its queries (sending again may answer)."""


def answer(request: str) -> str:
    if request.startswith("bad"):
        raise Refused(request)
    return request.upper()


class FakeTransport:
    """Answers `answer(request)`; `one` blocks while `hold` is clear; batches
    land on a thread of their own after `delay()` seconds. Records every
    call, and the most calls it ever had in flight at once."""

    def __init__(self, delay: Callable[[], float] = lambda: 0.0, fail_batches: bool = False):
        self.delay = delay
        self.fail_batches = fail_batches
        self.hold = threading.Event()
        self.hold.set()
        self.ones: list[str] = []
        self.batches: list[list[str]] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.wrong_count = False

    def group(self, request: str) -> Hashable:
        """Requests share a call with those of their first letter's case."""
        return request[:1].isupper()

    def weight(self, request: str) -> int:
        return len(request)

    def _enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def one(self, request: str, timeout: float) -> str:
        assert timeout > 0
        self._enter()
        try:
            with self.lock:
                self.ones.append(request)
            self.hold.wait()
            time.sleep(self.delay())
            return answer(request)
        finally:
            self._leave()

    def start(self, requests: list[str], timeout: float, done: Callable[[Any], None]) -> None:
        assert timeout > 0
        self._enter()
        with self.lock:
            self.batches.append(list(requests))

        def land() -> None:
            time.sleep(self.delay())
            self._leave()
            bad = [r for r in requests if r.startswith("bad")]
            if self.fail_batches:
                done(Flaky("the batch"))
            elif bad:
                done(Refused(bad[0]))
            elif self.wrong_count:
                done([answer(r) for r in requests[1:]])
            else:
                done([answer(r) for r in requests])

        threading.Thread(target=land).start()

    def final(self, failure: BaseException) -> BaseException | None:
        return InvalidArgument(str(failure)) if isinstance(failure, Refused) else None


def blocked_first_call(
    c: CallCoalescer[str, str], t: FakeTransport, pool: ThreadPoolExecutor
) -> Future[str]:
    """Starts one direct call that blocks until `t.hold` is set again."""
    t.hold.clear()
    first = pool.submit(c.call, "first", 5.0)
    _until(lambda: t.ones == ["first"])
    return first


def queued_behind_a_call(
    c: CallCoalescer[str, str],
    t: FakeTransport,
    pool: ThreadPoolExecutor,
    requests: str | list[str],
) -> dict[str, Future[str]]:
    """Queues `requests` behind a call in flight, then lets that call end."""
    first = blocked_first_call(c, t, pool)
    futures = {r: pool.submit(c.call, r, 5.0) for r in requests}
    _queued(c, len(futures))
    t.hold.set()
    assert first.result() == "FIRST"
    return futures


def _until(cond: Callable[[], bool]) -> None:
    """Another thread's progress, which nothing signals (tests.polling)."""
    assert poll(cond, bool, timeout=5.0, interval=0.001), "condition not reached"


def _queued(c: CallCoalescer[str, str], n: int) -> None:
    _until(lambda: len(c._queue) == n)


def test_a_lone_call_goes_alone_through_the_ordinary_call() -> None:
    t = FakeTransport()
    c = CallCoalescer(t, Coalescing(max_in_flight=1))
    assert c.call("a", 1.0) == "A"
    assert c.call("b", 1.0) == "B"
    assert t.ones == ["a", "b"] and t.batches == []
    assert (c.stats.alone, c.stats.batches, c.in_flight) == (2, 0, 0)


def test_calls_queued_behind_a_call_in_flight_leave_together_each_with_its_answer() -> None:
    t = FakeTransport()
    c = CallCoalescer(t, Coalescing(max_in_flight=1))
    with ThreadPoolExecutor(8) as pool:
        rest = queued_behind_a_call(c, t, pool, ["b", "c", "d"])
        assert {r: f.result() for r, f in rest.items()} == {"b": "B", "c": "C", "d": "D"}
    assert sorted(t.batches[0]) == ["b", "c", "d"] and len(t.batches) == 1
    assert c.stats.mean_batch == 3 and c.in_flight == 0


def test_batches_hold_at_most_max_batch_queries_and_the_queue_drains() -> None:
    t = FakeTransport(delay=lambda: 0.01)
    c = CallCoalescer(t, Coalescing(max_batch=2, max_in_flight=1))
    with ThreadPoolExecutor(8) as pool:
        rest = queued_behind_a_call(c, t, pool, "bcde")
        assert {r: f.result() for r, f in rest.items()} == {r: r.upper() for r in "bcde"}
    assert [len(b) for b in t.batches] == [2, 2]
    assert t.most_in_flight == 1 and c.in_flight == 0


def test_only_requests_of_one_group_share_a_call_and_the_others_keep_their_turn() -> None:
    t = FakeTransport()
    c = CallCoalescer(t, Coalescing(max_in_flight=1))
    with ThreadPoolExecutor(8) as pool:
        rest = queued_behind_a_call(c, t, pool, ["a", "B", "c", "D"])
        assert {r: f.result() for r, f in rest.items()} == {"a": "A", "B": "B", "c": "C", "D": "D"}
    assert [sorted(b) for b in t.batches] == [["a", "c"], ["B", "D"]]


def test_a_batch_stays_within_max_weight_and_a_heavy_request_goes_alone() -> None:
    t = FakeTransport()
    c = CallCoalescer(t, Coalescing(max_in_flight=1), max_weight=3)
    with ThreadPoolExecutor(8) as pool:
        rest = queued_behind_a_call(c, t, pool, ["aa", "bb", "c", "xxxxx"])
        assert {r: f.result() for r, f in rest.items()} == {r: r.upper() for r in rest}
    assert [sorted(b) for b in t.batches] == [["aa", "c"], ["bb"], ["xxxxx"]]


def test_a_failed_batch_sends_each_query_again_alone_so_an_error_stays_its_callers() -> None:
    t = FakeTransport()
    c = CallCoalescer(t, Coalescing(max_in_flight=1))
    with ThreadPoolExecutor(8) as pool:
        rest = queued_behind_a_call(c, t, pool, ["b", "bad-1", "c"])
        assert rest["b"].result() == "B" and rest["c"].result() == "C"
        with pytest.raises(Refused, match="bad-1"):
            rest["bad-1"].result()
    assert sorted(t.ones) == ["b", "bad-1", "c", "first"]
    assert c.stats.resent == 3 and c.in_flight == 0


def test_a_lone_query_whose_batch_failed_for_good_gets_that_error_without_a_resend() -> None:
    t = FakeTransport()
    c = CallCoalescer(t, Coalescing(max_in_flight=1))
    with ThreadPoolExecutor(4) as pool:
        bad = queued_behind_a_call(c, t, pool, ["bad-2"])["bad-2"]
        with pytest.raises(InvalidArgument, match="bad-2"):
            bad.result()
    assert t.ones == ["first"] and t.batches == [["bad-2"]] and c.stats.resent == 0


def test_an_answer_of_the_wrong_length_is_nobodys_the_queries_go_again_alone() -> None:
    t = FakeTransport()
    t.wrong_count = True
    c = CallCoalescer(t, Coalescing(max_in_flight=1))
    with ThreadPoolExecutor(4) as pool:
        rest = queued_behind_a_call(c, t, pool, "xy")
        assert {r: f.result() for r, f in rest.items()} == {"x": "X", "y": "Y"}
    assert sorted(t.ones) == ["first", "x", "y"]


def test_a_queued_caller_waits_no_longer_than_its_own_deadline() -> None:
    t = FakeTransport()
    # Patient to its deadline: it never goes alone (see the stalled calls below).
    c = CallCoalescer(t, Coalescing(max_in_flight=1, queue_patience=1.0))
    with ThreadPoolExecutor(4) as pool:
        first = blocked_first_call(c, t, pool)
        patient = pool.submit(c.call, "p", 5.0)
        _queued(c, 1)
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="within 0.05 s"):
            c.call("hasty", 0.05)
        assert time.monotonic() - t0 < 1.0
        t.hold.set()
        first.result()
        assert patient.result() == "P"
    assert t.batches == [["p"]]  # the one that left is not sent
    assert c.in_flight == 0


def test_a_caller_whose_batch_is_in_flight_leaves_at_its_deadline_the_others_get_theirs() -> None:
    t = FakeTransport(delay=lambda: 0.3)
    c = CallCoalescer(t, Coalescing(max_in_flight=1, queue_patience=1.0))
    with ThreadPoolExecutor(4) as pool:
        first = blocked_first_call(c, t, pool)
        patient = pool.submit(c.call, "p", 5.0)
        hasty = pool.submit(c.call, "h", 0.2)
        _queued(c, 2)
        t.hold.set()  # "first" lands after 0.3 s, the batch [p, h] 0.3 s later
        with pytest.raises(DeadlineExceeded):
            hasty.result()
        assert patient.result() == "P" and first.result() == "FIRST"
    _until(lambda: c.in_flight == 0)


def test_close_fails_the_queued_calls() -> None:
    t = FakeTransport()
    c = CallCoalescer(t, Coalescing(max_in_flight=1))
    with ThreadPoolExecutor(4) as pool:
        first = blocked_first_call(c, t, pool)
        queued = pool.submit(c.call, "q", 5.0)
        _queued(c, 1)
        c.close()
        with pytest.raises(Unavailable, match="closed"):
            queued.result()
        with pytest.raises(Unavailable, match="closed"):
            c.call("late", 1.0)
        t.hold.set()
        assert first.result() == "FIRST"  # an answer that made it is still given


def test_a_call_in_flight_that_a_close_cuts_short_says_the_client_was_closed() -> None:
    t = FakeTransport()
    c = CallCoalescer(t, Coalescing(max_in_flight=1))
    t.hold.clear()
    with ThreadPoolExecutor(2) as pool:
        cut = pool.submit(c.call, "bad-cut", 5.0)  # fails once released, as a closed channel
        _until(lambda: t.ones == ["bad-cut"])
        c.close()
        t.hold.set()
        with pytest.raises(Unavailable, match="the client was closed"):
            cut.result()
    assert c.in_flight == 0


def test_settings_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="max_batch=0"):
        Coalescing(max_batch=0)
    with pytest.raises(InvalidArgument, match="max_in_flight=0"):
        Coalescing(max_in_flight=0)
    with pytest.raises(InvalidArgument, match="queue_patience=0"):
        Coalescing(queue_patience=0)


@settings(max_examples=25, deadline=None)
@given(
    requests=st.lists(
        st.sampled_from(["a", "b", "c", "bad-x", "d", "ee", "F", "GG", "bad-Y"]),
        min_size=1,
        max_size=24,
    ),
    max_batch=st.integers(1, 6),
    max_weight=st.one_of(st.none(), st.integers(1, 8)),
    max_in_flight=st.integers(1, 3),
    fail_batches=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_every_caller_gets_its_own_answer_under_any_timing(
    requests: list[str],
    max_batch: int,
    max_weight: int | None,
    max_in_flight: int,
    fail_batches: bool,
    seed: int,
) -> None:
    rng = random.Random(seed)
    lock = threading.Lock()

    def delay() -> float:
        with lock:
            return rng.random() * 0.003

    t = FakeTransport(delay=delay, fail_batches=fail_batches)
    c = CallCoalescer(
        t, Coalescing(max_batch=max_batch, max_in_flight=max_in_flight), max_weight=max_weight
    )

    def one(r: str) -> str:
        try:
            return c.call(r, 10.0)
        except (Refused, InvalidArgument) as exc:
            return f"refused {exc}"

    with ThreadPoolExecutor(len(requests)) as pool:
        got = list(pool.map(one, requests))
    for r, g in zip(requests, got, strict=True):
        assert g == (f"refused {r}" if r.startswith("bad") else r.upper())
    if c.stats.resent == c.stats.impatient == 0:  # those go again on their callers' own
        assert t.most_in_flight <= max_in_flight
    assert all(len(b) <= max_batch for b in t.batches)
    assert all(len({t.group(r) for r in b}) == 1 for b in t.batches)  # one group a call
    if max_weight is not None:  # a request heavier than the bound goes alone
        assert all(len(b) == 1 or sum(map(t.weight, b)) <= max_weight for b in t.batches)
    assert c.in_flight == 0 and not c._queue
    # Every query was answered by a call that carried it (alone or in a batch).
    carried = sorted(t.ones + [r for b in t.batches for r in b])
    assert all(carried.count(r) >= requests.count(r) for r in set(requests))


def test_the_grpc_transport_resends_what_a_retry_may_answer_and_gives_the_rest() -> None:
    transport = RpcSearchTransport(lambda req, t: pb.SearchResponse(), None, [])  # type: ignore[arg-type]
    for retryable in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        assert transport.final(Failure(retryable)) is None
    assert transport.final(ValueError("closed channel")) is None
    refused = transport.final(Failure(grpc.StatusCode.INVALID_ARGUMENT))
    assert isinstance(refused, InvalidArgument) and "fake INVALID_ARGUMENT" in str(refused)


class StallsSome(FakeTransport):
    """Requests named 'slow…' stall until their own timeout (a paused
    coordinator, a heavy query); every other request is answered at once."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def one(self, request: str, timeout: float) -> str:
        if request.startswith("slow"):
            with self.lock:
                self.ones.append(request)
            self.release.wait(timeout)
            return answer(request)
        return super().one(request, timeout)


def test_stalled_calls_in_flight_do_not_hold_a_queued_caller_until_its_deadline() -> None:
    """Two slow calls (the default max_in_flight) held every other thread of
    the client until THEIR deadlines: a caller the server answers at once
    failed DEADLINE_EXCEEDED unsent (found in review). Past its patience
    (half its timeout) it goes alone."""
    t = StallsSome()
    c: CallCoalescer[str, str] = CallCoalescer(t, Coalescing())
    with ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(c.call, f"slow{i}", 10.0) for i in range(2)]
        _until(lambda: c.in_flight == 2)
        t0 = time.monotonic()
        assert c.call("fast", 0.5) == "FAST"
        assert 0.2 < time.monotonic() - t0 < 0.5  # it waited its patience, not its deadline
        t.release.set()
        assert [f.result() for f in slow] == ["SLOW0", "SLOW1"]
    assert "fast" in t.ones and c.stats.impatient == 1 and not c._queue
    assert c.in_flight == 0


def test_once_calls_are_timed_a_queued_caller_waits_a_few_of_them_not_half_its_timeout() -> None:
    """After calls of ~1 ms, stalled calls hold a queued caller of 10 s for
    about the 50 ms floor of its patience; at normal load the queue still
    leaves in batches (nobody impatient)."""
    t = StallsSome()
    c: CallCoalescer[str, str] = CallCoalescer(t, Coalescing(max_in_flight=1))
    with ThreadPoolExecutor(8) as pool:
        rest = queued_behind_a_call(c, t, pool, list("abcdefg"))
        assert {r: f.result() for r, f in rest.items()} == {r: r.upper() for r in "abcdefg"}
        assert c.stats.batches == 1 and c.stats.impatient == 0
        for i in range(16):  # timed calls
            assert c.call(f"x{i}", 10.0) == f"X{i}"
        slow = pool.submit(c.call, "slow", 10.0)
        _until(lambda: "slow" in t.ones)
        t0 = time.monotonic()
        assert c.call("fast", 10.0) == "FAST"
        assert time.monotonic() - t0 < 1.0
        t.release.set()
        assert slow.result() == "SLOW"
    assert c.stats.impatient == 1
