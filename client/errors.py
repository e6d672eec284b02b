"""The client raises the one exception tree of `core.errors`; this module
turns a failed gRPC call into it, in one place.

    core.errors.VecshardError (.code is the gRPC status, .retryable)
    ├── InvalidArgument  — also raised locally, before sending, for bad input
    ├── NotFound, FailedPrecondition, PermissionDenied, ...
    └── Unavailable, DeadlineExceeded, ResourceExhausted (retryable)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
    VecshardError,
    from_rpc_error,
)

__all__ = [
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "Unavailable",
    "VecshardError",
    "rpc_errors",
]


@contextmanager
def rpc_errors() -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None
