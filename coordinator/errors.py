"""Coordinator errors are the shared tree in `core.errors`; this module holds
the policy that turns a shard's failure into one of them.

    core.errors.VecshardError
    ├── (a shard's own status, re-raised with the shard named)
    ├── PermissionDenied
    │   └── QueriesRefused  some queries of one shard call refused, the others answered
    └── Unavailable     a shard could not be reached or has no serving replica
"""

from __future__ import annotations

import grpc

from core.errors import PermissionDenied, Unavailable, VecshardError, from_rpc_error


class QueriesRefused(PermissionDenied):
    """A shard refused some queries of one call by its access checks and
    answered the others (`PackedSearchResponse.refused`). The adaptive
    batcher hands each waiting query its own outcome — a batch mixes callers,
    and one caller's refusal must not fail the others; anyone else sees the
    call refused, as it was before shards answered per query."""

    def __init__(self, answers: list[object], refused: dict[int, PermissionDenied]) -> None:
        super().__init__(refused[min(refused)].message)
        self.answers = answers  # per query: its answer (a refused one's is empty)
        self.refused = refused


def shard_error(shard_id: str, address: str, exc: BaseException) -> VecshardError:
    """A shard call failed: keep the shard's status code, name the shard."""
    if isinstance(exc, grpc.RpcError):
        err = from_rpc_error(exc)
        if err.code in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.UNKNOWN,
            grpc.StatusCode.CANCELLED,
        ):
            return Unavailable(f"shard {shard_id} at {address} is unavailable: {err.message}")
        err.message = f"shard {shard_id}: {err.message}"
        err.args = (err.message,)
        return err
    if isinstance(exc, VecshardError):
        return exc
    return Unavailable(f"shard {shard_id} at {address} failed: {type(exc).__name__}: {exc}")
