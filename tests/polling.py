"""Polling for states nothing signals: a lease expiring, a shard's summary
quiet period ending, another thread reaching a point. One loop, so every
test waits the same way: fetch, check, and give up after `timeout` with
the last value fetched (the test's assertions then say what was wrong)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    fetch: Callable[[], T], done: Callable[[T], bool], timeout: float, interval: float = 0.05
) -> T:
    end = time.monotonic() + timeout
    value = fetch()
    while not done(value) and time.monotonic() < end:
        time.sleep(interval)
        value = fetch()
    return value


async def poll_async(
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout: float,
    interval: float = 0.05,
) -> T:
    end = time.monotonic() + timeout
    value = await fetch()
    while not done(value) and time.monotonic() < end:
        await asyncio.sleep(interval)
        value = await fetch()
    return value


def eventually(check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Whether `check` came to hold within `timeout`."""
    return poll(check, bool, timeout, interval)
