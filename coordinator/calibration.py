"""Per-shard score calibration for approximate answers (request opted out of
exact reranking).

Index scores (PQ distances, HNSW distances) are on different scales per shard
and per segment, so merging them raw would rank by accident. With every
approximate answer a shard also returns the exact canonical scores of its top
hits (a reference sample from the same query). Per (shard, index version) the
coordinator keeps the last `window` (approximate, exact) pairs and fits
exact ≈ a·approximate + b by least squares; approximate scores are mapped
through it before the merge. Until `min_pairs` pairs exist, the sampled hits
take their exact scores and the rest pass through unchanged. Exact answers
(the default) are never touched.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from coordinator.merge import Hit
from core.domain import VersionRef


class Calibrator:
    def __init__(self, window: int = 256, min_pairs: int = 8) -> None:
        self.window = window
        self.min_pairs = min_pairs
        self._pairs: dict[tuple[str, VersionRef], deque[tuple[float, float]]] = {}

    def fit(self, shard_id: str, index: VersionRef) -> tuple[float, float] | None:
        pairs = self._pairs.get((shard_id, index))
        if pairs is None or len(pairs) < self.min_pairs:
            return None
        x = np.array([p[0] for p in pairs])
        y = np.array([p[1] for p in pairs])
        if np.ptp(x) == 0:
            return 0.0, float(y.mean())
        a, b = np.polyfit(x, y, 1)
        return float(a), float(b)

    def calibrate(
        self, shard_id: str, index: VersionRef, hits: Sequence[Hit], reference: Sequence[float]
    ) -> list[Hit]:
        """Learns from the reference sample, then maps every hit's score."""
        pairs = self._pairs.setdefault((shard_id, index), deque(maxlen=self.window))
        pairs.extend(zip((h.score for h in hits[: len(reference)]), reference, strict=False))
        model = self.fit(shard_id, index)
        exact = dict(zip((h.key for h in hits), reference, strict=False))
        out = []
        for h in hits:
            if h.key in exact:
                out.append(h._replace(score=float(exact[h.key])))
            elif model is not None:
                out.append(h._replace(score=model[0] * h.score + model[1]))
            else:
                out.append(h)
        return out
