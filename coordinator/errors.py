"""Coordinator errors are the shared tree in `core.errors`; this module holds
the policy that turns a shard's failure into one of them.

    core.errors.VecshardError
    ├── (a shard's own status, re-raised with the shard named)
    └── Unavailable     a shard could not be reached or has no serving replica
"""

from __future__ import annotations

import grpc

from core.errors import Unavailable, VecshardError, from_rpc_error


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
