"""Several coordinators as the normal case (issue 14, item 6): a caller that
uses the SDK with every coordinator's address sees zero failed requests when
one coordinator is SIGKILLed under load, and writes through one are read
through the other."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from tests.conftest import ClusterFactory
from tests.specs import route_spec

pytestmark = pytest.mark.integration
DIM = 8


def test_a_coordinator_killed_under_load_fails_no_sdk_request(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(num_shards=2, num_coordinators=2)
    rng = np.random.default_rng(4)
    data = rng.normal(size=(500, DIM)).astype(np.float32)
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(route_spec(dim=DIM))
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c:
        c.upsert("v", "v1", [Record(f"e{i}", v) for i, v in enumerate(data)])

    stop = threading.Event()
    counts = {"search": 0, "lookup": 0, "upsert": 0}
    failures: list[BaseException] = []
    lock = threading.Lock()
    started = threading.Barrier(4)

    def worker(n: int) -> None:
        wrng = np.random.default_rng(n)
        with RetrievalClient(
            cluster.coordinator_target, tenant_id="t", purpose="p", timeout=10.0
        ) as w:
            started.wait()
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if n == 0:
                        w.upsert("v", "v1", [Record(f"w{i}", wrng.normal(size=DIM))])
                        kind = "upsert"
                    elif n == 1:
                        got = w.batch_get("v", "v1", ["e1", "e2", "nope"])
                        assert [g.status for g in got] == ["found", "found", "missing"]
                        kind = "lookup"
                    else:
                        q = data[int(wrng.integers(len(data)))]
                        res = w.search("r", q, 5)
                        assert res.hits and not res.partial
                        kind = "search"
                    with lock:
                        counts[kind] += 1
                except BaseException as exc:  # noqa: BLE001 - every failure is reported
                    with lock:
                        failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    started.wait()
    with lock:
        before = dict(counts)
    while sum(counts.values()) < sum(before.values()) + 60:
        stop.wait(0.01)  # let the load run on both coordinators first
    cluster.kill_coordinator(0)
    mark = sum(counts.values())
    while sum(counts.values()) < mark + 150 and not failures:
        stop.wait(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert not failures, f"{len(failures)} failed requests, first: {failures[0]!r}"
    assert all(v > 10 for v in counts.values()), counts
    # Writes acknowledged during the kill are all there, read through the survivor.
    with RetrievalClient(cluster.coordinator_addresses[1], tenant_id="t", purpose="p") as c:
        found = c.batch_get("v", "v1", [f"w{i}" for i in range(1, counts["upsert"] + 1)])
        assert all(f.status == "found" for f in found)
    # The killed coordinator, started again, is back on the address clients were given
    # (it chose its port itself at first) and answers there.
    before_kill = cluster.coordinator_addresses[0]
    assert cluster.restart_coordinator(0) == before_kill
    with RetrievalClient(before_kill, tenant_id="t", purpose="p") as c:
        assert c.search("r", data[0], 5).hits
