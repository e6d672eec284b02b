"""An in-memory copy of the shard's feature column families (DESIGN §7), so a
GetFeatures reads its rows from a dict instead of RocksDB.

Why: an 800-candidate fetch asks each of three shards for ~270 rows of each
group, and at 1,000,000 items a RocksDB point lookup (memtable skip-list
seek, index and data block binary search, block-cache lookups) cost ~2 µs a
key — about 40 % of a shard's CPU per request, and no table or cache option
moved it (benchmarks/README.md). A dict lookup costs ~0.1 µs.

RocksDB stays the store of record: every write is synced there first, and
this copy is updated in the same critical section as the write (the
store's sequence lock), after the batch is durable — so a reader never sees
a row that is not acknowledged-durable, and once a write returns every
later read sees it. A group version is served from here only while its
copy is *complete*: created empty with its column family, or filled by a
warm-up scan of what is on disk (on open) whose gaps are closed by the
writes recorded while it ran. Column families that do not fit the byte
budget are read from RocksDB, as before; the budget is counted, not
estimated from a process-wide RSS.

Which group versions hold the memory: the ones being read. A model change
adds a group version and stops reading the old one, which would otherwise
keep its copy (nothing drops a column family) while the new one — the one
served — outgrows what is left and is read from RocksDB until a restart.
So every read notes when its family was last read; a family not read for
`idle_seconds` gives its memory up (evicted, LRU first) to one that grows
or is copied, and a family read while over budget is copied again (at most
every `retry_seconds`) once that room exists. Two groups that are both read
and do not fit together never evict each other: only idle ones give way.

Every method that changes the copy is called with the store's sequence
lock held (the store calls them); `rows` is lock-free (a dict read is
atomic under the GIL, and each row is independent: a reader racing a write
sees, per row, the old or the new one), and so are the figures for metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

# Python's own bytes per cached row beside its key and value: two bytes
# objects (~33 bytes of header each) and a dict slot (~50 bytes).
ROW_OVERHEAD = 120


def row_bytes(key: bytes, value: bytes) -> int:
    return len(key) + len(value) + ROW_OVERHEAD


class FeatureRowCache:
    def __init__(
        self,
        budget_bytes: int,
        idle_seconds: float = 300.0,
        retry_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if budget_bytes < 0:
            raise ValueError(f"feature cache budget {budget_bytes} must be ≥ 0 bytes")
        if idle_seconds <= 0 or retry_seconds <= 0:
            raise ValueError(
                f"feature cache idle ({idle_seconds} s) and retry ({retry_seconds} s) "
                "must be > 0 seconds"
            )
        self.budget = budget_bytes
        self.idle_seconds, self.retry_seconds = idle_seconds, retry_seconds
        self._clock = clock
        self._complete: dict[str, dict[bytes, bytes]] = {}
        self._sizes: dict[str, int] = {}
        # Per family being copied: the writes since its warm-up began, the
        # last per key (None: deleted).
        self._warming: dict[str, dict[bytes, bytes | None]] = {}
        # Column families dropped for the budget: read from RocksDB until a
        # later copy fits (`due`), with the size they had when dropped.
        self.over_budget: set[str] = set()
        self._dropped_size: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        # When each family was last read (or copied): the LRU order of eviction.
        self._touched: dict[str, float] = {}
        self.evictions = 0

    @property
    def used_bytes(self) -> int:
        return sum(self._sizes.values())

    def tracks(self, cf: str) -> bool:
        """Whether writes to `cf` matter here (its copy is complete or being
        made): lets a caller skip a whole family before building rows."""
        return cf in self._complete or cf in self._warming

    def census(self) -> dict[str, int]:
        """Group versions per state, for the shard's metrics."""
        horizon = self._clock() - self.idle_seconds
        read = sum(self._touched.get(cf, 0.0) >= horizon for cf in list(self.over_budget))
        return {
            "in_memory": len(self._complete),
            "warming": len(self._warming),
            # Read lately, yet from RocksDB: what an operator should act on.
            "over_budget": read,
            # Not read lately (an old version a model change left): harmless.
            "idle": len(self.over_budget) - read,
        }

    def rows(self, cf: str, touch: bool = True) -> dict[bytes, bytes] | None:
        """The complete copy of `cf`, or None (read RocksDB). Notes a
        serving read (`touch`): a family read lately keeps its memory."""
        if touch:
            self._touched[cf] = self._clock()
        return self._complete.get(cf)

    def due(self, cf: str) -> bool:
        """Whether `cf`, read while over budget, should be copied again now:
        at most once per `retry_seconds`, and never when it was larger than
        the whole budget. Lock-free (a read calls it); the copy itself
        checks for room under the lock (`room_for`)."""
        if cf not in self.over_budget or self._dropped_size.get(cf, 0) > self.budget:
            return False
        now = self._clock()
        if now < self._retry_at.get(cf, 0.0):
            return False
        self._retry_at[cf] = now + self.retry_seconds
        return True

    def room_for(self, cf: str) -> int:
        """Bytes a copy of `cf` may take: what is free plus what idle
        families would give up. 0 when not even its last known size fits."""
        room = self.budget - self.used_bytes + sum(self._sizes[c] for c in self._idle(cf))
        return room if room >= self._dropped_size.get(cf, 0) else 0

    def created(self, cf: str) -> None:
        """A new, empty column family: its copy is complete at once."""
        if self.budget and cf not in self._complete and cf not in self._warming:
            self._complete[cf] = {}
            self._sizes[cf] = 0
            self._touched[cf] = self._clock()

    def removed(self, cf: str) -> None:
        """`cf` was dropped (its group version retired): its memory is
        freed at once, and a warm-up of it in progress publishes nothing."""
        self._complete.pop(cf, None)
        self._sizes.pop(cf, None)
        self._warming.pop(cf, None)
        self.over_budget.discard(cf)
        self._dropped_size.pop(cf, None)
        self._retry_at.pop(cf, None)
        self._touched.pop(cf, None)

    def begin_warm(self, cf: str) -> bool:
        """Starts recording the writes to `cf`; the caller then scans it (an
        iterator opened after this call) and hands the rows to `finish_warm`."""
        if not self.budget or cf in self._complete or cf in self._warming:
            return False
        self._warming[cf] = {}
        self.over_budget.discard(cf)
        return True

    def finish_warm(self, cf: str, scanned: dict[bytes, bytes], size: int) -> bool:
        """Publishes the scan with the writes recorded since `begin_warm` on
        top (they are newer than anything the scan saw, or the same)."""
        pending = self._warming.pop(cf, None)
        if pending is None:
            return False
        for key, value in pending.items():
            old = scanned.pop(key, None)
            if old is not None:
                size -= row_bytes(key, old)
            if value is not None:
                scanned[key] = value
                size += row_bytes(key, value)
        if not self._make_room(size, cf):
            self._drop(cf, size)
            return False
        self._complete[cf] = scanned
        self._sizes[cf] = size
        self._touched.setdefault(cf, self._clock())
        self._dropped_size.pop(cf, None)
        return True

    def abandon_warm(self, cf: str) -> None:
        """A scan stopped because the store is closing."""
        self._warming.pop(cf, None)

    def refuse_warm(self, cf: str, size: int) -> None:
        """A scan stopped at the budget (`size`: bytes it had copied, at
        least; the size last known is kept if larger)."""
        self._warming.pop(cf, None)
        self._drop(cf, max(size, self._dropped_size.get(cf, 0)))

    def applied(self, changes: Iterable[tuple[str, bytes, bytes | None]]) -> None:
        """Durable writes, in their order: (column family, key, value or None
        for a delete). Column families not copied here are ignored."""
        grown: set[str] = set()
        # A batch is usually one family: look it up once per run of rows.
        last: str | None = None
        rows: dict[bytes, bytes] | None = None
        pending: dict[bytes, bytes | None] | None = None
        delta = 0
        for cf, key, value in changes:
            if cf != last:
                if rows is not None and last is not None:
                    self._sizes[last] += delta
                    if delta > 0:
                        grown.add(last)
                last, delta = cf, 0
                rows, pending = self._complete.get(cf), self._warming.get(cf)
            if rows is not None:
                # Replaced in one assignment, never popped first: a reader
                # racing an overwrite must not see the row missing.
                old = rows.get(key) if value is not None else rows.pop(key, None)
                if old is not None:
                    delta -= ROW_OVERHEAD + len(key) + len(old)
                if value is not None:
                    rows[key] = value
                    delta += ROW_OVERHEAD + len(key) + len(value)
            elif pending is not None:
                pending[key] = value
        if rows is not None and last is not None:
            self._sizes[last] += delta
            if delta > 0:
                grown.add(last)
        if grown and not self._make_room(0, None):
            for cf in sorted(grown, key=lambda c: -self._sizes[c]):
                self._drop(cf, self._sizes[cf])
                if self.used_bytes <= self.budget:
                    break

    def _idle(self, besides: str | None) -> list[str]:
        """Complete families not read for `idle_seconds`, least recently
        read first (`besides` excluded)."""
        horizon = self._clock() - self.idle_seconds
        idle = [c for c in self._complete if c != besides and self._touched.get(c, 0.0) < horizon]
        return sorted(idle, key=lambda c: self._touched.get(c, 0.0))

    def _make_room(self, need: int, besides: str | None) -> bool:
        """Evicts idle families, least recently read first, until `need`
        more bytes fit the budget; whether they do."""
        if self.used_bytes + need <= self.budget:
            return True
        idle = self._idle(besides)
        if self.used_bytes + need - sum(self._sizes[c] for c in idle) > self.budget:
            return False  # evicting them all would not do: evict none
        for cf in idle:
            size = self._sizes[cf]
            self._complete.pop(cf)
            self._sizes.pop(cf)
            self._forget(cf, size)
            self.evictions += 1
            log.info(
                "feature cache: evicted %s (%.1f MiB, not read for %.0f s) to make room",
                cf,
                size / 2**20,
                self._clock() - self._touched.get(cf, 0.0),
            )
            if self.used_bytes + need <= self.budget:
                return True
        return False

    def _forget(self, cf: str, size: int) -> None:
        """`cf` is read from RocksDB from now on; a read may copy it again
        after `retry_seconds` (`due`)."""
        self.over_budget.add(cf)
        self._dropped_size[cf] = size
        self._retry_at[cf] = self._clock() + self.retry_seconds

    def _drop(self, cf: str, size: int) -> None:
        self._complete.pop(cf, None)
        self._sizes.pop(cf, None)
        self._forget(cf, size)
        log.warning(
            "feature rows of %s (%.1f MiB) do not fit the feature cache (%.1f MiB, %.1f MiB "
            "used by other groups): they are read from RocksDB; raise "
            "VECSHARD__SHARD__FEATURE_CACHE_MIB to serve them from memory",
            cf,
            size / 2**20,
            self.budget / 2**20,
            self.used_bytes / 2**20,
        )
