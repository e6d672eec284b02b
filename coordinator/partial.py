"""The partial-failure policy, written down as functions (STYLE 6).

A shard failure either aborts the request (the caller's input is wrong, so
every shard would say the same) or is tolerated: its buckets are reported as
missing, with a completeness ratio, and the caller gets what is known — unless
it asked for complete results only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import grpc

from core.errors import DeadlineExceeded, Unavailable, VecshardError


class Decision(Enum):
    ABORT = "abort"
    TOLERATE = "tolerate"


_ABORT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
}


def classify_shard_error(exc: BaseException) -> Decision:
    """Errors about the request abort; errors about the shard are tolerated."""
    if isinstance(exc, VecshardError) and exc.code in _ABORT_CODES:
        return Decision.ABORT
    return Decision.TOLERATE


@dataclass(frozen=True)
class Completeness:
    missing_buckets: tuple[int, ...]
    total_buckets: int

    @property
    def partial(self) -> bool:
        return bool(self.missing_buckets)

    @property
    def ratio(self) -> float:
        if self.total_buckets == 0:
            return 1.0
        return 1.0 - len(self.missing_buckets) / self.total_buckets


def require_complete(c: Completeness, errors: Sequence[BaseException], deadline_hit: bool) -> None:
    """For callers that asked for complete results only."""
    if not c.partial:
        return
    detail = "; ".join(str(e) for e in errors[:3])
    msg = (
        f"{len(c.missing_buckets)} of {c.total_buckets} buckets did not answer "
        f"(missing {list(c.missing_buckets)}); complete results were required"
        + (f": {detail}" if detail else "")
    )
    raise DeadlineExceeded(msg) if deadline_hit else Unavailable(msg)
