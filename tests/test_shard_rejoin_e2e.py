"""A shard that was away — its lease lost to a pause, restarted on its own
address, or restarted while a replica is dead but still registered — answers
no query before it has caught up from some live replica: acknowledged writes
are not missing, acknowledged deletes do not come back (real processes)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from cli.processes import free_port
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from tests.conftest import ClusterFactory
from tests.polling import eventually
from tests.specs import route_spec

pytestmark = pytest.mark.integration
DIM = 8


def spec(buckets: int, replicas: int) -> str:
    return route_spec(
        dim=DIM, metric="cosine", num_buckets=buckets, replicas=replicas, write_quorum=1
    )


def _members(reg: RegistryClient) -> dict[str, str]:
    """The shards the coordinator's snapshot holds, and their states."""
    return {m.shard_id: m.state for m in reg.status().shards}


def test_a_lost_lease_rejoins_draining_and_catches_up(make_cluster: ClusterFactory) -> None:
    """SIGSTOP past the TTL (a GC pause, a partition from etcd): peers
    acknowledge writes and deletes without the shard; it must catch up
    before serving, not come back SERVING as it was."""
    cluster = make_cluster(num_shards=2, num_coordinators=1, lease_ttl=3)
    store = cluster.etcd_store()
    key1 = f"{cluster.etcd_prefix}cluster/shards/shard-1"
    rng = np.random.default_rng(0)
    with (
        RegistryClient(cluster.coordinator_target) as reg,
        RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c,
    ):
        reg.apply(spec(4, 2))
        c.upsert("v", "v1", [Record(f"e{i}", rng.normal(size=DIM)) for i in range(200)])
        pid = cluster.shards["shard-1"].pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            assert eventually(lambda: store.get(key1) is None, 20), "lease never expired"
            assert eventually(lambda: "shard-1" not in _members(reg), 10)  # the watch saw it
            late = [Record(f"late{i}", rng.normal(size=DIM)) for i in range(50)]
            assert c.upsert("v", "v1", late)[0] == 50
            assert c.delete("v", "v1", [f"e{i}" for i in range(50)]) == 50
        finally:
            os.kill(pid, signal.SIGCONT)
        assert eventually(lambda: store.get(key1) is not None, 20), "shard-1 did not come back"
        assert eventually(lambda: _members(reg).get("shard-1") == "serving", 30)
        cluster.shards["shard-0"].kill()  # the replica that holds the acknowledged writes
        # Its lease expires: the coordinator reads shard-1 only.
        assert eventually(lambda: "shard-0" not in _members(reg), 20)
    keys = [f"e{i}" for i in range(50)] + [f"late{i}" for i in range(50)]
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c:
        got = {k: lk.status for k, lk in zip(keys, c.batch_get("v", "v1", keys), strict=True)}
    resurrected = [k for k in keys[:50] if got[k] == "found"]
    lost = [k for k in keys[50:] if got[k] != "found"]
    assert not resurrected and not lost, (
        f"{len(resurrected)} deleted keys served again, {len(lost)} acknowledged keys missing"
    )


def test_a_restarted_shard_answers_no_read_before_catching_up(
    make_cluster: ClusterFactory,
) -> None:
    """Restarted on its stable address while its previous SERVING key is
    still leased: coordinators route to it as soon as it listens."""
    port = free_port()
    cluster = make_cluster(
        num_shards=2,
        num_coordinators=1,
        lease_ttl=30,
        shard_env={
            "shard-1": {"VECSHARD__SHARD__LISTEN": f"127.0.0.1:{port}"},
            # a slow peer export: a big shard's catch-up takes this long anyway
            "shard-0": {"VECSHARD_FAULTS": "ExportBuckets=delay:8"},
        },
    )
    rng = np.random.default_rng(0)
    with (
        RegistryClient(cluster.coordinator_target) as reg,
        RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c,
    ):
        reg.apply(spec(4, 2))
        c.upsert("v", "v1", [Record(f"e{i}", rng.normal(size=DIM)) for i in range(100)])
        cluster.kill_shard("shard-1")
        late = [f"late{i}" for i in range(100)]
        assert c.upsert("v", "v1", [Record(k, rng.normal(size=DIM)) for k in late])[0] == 100
        time.sleep(10)  # the coordinator's repair retries (~8 s) give up
        cluster.shards["shard-1"].start()  # same data dir, same address
        worst, end = 0, time.monotonic() + 8
        while time.monotonic() < end:
            try:
                got = [lk.status for lk in c.batch_get("v", "v1", late)]
            except Exception:  # noqa: BLE001 - a refused read is fine; a wrong one is not
                continue
            worst = max(worst, sum(s != "found" for s in got))
            time.sleep(0.2)
        assert worst == 0, f"{worst} of 100 acknowledged keys not found while shard-1 caught up"


def test_catch_up_falls_back_to_a_live_replica(make_cluster: ClusterFactory) -> None:
    """The first replica catch-up asks is dead, its lease still alive: the
    buckets are copied from the next replica instead of skipped."""
    cluster = make_cluster(num_shards=3, num_coordinators=1, lease_ttl=30)
    rng = np.random.default_rng(0)
    with (
        RegistryClient(cluster.coordinator_target) as reg,
        RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c,
    ):
        reg.apply(spec(6, 3))
        c.upsert("v", "v1", [Record(f"e{i}", rng.normal(size=DIM)) for i in range(60)])
        cluster.kill_shard("shard-0")
        cluster.kill_shard("shard-1")  # its key lingers 30 s
        late = [f"late{i}" for i in range(120)]
        assert c.upsert("v", "v1", [Record(k, rng.normal(size=DIM)) for k in late])[0] == 120
        time.sleep(9)  # the coordinator's repair retries give up
        cluster.restart_shard("shard-0")
    cluster.shards["shard-2"].stop()  # the only replica that had them leaves
    store = cluster.etcd_store()
    assert eventually(lambda: store.get(f"{cluster.etcd_prefix}cluster/shards/shard-1") is None, 40)
    with RegistryClient(cluster.coordinator_target) as reg:
        assert eventually(lambda: not {"shard-1", "shard-2"} & set(_members(reg)), 10)
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c:
        got = [lk.status for lk in c.batch_get("v", "v1", late)]
    missing = sum(s != "found" for s in got)
    assert missing == 0, f"{missing} of 120 acknowledged keys missing on shard-0 after catch-up"
