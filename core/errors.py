"""The one exception tree of vecshard, and its mapping to gRPC status codes.

Status codes are part of the wire contract (DESIGN §8), so the tree lives beside
the protos where every service package can use it:

    VecshardError                      (code UNKNOWN, not retryable)
    ├── InvalidArgument                INVALID_ARGUMENT
    ├── NotFound                       NOT_FOUND
    ├── AlreadyExists                  ALREADY_EXISTS
    ├── FailedPrecondition             FAILED_PRECONDITION
    │   └── Conflict                   ABORTED (compare-and-swap lost; retry after re-read)
    ├── Unauthenticated                UNAUTHENTICATED
    ├── PermissionDenied               PERMISSION_DENIED
    ├── ResourceExhausted              RESOURCE_EXHAUSTED (retryable)
    ├── DeadlineExceeded               DEADLINE_EXCEEDED (retryable)
    ├── Unavailable                    UNAVAILABLE (retryable)
    └── Internal                       INTERNAL

Servers raise these from domain code; one interceptor (`core.runtime`) turns
them into statuses. Clients turn `grpc.RpcError` back with `from_rpc_error`.
Every message says what was wrong and what was expected.
"""

from __future__ import annotations

import grpc


class VecshardError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(VecshardError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(VecshardError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(VecshardError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(VecshardError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Conflict(FailedPrecondition):
    code = grpc.StatusCode.ABORTED


class Unauthenticated(VecshardError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(VecshardError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(VecshardError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    retryable = True


class DeadlineExceeded(VecshardError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    retryable = True


class Unavailable(VecshardError):
    code = grpc.StatusCode.UNAVAILABLE
    retryable = True


class Internal(VecshardError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[VecshardError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Conflict,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        DeadlineExceeded,
        Unavailable,
        Internal,
    )
}


def from_rpc_error(exc: grpc.RpcError) -> VecshardError:
    """The domain exception for a failed call, so callers catch one tree."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    cls = _BY_CODE.get(code, VecshardError)
    err = cls(details or code.name)
    err.code = code
    if too_large(code, details):
        err.retryable = False
    return err


def too_large(code: grpc.StatusCode | None, details: str | None) -> bool:
    """gRPC's own refusal of a message past the size limit (sent or
    received): RESOURCE_EXHAUSTED like an overload, but the same every time —
    a retry only repeats the work."""
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (details or "")
