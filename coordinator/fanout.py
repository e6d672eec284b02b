"""Bounded fanout: which shards to ask, in which waves, and which to skip.

A shard may be skipped once the current k-th result beats every score the
shard could return. Under the global order (score desc, then entity_id,
tenant, entity type) a shard whose bound EQUALS the k-th score could still
hold an item that ties and wins on entity_id, so only a bound strictly below
the k-th score allows a skip. With true upper bounds the answer is therefore
exactly the full fanout's answer, by construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from coordinator.failover import Alternate
from coordinator.merge import Hit


@dataclass(frozen=True)
class Target:
    """One shard call: the buckets this replica answers for."""

    shard_id: str
    address: str
    buckets: tuple[int, ...]
    # Other serving replicas, with which of `buckets` each also holds (for
    # hedging and failover).
    alternates: tuple[Alternate, ...] = ()


def order_by_bound(targets: Sequence[Target], bounds: Mapping[str, float]) -> list[Target]:
    """Highest bound first (unknown bound = +inf, so it is never skipped);
    shard id breaks ties so the plan is deterministic."""
    return sorted(targets, key=lambda t: (-bounds.get(t.shard_id, math.inf), t.shard_id))


def can_skip(bound: float, hits: Sequence[Hit], k: int) -> bool:
    """True iff no item under this bound can enter the top-k of `hits`."""
    if len(hits) < k:
        return False
    return bound < hits[k - 1].score


def waves(targets: Sequence[Target], first_wave: int, growth: float = 2.0) -> list[list[Target]]:
    """Split ordered targets into waves of growing size: small first waves
    find a good k-th score cheaply, later waves go wide to bound latency."""
    out: list[list[Target]] = []
    size, i = max(1, first_wave), 0
    while i < len(targets):
        out.append(list(targets[i : i + size]))
        i += size
        size = max(size + 1, int(size * growth))
    return out
