"""The pool replaces a shard's client when its address changes (a shard that
moved, or two requests holding snapshots a revision apart). The old channel
was closed at once, cancelling every call still on it, and grpc.aio says so
with CancelledError in a task nobody cancelled: the request failed CANCELLED
instead of answering or failing over (found in review). The old channel now
closes after a grace; a call its channel does cancel is Unavailable."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
import pytest

from coordinator.remote_shard import RemoteShard
from coordinator.shard_pool import ShardPool
from core.column_wire import embeddings_to_pb
from core.domain import EntityKey
from core.embedding_columns import MISSING, unanswered
from core.errors import Unavailable
from protos.vecshard.v1.internal import shard_pb2 as spb
from protos.vecshard.v1.internal import shard_pb2_grpc
from tests.static_registry import INDEX

KEY = EntityKey("t", "item", "e1")


class _Slow(shard_pb2_grpc.ShardServiceServicer):
    def __init__(self) -> None:
        self.called = asyncio.Event()

    async def BatchGet(self, request: Any, context: Any) -> spb.BatchGetResponse:  # noqa: N802 - gRPC's name
        self.called.set()
        await asyncio.sleep(0.5)  # still in flight when the channel goes
        missing = unanswered(len(request.keys) + len(request.entity_ids), 0, status=MISSING)
        return spb.BatchGetResponse(columns=embeddings_to_pb(missing))


async def _with_server(body: Any) -> Any:
    server = grpc.aio.server()
    slow = _Slow()
    shard_pb2_grpc.add_ShardServiceServicer_to_server(slow, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.local_server_credentials())
    await server.start()
    try:
        return await body(port, slow.called)
    finally:
        await server.stop(None)


def test_a_call_in_flight_outlives_the_channel_the_pool_replaced() -> None:
    async def body(port: int, called: asyncio.Event) -> object:
        pool = ShardPool(credentials=grpc.local_channel_credentials())
        try:
            call = asyncio.ensure_future(
                pool.get("a", f"127.0.0.1:{port}").batch_get(INDEX, [KEY], False, 5.0)
            )
            await called.wait()  # the call is on the channel
            pool.get("a", f"localhost:{port}")  # another request's snapshot
            return await call
        finally:
            await pool.close()

    answer = asyncio.run(_with_server(body))
    assert answer.statuses() == ["missing"]  # answered, not cancelled


def test_a_call_its_channel_cancels_is_unavailable_not_cancelled() -> None:
    async def body(port: int, called: asyncio.Event) -> None:
        shard = RemoteShard("a", f"127.0.0.1:{port}", credentials=grpc.local_channel_credentials())
        call = asyncio.ensure_future(shard.batch_get(INDEX, [KEY], False, 5.0))
        await called.wait()  # the call is on the channel
        await shard.close()  # no grace: the call is cancelled under its task
        with pytest.raises(Unavailable, match="cancelled with its channel"):
            await call

    asyncio.run(_with_server(body))


def test_the_clients_of_shards_that_left_the_registry_are_retired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fleet that churns shard ids kept a channel per id ever seen."""
    monkeypatch.setattr("coordinator.shard_pool.CLOSE_GRACE", 0.01)

    async def body(port: int, called: asyncio.Event) -> None:
        pool = ShardPool(credentials=grpc.local_channel_credentials())
        try:
            kept = pool.get("a", f"127.0.0.1:{port}")
            gone = pool.remote("b", f"127.0.0.1:{port}")
            pool.keep_only({"a", "c"})
            assert len(pool) == 1 and pool.get("a", f"127.0.0.1:{port}") is kept
            for _ in range(200):  # the retired channel closes after its grace
                if gone.channel.get_state() is grpc.ChannelConnectivity.SHUTDOWN:
                    break
                await asyncio.sleep(0.01)
            assert gone.channel.get_state() is grpc.ChannelConnectivity.SHUTDOWN
            # A request on an older snapshot still names it: it gets a new client.
            assert pool.remote("b", f"127.0.0.1:{port}") is not gone
        finally:
            await pool.close()

    asyncio.run(_with_server(body))
