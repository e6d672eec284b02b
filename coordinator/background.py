"""Work that outlives its request: shadow searches, and replica writes still
running when the quorum was met. asyncio keeps only weak references to tasks,
so each is held here until it ends; shutdown drains them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[None]] = set()

    def spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
