"""The coordinator's audit trail: buffered, group-committed, fail-closed.

Records go to a `core.audit_chain.ChainWriter` from one background thread, in
batches, each batch written and fsynced once. What that means for durability:

- a **mutation** (a write, a delete, a registry change, an erasure) is
  acknowledged only after its record is on disk (`record_durable` awaits the
  fsync of the batch holding it); registry changes and erasures also write a
  durable *attempt* record before they run, so a crash in between still
  leaves who tried what;
- a **read** (search, lookup, features) is never made to wait: its record is
  in the next batch, fsynced within `flush_interval` (group commit). A crash
  can lose the records of reads answered in that last interval — no data
  changed, and the window is bounded.

Fail closed: when records cannot be written (disk full, I/O error) or the
backlog passes `max_backlog`, requests are refused (UNAVAILABLE /
RESOURCE_EXHAUSTED) rather than served unaudited.

The head is anchored outside the files (`HeadAnchor`: etcd). At start the
chain on disk is checked against the anchored head first: records cut while
the coordinator was down are written down as a gap (`ChainWriter.reconcile`),
logged and counted (`vecshard_audit_gaps_total`), and the anchor only moves
forward, by compare-and-swap (`coordinator.audit_anchor`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from coordinator import metrics
from core.audit_chain import ChainWriter, describe_gap
from core.errors import ResourceExhausted, Unavailable

log = logging.getLogger(__name__)


class AnchorConflict(Exception):
    """The anchored head is not the one this trail last anchored and is not
    behind its head: another writer anchors under this chain's name, or
    someone set the anchor. It is left as it is (never moved back)."""


class HeadAnchor(Protocol):
    """The chain's head kept outside its files (etcd), so that records cut
    from the end of the files show."""

    def read(self) -> tuple[int, str] | None:
        """The anchored (seq, hash), or None when nothing is anchored."""
        ...

    def advance(self, seq: int, digest: str) -> None:
        """Anchors a newer head; raises AnchorConflict rather than move the
        anchor back or overwrite a head it did not write or read."""
        ...


class AuditTrail:
    def __init__(
        self,
        writer: ChainWriter,
        *,
        flush_interval: float = 0.1,
        max_backlog: int = 200_000,
        anchor: HeadAnchor | None = None,
        anchor_interval: float = 1.0,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        """`anchor` keeps the chain's head outside its files (etcd): read once
        here, before anything is written (raises when it cannot be read: a
        cut could not be found), and advanced at most every `anchor_interval`
        seconds and at close; a failure to advance is logged and retried,
        never fails a request (the files are the record)."""
        if flush_interval <= 0:
            raise ValueError("flush_interval must be > 0 seconds")
        # Called once, from the audit thread, when the trail first fails: the
        # coordinator then reports itself not serving (health), so a load
        # balancer stops sending it requests it would refuse and an
        # orchestrator restarts it — a restart reopens the chain (a torn
        # tail is cut) once the disk has room again.
        self.on_failure = on_failure
        self.anchor = anchor
        self.anchor_interval = anchor_interval
        self._anchored = (0, "")
        self._anchored_at = 0.0
        self.writer = writer
        self.flush_interval = flush_interval
        self.max_backlog = max_backlog
        self._queue: list[Mapping[str, Any]] = []
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._failed: BaseException | None = None
        self.written = 0
        self.batches = 0
        gap = self._reconcile()
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
        self._thread.start()
        if gap is not None:
            self.record({**gap, "ts": time.time()})
        if writer.torn_bytes:
            self.record(
                {
                    "event": "recovered",
                    "ts": time.time(),
                    "torn_bytes": writer.torn_bytes,
                }
            )

    def _reconcile(self) -> dict[str, Any] | None:
        """The gap record to write first, if the chain on disk does not reach
        the anchored head; said loudly, once, at start."""
        if self.anchor is None:
            return None
        try:
            anchored = self.anchor.read()
        except BaseException:
            self.writer.close()  # its lock: a retry in this process must be able to open it
            raise
        if anchored is not None:
            self._anchored = anchored
        gap = self.writer.reconcile(anchored)
        if gap is not None:
            metrics.AUDIT_GAPS.labels(gap["reason"]).inc()
            log.error(
                "audit chain %s: %s; writing a gap record at seq %d (`vecshard audit verify` "
                "reports it from now on)",
                self.writer.directory,
                describe_gap(gap),
                self.writer.seq + 1,
            )
        return gap

    def _check(self) -> None:
        if self._failed is not None:
            raise Unavailable(f"audit trail cannot be written ({self._failed}); refusing requests")
        if len(self._queue) >= self.max_backlog:
            metrics.SHED.labels("audit_backlog").inc()
            raise ResourceExhausted(
                f"audit trail backlog of {len(self._queue)} records; shedding until it drains"
            )

    @property
    def failure(self) -> BaseException | None:
        """Why the trail stopped taking records, or None while it takes them."""
        return self._failed

    def ready(self) -> None:
        """Raises when a request could not be audited (checked before serving it)."""
        with self._cond:
            self._check()

    def record(self, rec: Mapping[str, Any]) -> None:
        """Queues a record for the next group commit (reads: never waits)."""
        with self._cond:
            self._check()
            self._queue.append(rec)
            if len(self._queue) == 1:
                self._cond.notify()

    async def record_durable(self, rec: Mapping[str, Any]) -> None:
        """Returns once the record is fsynced (mutations: before the ack)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            self._check()
            self._queue.append(rec)
            self._waiters.append((loop, fut))
            self._cond.notify()
        await fut

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._waiters and not self._stopping:
                    # Reads only: let the batch grow for up to one interval.
                    self._cond.wait(self.flush_interval)
                batch, self._queue = self._queue, []
                waiters, self._waiters = self._waiters, []
                stopping = self._stopping
            error: BaseException | None = None
            if batch:
                try:
                    self.writer.append(list(batch))
                    self.writer.sync()
                    self.written += len(batch)
                    self.batches += 1
                except Exception as exc:  # noqa: BLE001 - any write failure fails closed
                    log.error("audit trail write failed: %s", exc)
                    error = exc
                    with self._cond:
                        first = self._failed is None
                        self._failed = exc
                    if first and self.on_failure is not None:
                        self.on_failure(exc)
            for loop, fut in waiters:
                loop.call_soon_threadsafe(_settle, fut, error)
            self._anchor(force=stopping)
            if stopping:
                with self._cond:
                    if not self._queue:
                        return

    def _anchor(self, force: bool = False) -> None:
        head = (self.writer.seq, self.writer.prev)
        now = time.monotonic()
        if self.anchor is None or head == self._anchored or head[0] == 0:
            return
        if not force and now - self._anchored_at < self.anchor_interval:
            return
        try:
            self.anchor.advance(*head)
        except AnchorConflict as exc:
            log.error("could not anchor the audit head at seq %d: %s", head[0], exc)
            return
        except Exception as exc:  # noqa: BLE001 - etcd down: anchor again later
            log.warning("could not anchor the audit head at seq %d: %s", head[0], exc)
            return
        finally:
            self._anchored_at = now
        self._anchored = head

    def close(self, timeout: float = 10.0) -> None:
        """Writes and fsyncs what is queued, then closes the chain."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        try:
            self.writer.close()
        except Exception as exc:  # noqa: BLE001 - a trail that failed may not close either
            if self._failed is None:
                raise
            # Nothing more is lost: the next start cuts a torn tail. A stop
            # must not fail on it.
            log.error("closing the failed audit trail failed too: %s", exc)


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(Unavailable(f"audit record not written: {error}"))
