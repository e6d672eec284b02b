"""Connections to a coordinator tier: several coordinators, retries, deadlines.

Production runs several stateless coordinators behind a load balancer, and
any of them may restart at any time. The SDK therefore talks to a *tier*:
give it several addresses (a list, or "host:port,host:port"), or one DNS
name whose records list them (`dns:///coordinators.svc:7300` — gRPC then
balances across the records). Calls rotate over the addresses, and a call
that fails because a coordinator is unreachable or shedding load
(`UNAVAILABLE`, `RESOURCE_EXHAUSTED`) is retried on the next one, with
exponential backoff and full jitter, within the caller's deadline.

Only idempotent calls are retried. On `RetrievalService` all of them are:
reads, and writes that carry a `source_version` (the SDK stamps one from
its clock when the caller gives none, so a retry repeats the same version
and cannot duplicate or reorder anything; `PutFeatures` rows are ordered by
their own times). On `RegistryService`, reads, `Apply` (declarative) and
`SetShardState` are; `Promote`, `SwitchRoute`, `Rollback` and
`TrainPlacement` are not, and are never retried blindly.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from client.credentials import Credentials
from core.errors import DeadlineExceeded, InvalidArgument, from_rpc_error, too_large
from protos.vecshard.v1 import common_pb2 as cpb

Req = TypeVar("Req")
Resp = TypeVar("Resp")

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
_MAX_MESSAGE = 64 * 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    initial_backoff: float = 0.02
    max_backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidArgument(f"max_attempts={self.max_attempts}: expected at least 1")
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise InvalidArgument(
                f"backoff {self.initial_backoff}..{self.max_backoff}: expected 0 < initial <= max"
            )

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, initial·2^attempt)]."""
        return rng.uniform(0.0, min(self.max_backoff, self.initial_backoff * 2**attempt))


def now_micros() -> int:
    """The SDK's version clock for writes that carry none (microseconds, the
    unit the coordinator's clock and `source_version` use)."""
    return time.time_ns() // 1000


def addresses_of(address: str | Sequence[str]) -> list[str]:
    """The coordinator addresses named by a string ("a,b" allowed) or a list."""
    parts = address.split(",") if isinstance(address, str) else list(address)
    out = [p.strip() for p in parts if p.strip()]
    if not out:
        raise InvalidArgument("no coordinator address given; expected HOST:PORT[,HOST:PORT...]")
    return out


class Connection:
    """Channels to every given coordinator and the retry loop around a call."""

    def __init__(
        self,
        address: str | Sequence[str],
        policy: RetryPolicy | None = None,
        *,
        credentials: Credentials | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        self.addresses = addresses_of(address)
        self.policy = policy or RetryPolicy()
        creds = credentials if credentials is not None else Credentials.from_env()
        options: list[tuple[str, str | int]] = [
            ("grpc.lb_policy_name", "round_robin"),  # one DNS name, many records
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            *creds.channel_options(),
        ]
        # TLS always: coordinators serve nothing else (client.credentials);
        # the token goes with every call as metadata.
        channel_creds = creds.channel_credentials()
        self.metadata = creds.call_metadata()
        self.channels = [
            grpc.secure_channel(a, channel_creds, options=options) for a in self.addresses
        ]
        self._turn = itertools.count(random.Random(seed).randrange(len(self.channels)))
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._sleep = sleep

    def stubs(self, factory: Callable[[grpc.Channel], object]) -> list[object]:
        return [factory(ch) for ch in self.channels]

    def next_channel(self) -> int:
        """The channel the next call goes on (calls rotate over the coordinators)."""
        with self._lock:
            return next(self._turn) % len(self.channels)

    def call(
        self,
        method: Callable[[int], Callable[..., Resp]],
        request: object,
        timeout: float,
        *,
        idempotent: bool = True,
    ) -> Resp:
        """Calls `method(i)` (the RPC on channel i) with `request`, retrying
        retryable failures of idempotent calls on the next coordinator until
        `timeout` seconds have passed; raises the `core.errors` tree."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"no coordinator answered within {timeout:.3g} s "
                    f"({attempt} attempt(s) over {len(self.addresses)} address(es))"
                )
            try:
                return method(self.next_channel())(
                    request, timeout=remaining, metadata=self.metadata
                )
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                attempt += 1
                transient = code in RETRYABLE and not too_large(
                    code, exc.details() if hasattr(exc, "details") else None
                )
                if not idempotent or not transient or attempt >= self.policy.max_attempts:
                    raise from_rpc_error(exc) from None
                pause = self.policy.backoff(attempt - 1, self._rng)
                if time.monotonic() + pause >= deadline:
                    raise from_rpc_error(exc) from None
                self._sleep(pause)

    def close(self) -> None:
        for ch in self.channels:
            ch.close()


class ClientCalls:
    """What the parts of `RetrievalClient` kept in their own modules
    (features, bulk writes, search batches) call on the client they are
    mixed into: its access context, its timeout rule and its RPC call."""

    access: cpb.AccessContext

    def _timeout(self, timeout: float | None) -> float:
        raise NotImplementedError

    def _rpc(self, name: str, request: Any, timeout: float | None, idempotent: bool = True) -> Any:
        raise NotImplementedError
