"""The coordinator's batcher (coordinator/batcher.py): how long one shard
call lives and what its members get. Found in review, each reproduced
first: a call every member had given up on kept the lane's only call slot
until the latest deadline its dead members had, so every later query for the
shard failed DEADLINE_EXCEEDED though the shard was idle for it; and a shard
answer of the wrong length left members unset until their deadlines."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from coordinator.batcher import BatchingShard
from coordinator.model import ShardAnswer, ShardQuery
from core.domain import VersionRef
from core.errors import Internal
from tests.static_registry import INDEX

Q = ShardQuery(np.zeros(4, np.float32), 1, "t")


class FirstCallStalls:
    """The first call stalls (a heavy query, a pause) until its timeout or
    until cancelled, as a gRPC call is when its caller goes; every later
    call answers at once."""

    shard_id, address = "a", "mem://a"

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0
        self.out = asyncio.Event()

    async def search(
        self, index: VersionRef, qs: list[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        self.calls += 1
        self.out.set()
        try:
            if self.calls == 1:
                await asyncio.sleep(min(timeout, 30.0))
            return [ShardAnswer.of([], 0) for _ in qs]
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def test_a_call_every_member_gave_up_on_is_cancelled_and_frees_its_slot() -> None:
    inner = FirstCallStalls()
    shard = BatchingShard(inner)  # type: ignore[arg-type]  # the search half of a Shard

    async def scenario() -> list[ShardAnswer]:
        inner.out = asyncio.Event()
        first = asyncio.ensure_future(shard.search(INDEX, [Q, Q], 20.0))
        await inner.out.wait()  # its call is out
        first.cancel()  # its caller gave up (cancelled, or its hedge won)
        await asyncio.gather(first, return_exceptions=True)
        return await shard.search(INDEX, [Q], 0.5)  # the shard is free for it

    assert len(asyncio.run(scenario())) == 1
    assert inner.cancelled == 1 and inner.calls == 2


class Steady(FirstCallStalls):
    """Every call takes 0.1 s; `second` is set when the second call is out."""

    def __init__(self) -> None:
        super().__init__()
        self.second = asyncio.Event()
        self.batches: list[int] = []

    async def search(
        self, index: VersionRef, qs: list[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        self.batches.append(len(qs))
        if len(self.batches) == 2:
            self.second.set()
        try:
            await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return [ShardAnswer.of([], 0) for _ in qs]


def test_a_call_goes_on_while_one_member_still_waits() -> None:
    inner = Steady()
    shard = BatchingShard(inner)  # type: ignore[arg-type]

    async def scenario() -> list[ShardAnswer]:
        inner.second = asyncio.Event()
        first = asyncio.ensure_future(shard.search(INDEX, [Q], 5.0))
        await asyncio.sleep(0)  # out: the next two queue, then leave together
        a, b = (asyncio.ensure_future(shard.search(INDEX, [Q], 5.0)) for _ in range(2))
        await inner.second.wait()
        a.cancel()
        await asyncio.gather(first, a, return_exceptions=True)
        return await b

    assert len(asyncio.run(scenario())) == 1
    assert inner.batches == [1, 2] and inner.cancelled == 0


def test_the_loop_shutting_down_cancels_a_call_and_its_members() -> None:
    inner = FirstCallStalls()
    shard = BatchingShard(inner)  # type: ignore[arg-type]

    async def scenario() -> None:
        inner.out = asyncio.Event()
        waiting = asyncio.ensure_future(shard.search(INDEX, [Q], 20.0))
        await inner.out.wait()
        for task in list(shard._tasks):  # what asyncio.run does to what is left
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())
    assert inner.cancelled == 1


class ShortAnswer:
    """Answers one query fewer than it was asked (a shard bug)."""

    shard_id, address = "a", "mem://a"

    async def search(
        self, index: VersionRef, qs: list[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        return [ShardAnswer.of([], 0) for _ in qs[1:]]


def test_an_answer_of_the_wrong_length_fails_every_member_at_once() -> None:
    shard = BatchingShard(ShortAnswer())  # type: ignore[arg-type]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(Internal, match="answered 1 of 2 queries"):
            await shard.search(INDEX, [Q, Q], 2.0)
        assert loop.time() - start < 1.0  # not at its deadline

    asyncio.run(scenario())
