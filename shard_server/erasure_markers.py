"""A shard's erasure markers for feature rows: entity key → the time its
subject was erased (µs), in the `feature_erasures` column family and in
memory (few: one per erased subject, so every write checks a dict, and only
when there is any).

A row of a marked entity stamped at or before its marker is refused — a
producer replaying an erased subject's history cannot bring it back — and a
later one (new activity) is accepted. Replicas copy each other's markers
with their rows (`ExportFeatureRows`): a shard that lost its disk, or joined
a bucket's replicas later, refuses the same history its peers refuse.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping

from shard_server import metrics
from shard_server.storage import FEATURE_ERASURES

_TIME = struct.Struct("<q")  # a marker's value: erased at, µs

Puts = list[tuple[str, bytes, bytes]]


class ErasureMarkers:
    def __init__(self, stored: Iterable[tuple[bytes, bytes]]) -> None:
        self._at: dict[bytes, int] = {k: _TIME.unpack(v)[0] for k, v in stored}

    def __bool__(self) -> bool:
        return bool(self._at)

    def items(self) -> Iterator[tuple[bytes, int]]:
        return iter(list(self._at.items()))

    def refuses(self, key: bytes, feature_timestamp: int) -> bool:
        """Whether a row of `key` stamped `feature_timestamp` belongs to an
        erased subject's past (refused, and counted)."""
        erased_at = self._at.get(key)
        if erased_at is None or feature_timestamp > erased_at:
            return False
        metrics.FEATURE_ROWS_ERASED.inc()
        return True

    def erased(
        self, keys: Iterable[bytes], erased_at: int, stamps: Iterable[tuple[bytes, int]]
    ) -> dict[bytes, int]:
        """The markers an erasure at `erased_at` raises: each key's at
        `erased_at`, or at the newest stamp among its deleted rows (`stamps`)
        if later — a producer's clock ahead of the coordinator's must not let
        a replay (or a lagging replica's copy) of such a row back in."""
        at = dict.fromkeys(keys, erased_at)
        for key, stamp in stamps:
            at[key] = max(at[key], stamp)
        return self.raised(at)

    def raised(self, marks: Mapping[bytes, int]) -> dict[bytes, int]:
        """Of `marks`, those later than this shard's marker of their key (a
        marker only moves forward)."""
        return {k: t for k, t in marks.items() if t > self._at.get(k, -(2**63))}

    def puts(self, marks: Mapping[bytes, int]) -> Puts:
        return [(FEATURE_ERASURES, k, _TIME.pack(t)) for k, t in marks.items()]

    def written(self, marks: Mapping[bytes, int]) -> None:
        """`marks` are on disk: they take effect."""
        self._at.update(marks)
