"""The SDK's retry loop (client.connection): which failures are retried, on
which coordinator, with what backoff, and never past the caller's deadline."""

from __future__ import annotations

import random
from collections.abc import Callable

import grpc
import pytest

from client.connection import Connection, RetryPolicy, addresses_of
from core.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted, Unavailable
from tests.rpc_failures import Failure


class Tier:
    """Coordinators by channel index: each answers by a script of outcomes."""

    def __init__(self, scripts: dict[int, list[grpc.StatusCode | str]]) -> None:
        self.scripts = scripts
        self.calls: list[tuple[int, float]] = []

    def method(self, i: int) -> Callable[..., str]:
        """A stand-in for channel i's stub method."""

        def rpc(request: object, timeout: float, metadata: object = ()) -> str:
            self.calls.append((i, timeout))
            outcome = self.scripts[i].pop(0) if self.scripts[i] else "ok"
            if isinstance(outcome, grpc.StatusCode):
                raise Failure(outcome)
            return f"{outcome} from {i}"

        return rpc


def conn(n: int, **policy: float) -> tuple[Connection, list[float]]:
    slept: list[float] = []
    c = Connection(
        [f"127.0.0.1:{9000 + i}" for i in range(n)],
        RetryPolicy(**policy),  # type: ignore[arg-type]
        sleep=slept.append,
        seed=1,
    )
    return c, slept


def test_addresses() -> None:
    assert addresses_of("a:1, b:2") == ["a:1", "b:2"]
    assert addresses_of(["a:1"]) == ["a:1"]
    with pytest.raises(InvalidArgument, match="HOST:PORT"):
        addresses_of(" , ")


def test_an_unavailable_coordinator_is_skipped_for_the_next_one() -> None:
    c, slept = conn(2)
    tier = Tier({0: [grpc.StatusCode.UNAVAILABLE] * 100, 1: []})  # coordinator 0 is down
    for _ in range(6):
        assert c.call(tier.method, "req", 5.0) == "ok from 1"
    used = [i for i, _ in tier.calls]
    assert used.count(1) == 6 and used.count(0) <= 6, "each call tries 0 at most once"
    assert all(0 <= s <= 0.02 for s in slept) and len(slept) == used.count(0)
    c.close()


def test_shedding_is_retried_and_the_deadline_shrinks_per_attempt() -> None:
    c, _ = conn(1)
    tier = Tier({0: [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE]})
    assert c.call(tier.method, "req", 5.0) == "ok from 0"
    timeouts = [t for _, t in tier.calls]
    assert len(timeouts) == 3 and timeouts == sorted(timeouts, reverse=True)
    assert all(t <= 5.0 for t in timeouts)
    c.close()


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ],
)
def test_other_errors_are_not_retried(code: grpc.StatusCode) -> None:
    c, _ = conn(2)
    tier = Tier({0: [code], 1: [code]})
    with pytest.raises(Exception) as err:
        c.call(tier.method, "req", 5.0)
    assert getattr(err.value, "code", None) == code
    assert len(tier.calls) == 1
    c.close()


def test_a_message_past_the_size_limit_is_not_retried() -> None:
    """RESOURCE_EXHAUSTED from gRPC's own size check is the same every
    time: a 10,000-key lookup was read and sent three times over 10 s."""
    c, _ = conn(2)
    too_big = "Sent message larger than max (82170034 vs. 67108864)"
    calls: list[int] = []

    def method(i: int) -> Callable[..., str]:
        def rpc(request: object, timeout: float, metadata: object = ()) -> str:
            calls.append(i)
            raise Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, too_big)

        return rpc

    with pytest.raises(ResourceExhausted, match="larger than max") as err:
        c.call(method, "req", 5.0)
    assert len(calls) == 1 and err.value.retryable is False
    c.close()


def test_non_idempotent_calls_are_never_retried() -> None:
    c, _ = conn(2)
    tier = Tier({0: [grpc.StatusCode.UNAVAILABLE], 1: [grpc.StatusCode.UNAVAILABLE]})
    with pytest.raises(Unavailable):
        c.call(tier.method, "req", 5.0, idempotent=False)
    assert len(tier.calls) == 1
    c.close()


def test_attempts_are_bounded() -> None:
    c, slept = conn(2, max_attempts=3)
    tier = Tier({0: [grpc.StatusCode.UNAVAILABLE] * 9, 1: [grpc.StatusCode.UNAVAILABLE] * 9})
    with pytest.raises(Unavailable):
        c.call(tier.method, "req", 5.0)
    assert len(tier.calls) == 3 and len(slept) == 2
    c.close()


def test_no_retry_past_the_deadline() -> None:
    c, _ = conn(1, initial_backoff=10.0, max_backoff=10.0)
    # A backoff that would end past the deadline is not slept: the error is raised.
    c._rng = random.Random(0)
    tier = Tier({0: [grpc.StatusCode.UNAVAILABLE] * 5})
    with pytest.raises(Unavailable):
        c.call(tier.method, "req", 0.5)
    assert len(tier.calls) == 1
    with pytest.raises(DeadlineExceeded):
        c.call(tier.method, "req", 0.0)
    c.close()


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=0.5)
    rng = random.Random(3)
    draws = [policy.backoff(a, rng) for a in range(8) for _ in range(50)]
    assert min(draws) >= 0 and max(draws) <= 0.5
    assert max(policy.backoff(0, rng) for _ in range(50)) <= 0.1
    with pytest.raises(InvalidArgument):
        RetryPolicy(max_attempts=0)
