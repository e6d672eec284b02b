"""A shard's background work on a timer (anti-entropy rounds, expired
feature rows): one daemon thread per kind of work, jittered so that the
replicas of a cluster started together do not all scan at once, and a
failed run logged and retried at the next tick rather than ending the
thread."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(
        self,
        name: str,
        work: Callable[[], object],
        interval: float,
        on_error: Callable[[], None] = lambda: None,
    ) -> None:
        """`interval` 0 turns the work off (`start` starts nothing)."""
        self.name = name
        self.work = work
        self.interval = interval
        self.on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def stopping(self) -> bool:
        """Long work checks this between steps, so that `stop` does not wait
        for all of it."""
        return self._stop.is_set()

    def start(self) -> None:
        if self.interval > 0:
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Waits for a run under way to reach its next step (the store the
        work reads closes after this)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval * random.uniform(0.75, 1.25)):
            try:
                self.work()
            except Exception:  # noqa: BLE001 - the next tick tries again
                self.on_error()
                log.exception("%s failed; the next run tries again", self.name)
