"""Re-reading the registry on demand: coalesced, rate-limited, once per revision.

The watch keeps a snapshot current within about a second, so a request may
name an object created a moment ago that the snapshot still lacks; before
answering NOT_FOUND the caller re-reads etcd. Under load many callers miss at
once (a client retrying an unknown route, a burst right after a deploy, every
request while a shard restarts) and a full read loads the whole prefix. So a
re-read here is:

- **fresh for its caller**: a caller only accepts a read that *began after it
  arrived*; an older read may predate the very object it is looking for;
- **single-flight**: callers that arrive before the next read begins all share
  it, so at most one read runs and at most one waits, however many callers;
- **rate-limited**: reads begin at least `min_interval` apart; a caller waits
  for its turn rather than going without;
- **once per revision**: a read first asks etcd for its revision (a one-key
  range request) and skips loading the prefix when the snapshot is already at
  that revision, i.e. nothing changed anywhere in etcd since it was read.

Thread-safe and blocking: shard servers call it from their RPC threads; the
coordinator runs it in a worker thread (`coordinator.snapshots`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from registry.snapshot import Snapshot


class Rereader:
    def __init__(
        self,
        revision: Callable[[], int],
        current: Callable[[], Snapshot],
        load: Callable[[], Snapshot],
        confirm: Callable[[], None] = lambda: None,
        min_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`revision()`: etcd's current revision (cheap); `current()`: the
        snapshot held now; `load()`: reads the whole prefix and installs it;
        `confirm()`: the held snapshot was found current (resets staleness)."""
        if min_interval < 0:
            raise ValueError(f"min_interval {min_interval} must be >= 0 seconds")
        self._revision = revision
        self._current = current
        self._load = load
        self._confirm = confirm
        self.min_interval = min_interval
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._started = 0  # reads begun so far
        self._finished = 0  # reads ended so far (the last one's outcome is kept)
        self._leading = False  # a caller is waiting for its turn or reading
        self._last_start = -math.inf
        self._outcome: Snapshot | BaseException = Snapshot()
        # For metrics and tests: full loads, reads skipped at the same
        # revision, and callers now waiting for a read another caller makes.
        self.loads = 0
        self.skips = 0
        self.waiting = 0

    def reread(self) -> Snapshot:
        """A snapshot at least as new as etcd was when this call began.
        Raises what the read raised (e.g. Unavailable when etcd is down)."""
        with self._cond:
            wanted = self._started + 1  # the first read that begins after now
            self.waiting += 1
            while self._finished < wanted and self._leading:
                self._cond.wait()
            self.waiting -= 1
            if self._finished >= wanted:
                return self._result()
            self._leading = True
        outcome: Snapshot | BaseException
        try:
            delay = self._last_start + self.min_interval - self._clock()
            if delay > 0:
                self._sleep(delay)
            with self._cond:
                # From here on, arriving callers need the read after this one.
                self._started += 1
                self._last_start = self._clock()
            outcome = self._read()
        except BaseException as exc:  # noqa: BLE001 - handed to every caller sharing the read
            outcome = exc
        with self._cond:
            self._finished = self._started
            self._outcome = outcome
            self._leading = False
            self._cond.notify_all()
            return self._result()

    def _read(self) -> Snapshot:
        held = self._current()
        if held.revision and self._revision() == held.revision:
            self.skips += 1
            self._confirm()
            return held
        self.loads += 1
        return self._load()

    def _result(self) -> Snapshot:
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome
