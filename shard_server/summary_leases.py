"""Summary leases: why a coordinator may skip a shard on a summary, and what
a write that escapes that summary must wait for (issue 14, defect 3).

A coordinator skips a shard when the shard's summary (balls covering its
rows, per-bucket tenants and attribute ranges) proves it cannot contribute.
Each coordinator asks for summaries itself and uses one for at most its
*lease* (it asks for it with the lease; it counts the lease from the moment
it sent the request). Every coordinator, however many there are, therefore
holds only summaries this shard served within the last lease.

A write whose rows every such summary already covers changes no bound and is
acknowledged at once. A write with a row that some live summary does not
cover (a vector outside every ball, a new tenant in a bucket, an attribute
value outside a bucket's range) is made durable and searchable at once, but
acknowledged only after every summary it escapes has expired. So no query
that begins after the acknowledgement — through any coordinator — can skip
the shard on a summary that misses the write; no coordinator needs to hear
about the write, and the steady state (rows inside the known balls and
ranges) pays nothing.

A coordinator drops its own summary of a shard the moment it sends that
shard a write, so the leases held by the writing coordinator itself never
delay its writes: with one coordinator (`vecshard up`), nothing ever waits.
After a write had to wait, the shard hands out no summaries of that index
version for a quiet period (`quiet_seconds`), so a bulk load pays the wait
once, not per batch; coordinators then simply do not skip the shard.

The record of served summaries is kept under the partition's write lock (a
write is either in a summary or checked against it). Pure logic over numpy
arrays, a whole write at once (`NewRows`); the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.domain import AttrValue
from shard_server.summary import BucketStats


@dataclass(frozen=True, eq=False)
class Coverage:
    """What one served summary vouches for."""

    centroids: np.ndarray  # (c, d) float32
    radii: np.ndarray  # (c,) float32
    buckets: Mapping[int, BucketStats]
    expires: float  # this shard's monotonic clock
    holder: str = ""  # the coordinator it was served to ("" = unknown)


@dataclass(frozen=True)
class NewRow:
    vector: np.ndarray
    bucket: int
    tenant_id: str
    attributes: Mapping[str, AttrValue]


@dataclass(frozen=True, eq=False)
class NewRows:
    """The rows of one write, as arrays: what a summary could fail to cover."""

    vectors: np.ndarray  # (n, d) float32
    buckets: np.ndarray  # (n,) int
    tenants: np.ndarray  # (n,) int codes into tenant_names
    tenant_names: Sequence[str]
    # (attribute, float64 values, present) per int or float attribute column
    numeric: Sequence[tuple[str, np.ndarray, np.ndarray]] = ()

    def __len__(self) -> int:
        return int(self.buckets.shape[0])

    @classmethod
    def of(cls, rows: Sequence[NewRow]) -> NewRows:
        names: dict[str, int] = {}
        numeric: dict[str, tuple[list[float], list[bool]]] = {}
        for i, r in enumerate(rows):
            names.setdefault(r.tenant_id, len(names))
            for name, value in r.attributes.items():
                if isinstance(value, str | tuple | bool):
                    continue
                values, present = numeric.setdefault(name, ([], []))
                values.extend([0.0] * (i - len(values)) + [float(value)])
                present.extend([False] * (i - len(present)) + [True])
        n = len(rows)
        return cls(
            np.stack([r.vector for r in rows]) if rows else np.zeros((0, 0), np.float32),
            np.array([r.bucket for r in rows], dtype=np.int64),
            np.array([names[r.tenant_id] for r in rows], dtype=np.int64),
            tuple(names),
            [
                (
                    name,
                    np.array(values + [0.0] * (n - len(values))),
                    np.array(present + [False] * (n - len(present))),
                )
                for name, (values, present) in numeric.items()
            ],
        )


def _outside_balls(vectors: np.ndarray, centroids: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Per row: lies in no ball (computed in float64 over the stored float32
    balls, the numbers a coordinator bounds with)."""
    if centroids.shape[0] == 0:
        return np.ones(vectors.shape[0], dtype=bool)
    x = vectors.astype(np.float64)
    c = centroids.astype(np.float64)
    d2 = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    dist = np.sqrt(np.maximum(d2, 0.0))
    # A row must be inside by a margin, so float64 rounding here can never
    # call inside a row that the exact distance puts a hair outside.
    margin = 1e-9 * (dist + radii.astype(np.float64)[None, :])
    return ~((dist + margin) <= radii.astype(np.float64)[None, :]).any(axis=1)


def _escapes_stats(rows: NewRows, buckets: Mapping[int, BucketStats]) -> bool:
    """Whether bucket exclusion on these stats could wrongly skip a row: its
    tenant is not listed for its bucket, or a numeric attribute with stats
    lies outside their range (attributes without stats never exclude, see
    coordinator.exclusion; buckets without stats are never excluded)."""
    for bucket in np.unique(rows.buckets).tolist():
        stats = buckets.get(bucket)
        if stats is None:
            continue
        in_bucket = rows.buckets == bucket
        for code in np.unique(rows.tenants[in_bucket]).tolist():
            if rows.tenant_names[code] not in stats.tenants:
                return True
        for name, values, present in rows.numeric:
            rng = stats.ranges.get(name)
            if rng is None:
                continue
            lo, hi, _ = rng
            v = values[in_bucket & present]
            if (~((lo <= v) & (v <= hi))).any():  # NaN escapes too, as `not lo <= v <= hi`
                return True
    return False


class SummaryLeases:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, quiet_seconds: float = 5.0
    ) -> None:
        self._clock = clock
        self.quiet_seconds = quiet_seconds
        self._live: list[Coverage] = []
        self._quiet_until = 0.0

    def may_serve(self) -> bool:
        """False during the quiet period after a write that had to wait."""
        return self._clock() >= self._quiet_until

    def served(
        self,
        centroids: np.ndarray,
        radii: np.ndarray,
        buckets: Mapping[int, BucketStats],
        lease_seconds: float,
        holder: str = "",
    ) -> None:
        """Records a summary handed to `holder`, who may use it for `lease_seconds`."""
        if lease_seconds <= 0:
            return
        now = self._clock()
        self._live = [c for c in self._live if c.expires > now]
        self._live.append(Coverage(centroids, radii, buckets, now + lease_seconds, holder))

    def hold_until(self, rows: NewRows | Sequence[NewRow], writer: str = "") -> float:
        """The clock time before which the write of `rows`, sent by the
        coordinator `writer`, must not be acknowledged (0.0: at once)."""
        now = self._clock()
        self._live = [c for c in self._live if c.expires > now]
        if not len(rows) or not self._live:
            return 0.0
        batch = rows if isinstance(rows, NewRows) else NewRows.of(rows)
        until = 0.0
        for cov in self._live:
            if cov.expires <= until or (writer and cov.holder == writer):
                continue
            escaped = _outside_balls(batch.vectors, cov.centroids, cov.radii).any() or (
                _escapes_stats(batch, cov.buckets)
            )
            if escaped:
                until = cov.expires
        if until:
            self._quiet_until = max(self._quiet_until, now + self.quiet_seconds)
        return until

    @property
    def live(self) -> int:
        return len(self._live)
