"""Waiting for stop signals in the main thread, with no work in the handler.

Why: `vecshard up` and the shard server did `signal.signal(sig, lambda *_:
stop.set())` and then `stop.wait()`, which can hang two ways:
- Python runs a handler in the main thread between two bytecodes — also
  while that thread holds the lock `threading.Event.set()` takes (`Event.wait`
  holds it on its way in and out, and a handler holds it while a second signal
  arrives). A burst of SIGTERM and SIGINT — Ctrl-C reaching a process group
  whose parent is stopping it too — left 14 of 200 such processes hung for
  good, every later signal's handler queued behind the first.
- The kernel may deliver a process's signal to any of its threads. The
  Python handler still runs only in the main thread, when it next executes
  bytecode — never, while it sleeps on a lock: after a rolling restart had
  added reader threads, `vecshard up` ignored SIGINT and SIGTERM.
Here the signal module's wake-up fd does the work: its C-level handler, in
whichever thread took the signal, writes the signal's number to a pipe that
the main thread waits on; the Python-level handler does nothing. Tests:
`tests/test_signal_waiter.py`.
"""

from __future__ import annotations

import os
import select
import signal
from collections import deque
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any


def _noted(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the wake-up byte already recorded the signal
    (and a handler must exist for Python to take the signal at all)."""


class SignalWaiter:
    """The signals in `signals`, in the order they arrived, for the main
    thread to act on. Owns the process's signal wake-up fd (one per process;
    not for a thread running an asyncio loop, which owns it there)."""

    def __init__(self, signals: Iterable[int]) -> None:
        self._signals = frozenset(int(s) for s in signals)
        self._received: deque[int] = deque()
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._handlers: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {
            s: signal.signal(s, _noted) for s in self._signals
        }
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    def wait(self, timeout: float | None = None) -> int | None:
        """The oldest signal not yet returned, waiting up to `timeout`
        seconds (None: for ever); None if none came in time."""
        while not self._received:
            if not self._read_pipe(timeout):
                return None
        return self._received.popleft()

    def pending(self) -> bool:
        """Whether a signal came that `wait` has not returned yet, without
        waiting or taking it (a long start-up polls it to stop early)."""
        self._read_pipe(0)
        return bool(self._received)

    def discard(self, signum: int) -> None:
        """Forgets the received `signum`s not yet returned (e.g. restart
        requests that came while a restart ran: one restart serves them)."""
        while self._read_pipe(0):
            pass
        kept = [s for s in self._received if s != signum]
        self._received.clear()
        self._received.extend(kept)

    def _read_pipe(self, timeout: float | None) -> bool:
        """Queues the signal numbers the wake-up pipe holds, waiting up to
        `timeout` for one; False if none came."""
        if not select.select([self._read], [], [], timeout)[0]:
            return False
        self._received.extend(s for s in os.read(self._read, 4096) if s in self._signals)
        return True

    def close(self) -> None:
        """Gives the handlers and the wake-up fd back (tests; a server keeps
        its waiter for life)."""
        signal.set_wakeup_fd(self._previous_fd)
        for s, handler in self._handlers.items():
            signal.signal(s, handler)
        os.close(self._read)
        os.close(self._write)
