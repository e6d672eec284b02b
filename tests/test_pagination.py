"""Issue 5: paging through 1,000 results in pages of 50 while upserts (new
items and updates of items already served) continue yields each item at most
once, in the global order; a cursor cannot continue another search."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import EntityKey
from core.errors import InvalidArgument
from core.ordering import order_key
from tests.conftest import ClusterFactory
from tests.specs import route_spec

pytestmark = pytest.mark.integration
DIM = 8
SPEC = route_spec(dim=DIM, num_buckets=9)


def test_pages_never_repeat_or_reorder_while_writes_continue(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(num_shards=3)
    rng = np.random.default_rng(0)
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(SPEC)
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c:
        c.upsert(
            "v", "v1", [Record(f"e{i}", rng.normal(size=DIM)) for i in range(3000)], batch_size=1000
        )
        q = np.zeros(DIM, np.float32)
        stop = threading.Event()
        writes = [0]
        progress = threading.Condition()

        def writer() -> None:
            wrng = np.random.default_rng(1)
            with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as w:
                while not stop.is_set():
                    # new items anywhere in the ranking, and items already served
                    # moved further down: neither may show up on a later page
                    batch = [
                        Record(f"new{writes[0]}-{i}", wrng.normal(size=DIM)) for i in range(20)
                    ]
                    served = [eid for _, eid in seen if not eid.startswith("new")]
                    batch += [
                        Record(
                            served[int(wrng.integers(len(served)))],
                            wrng.normal(scale=1.5, size=DIM),
                        )
                        for _ in range(20)
                    ]
                    w.upsert("v", "v1", batch)
                    with progress:
                        writes[0] += 1
                        progress.notify_all()

        thread = threading.Thread(target=writer)
        seen: list[tuple[float, str]] = []
        first = c.search("r", q, 50)
        seen.extend((h.score, h.key.entity_id) for h in first.hits)
        cursor = first.next_cursor
        thread.start()  # every write from here on is newer than the pinned snapshot
        try:
            for n in range(19):
                if n < 3:  # pages 2-4 each come after at least one more acknowledged write
                    target = writes[0] + 1
                    with progress:
                        assert progress.wait_for(lambda: writes[0] >= target, timeout=20), (  # noqa: B023 - waited on here, in this iteration
                            "the writer made no progress"
                        )
                page = c.search("r", q, 50, cursor=cursor)
                assert not page.partial and len(page.hits) == 50
                seen.extend((h.score, h.key.entity_id) for h in page.hits)
                cursor = page.next_cursor
                assert cursor
        finally:
            stop.set()
            thread.join()
        assert writes[0] >= 3, "writes must overlap the paging"
        ids = [eid for _, eid in seen]
        assert len(ids) == 1000 and len(set(ids)) == 1000, "an item was served twice"
        keys = [order_key(s, EntityKey("t", "item", e)) for s, e in seen]
        assert keys == sorted(keys), "pages are not in the global order"
        assert not any(e.startswith("new") for e in ids), (
            "items written after page 1 leaked into later pages"
        )
        with pytest.raises(InvalidArgument, match="cursor belongs to another search"):
            c.search("r", np.ones(DIM, np.float32), 50, cursor=cursor)
        with pytest.raises(InvalidArgument, match="next_cursor"):
            c.search("r", q, 50, cursor="garbage")
