"""The global result order (DESIGN §6), in one place for shards and coordinators.

Score descending, then entity_id ascending bytewise, then tenant_id, then
entity_type. Comparing UTF-8 bytes (not Python str order) keeps the order the
same in every language a client is written in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.domain import EntityKey

OrderKey = tuple[float, bytes, bytes, bytes]


def order_key(score: float, key: EntityKey) -> OrderKey:
    return (-float(score), key.entity_id.encode(), key.tenant_id.encode(), key.entity_type.encode())


def global_order(scores: np.ndarray, keys: Sequence[EntityKey]) -> np.ndarray:
    """The permutation that puts (scores[i], keys[i]) in the global order.

    numpy sorts by score; only runs of equal scores (rare, but real: the same
    vector stored under two ids) are ordered by their keys, exactly as
    `order_key` orders them."""
    n = scores.shape[0]
    if n < 2:
        return np.arange(n, dtype=np.int64)
    perm = np.argsort(-scores.astype(np.float64), kind="stable")
    ordered = scores[perm]
    ties = np.flatnonzero(ordered[1:] == ordered[:-1]).tolist()
    lo = 0
    for j, t in enumerate(ties):
        if j == 0 or t != ties[j - 1] + 1:
            lo = t  # a run of equal scores begins at position t
        if j + 1 == len(ties) or ties[j + 1] != t + 1:
            run = perm[lo : t + 2].tolist()  # ... and ends at t + 1
            run.sort(key=lambda i: order_key(float(scores[i]), keys[i]))
            perm[lo : t + 2] = run
    return perm
