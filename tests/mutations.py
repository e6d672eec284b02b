"""Mutations of a valid protobuf request, one field at a time, for the
fuzz tests of the public API (tests/test_public_api_fuzz.py) and of the
shards' internal one (tests/test_shard_api_fuzz.py): a bytes field cut,
lengthened, emptied, halved, scrambled or all bits set (the packed columns:
vectors, times, values, validity, offsets), a number at its extremes, a
string emptied or odd, a repeated field one item short or long."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message

NUMBERS: dict[int, list[Any]] = {
    FD.TYPE_BOOL: [True, False],
    FD.TYPE_DOUBLE: [float("nan"), float("inf"), -1.0, 1e308],
    FD.TYPE_FLOAT: [float("nan"), -1.0],
    FD.TYPE_ENUM: [0, 99],
    FD.TYPE_UINT32: [0, 2**32 - 1],
    FD.TYPE_INT32: [-1, 2**31 - 1, -(2**31)],
    FD.TYPE_INT64: [-1, 2**63 - 1, -(2**63)],
    FD.TYPE_UINT64: [2**64 - 1],
}
STRINGS = ["", "\x00", "x" * 600, "é\x1f:"]


def copy_of(msg: Message) -> Message:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def _bytes_variants(raw: bytes, rng: random.Random) -> list[bytes]:
    out = [b"", raw[:-1], raw + b"\x00", raw[: len(raw) // 2], rng.randbytes(len(raw))]
    if len(raw) >= 8:
        out.append(np.full(len(raw) // 8, -1, np.int64).tobytes())  # all bits set
    return out


def mutations(msg: Message, rng: random.Random, path: str = "") -> Iterator[tuple[str, Message]]:
    """(what changed, a copy of `msg` with that one change)."""
    for fd in msg.DESCRIPTOR.fields:
        name = f"{path}{fd.name}"
        entry = fd.message_type
        if entry is not None and entry.GetOptions().map_entry:
            entries = getattr(msg, fd.name)
            if entry.fields_by_name["value"].type == FD.TYPE_MESSAGE:
                for key in sorted(entries)[:1]:
                    for what, sub in mutations(entries[key], rng, f"{name}[{key}]."):
                        c = copy_of(msg)
                        getattr(c, fd.name)[key].CopyFrom(sub)
                        yield what, c
        elif fd.type == FD.TYPE_MESSAGE and fd.is_repeated:
            items = getattr(msg, fd.name)
            if len(items):
                for what, sub in mutations(items[0], rng, f"{name}[0]."):
                    c = copy_of(msg)
                    getattr(c, fd.name)[0].CopyFrom(sub)
                    yield what, c
                c = copy_of(msg)
                getattr(c, fd.name).add().CopyFrom(items[-1])
                yield f"{name}: one more", c
        elif fd.type == FD.TYPE_MESSAGE:
            if msg.HasField(fd.name):
                for what, sub in mutations(getattr(msg, fd.name), rng, f"{name}."):
                    c = copy_of(msg)
                    getattr(c, fd.name).CopyFrom(sub)
                    yield what, c
        elif fd.is_repeated:
            items = getattr(msg, fd.name)
            if len(items):
                c = copy_of(msg)
                del getattr(c, fd.name)[-1]
                yield f"{name}: one fewer", c
                c = copy_of(msg)
                getattr(c, fd.name).append(items[-1])
                yield f"{name}: one more", c
        else:
            if fd.type == FD.TYPE_BYTES:
                values: list[Any] = _bytes_variants(getattr(msg, fd.name), rng)
            elif fd.type == FD.TYPE_STRING:
                values = STRINGS
            else:
                values = NUMBERS.get(fd.type, [-1])
            for v in values:
                c = copy_of(msg)
                setattr(c, fd.name, v)
                yield f"{name}={v!r:.40}", c


# What a caller can act on: its request was served, or refused with a reason.
ACTIONABLE = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)
# The admin API adds a conditional change that lost a race (a route switch
# at an expected revision that has moved on): re-read and retry.
ADMIN_ACTIONABLE = ACTIONABLE | {grpc.StatusCode.ABORTED}


def send_mutated(
    call: Callable[..., Any],
    valid: Message,
    metadata: Any,
    streamed: bool,
    rng: random.Random,
    actionable: frozenset[grpc.StatusCode] = ACTIONABLE,
) -> tuple[set[str], list[str]]:
    """Sends `valid` as it is, then each of its mutations: (the status codes
    seen, what was wrong — the request as sent not served, or a status no
    caller can act on)."""
    codes: set[str] = set()
    wrong: list[str] = []
    for what, request in [("as sent", valid), *mutations(valid, rng)]:
        try:
            call(iter([request]) if streamed else request, timeout=20, metadata=metadata)
            code, detail = grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            code, detail = exc.code(), exc.details() or ""
        codes.add(code.name)
        if code not in actionable or (what == "as sent" and code != grpc.StatusCode.OK):
            wrong.append(f"{what}: {code.name} {detail[:200]}")
    return codes, wrong
