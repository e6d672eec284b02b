"""The shard's maintenance thread: seals and compacts segments of every index
partition in the background, one build at a time (builds share the shard's
cores with searches, so one at a time keeps search latency predictable).

It wakes when a write makes a seal due, and on an interval for the age
threshold. A failing build is logged and retried on the next round; the data
stays served by the segments that already exist.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

log = logging.getLogger(__name__)


class Maintainable(Protocol):
    def maintain(self) -> bool: ...


class Maintainer:
    def __init__(
        self, partitions: Callable[[], Iterable[Maintainable]], interval_seconds: float
    ) -> None:
        self._partitions = partitions
        self._interval = interval_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shard-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            worked = False
            for part in list(self._partitions()):
                if self._stop.is_set():
                    return
                try:
                    worked |= part.maintain()
                except Exception:
                    log.exception("segment maintenance failed; retrying on the next round")
            if not worked:
                self._wake.wait(self._interval)
                self._wake.clear()

    def stop(self, timeout: float) -> None:
        """Stops after the current build (waits at most `timeout`; a build left
        running dies with the process, and its files are collected at start)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
