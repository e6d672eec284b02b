"""A search racing a seal (found in review): the search took its segments,
a seal froze the growing segment and swapped a new one in, and a key of the
frozen segment was updated — its new row went to the new growing segment
(not in the search's segments) and its old row was masked in the frozen one
(in them): the search found neither, though the key existed throughout.
Interleaved deterministically: a sealed segment's search waits on an event,
the seal's build is held (`Builds`)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from registry.model import IndexKind
from shard_server.model import Query, SearchResult
from shard_server.sealed_segment import SealedSegment
from tests.test_segments_lifecycle import DIM, Builds, Shard


def test_a_key_updated_while_a_seal_swaps_the_growing_segment_is_still_found(
    tmp_path: Path,
) -> None:
    builds = Builds(hold=False)
    s = Shard(tmp_path, IndexKind.HNSW, builds)
    part = s.part
    assert part is not None
    try:
        s.upsert(range(0, 50))
        part.flush(compact=False)  # one sealed segment, searched first
        s.upsert(range(50, 100))  # rows in the growing segment
        (sealed,) = [g for g in part.current_segments() if isinstance(g, SealedSegment)]
        entered, go_on = threading.Event(), threading.Event()
        original = sealed.search_batch

        def slow_search_batch(queries: Any, requests: Any) -> Any:
            entered.set()
            assert go_on.wait(30)
            return original(queries, requests)

        sealed.search_batch = slow_search_batch  # type: ignore[method-assign]
        out: list[SearchResult] = []
        q = Query(np.zeros(DIM, np.float32), 100, "t")
        searcher = threading.Thread(target=lambda: out.extend(part.search([q])))
        searcher.start()
        assert entered.wait(30)  # the search holds (sealed, growing)
        builds.hold = True
        sealer = threading.Thread(target=lambda: part.lifecycle.seal(force=True))
        sealer.start()
        assert builds.started.wait(30)  # growing frozen and swapped out; its build held
        s.upsert([77], seed=5)  # a new version of a key of the frozen segment
        go_on.set()
        searcher.join(30)
        builds.release.set()
        sealer.join(30)
        found = {h.key.entity_id for h in out[0].hits}
        missing = sorted({f"id-{i:05d}" for i in range(100)} - found)
        assert not missing, f"missing: {missing}"
        assert len(out[0].hits) == 100  # the key once, not twice
    finally:
        builds.release.set()
        s.close()
