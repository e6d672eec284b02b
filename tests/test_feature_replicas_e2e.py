"""Feature groups with two replicas per bucket (`replicas: 2` on the
document), through real processes: a SIGKILLed shard costs no feature value
— while it is still registered (every call to it is refused, and the
coordinator asks the other replica) and after its lease expired — while
writes to its buckets are refused UNAVAILABLE (a write is acknowledged only
once every replica has it), and once it is back it serves what was written
before and after."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import urllib.request

import grpc
import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.connection import RetryPolicy
from client.erasure_client import ErasureClient
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import EntityKey
from core.errors import VecshardError
from registry.placement import FEATURE_BUCKETS, bucket_of
from tests.conftest import ClusterFactory
from tests.polling import poll
from tests.specs import route_spec, tenant_docs
from tests.test_lookup_faults import FEATURES, registered, wait_until_gone

pytestmark = pytest.mark.integration
S = 1_000_000
T0 = 1_800_000_000 * S
REPLICATED = FEATURES.replace("kind: FeatureGroup\n", "kind: FeatureGroup\nreplicas: 2\n")
assert REPLICATED != FEATURES


def values(c: RetrievalClient, ids: list[str]) -> list[tuple[object, ...]]:
    res = c.get_features("ranker", "v1", [("item", i) for i in ids], request_time_us=T0 + 5 * S)
    return [
        (e["stats__ctr"].value, e["stats__ctr"].missing_reason, e["stats__label"].value)
        for e in res.entities
    ]


def metric(port: object, name: str, labels: str = "") -> float:
    """A sample from a process's /metrics (0 when it has none yet)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    sample = r"^" + re.escape(name) + r"(\{[^}]*" + re.escape(labels) + r"[^}]*\})? (\S+)$"
    found = re.search(sample, text, re.M)
    return float(found.group(2)) if found else 0.0


def serving(reg: RegistryClient, shard_id: str) -> None:
    states = poll(
        lambda: {s.shard_id: s.state for s in reg.status().shards},
        lambda now: now.get(shard_id) == "serving",
        timeout=30,
    )
    assert states.get(shard_id) == "serving", f"{shard_id} never served again: {states}"


def put(c: RetrievalClient, entity_id: str, ctr: float, label: str) -> None:
    c.put_features("stats", "v1", [(("item", entity_id), T0 + S, {"ctr": ctr, "label": label})])


def replicated(reg: RegistryClient, docs: str, ids: list[str]) -> dict[str, list[str]]:
    """Applies the tenants and `docs`; each id's replicas, as placed."""
    reg.apply("\n---\n".join(json.dumps(d) for d in tenant_docs()))
    reg.apply(docs)
    buckets = reg.get("Placement", "features:stats", "v1").spec["buckets"]
    return {i: buckets[bucket_of("t", i, FEATURE_BUCKETS)] for i in ids}


def client(cluster: LocalCluster) -> RetrievalClient:
    """No retries: a refused write is seen as such."""
    return RetrievalClient(
        cluster.coordinator_address,
        tenant_id="t",
        purpose="test",
        retry=RetryPolicy(max_attempts=1),
    )


def loaded(c: RetrievalClient, ids: list[str]) -> None:
    c.put_features("stats", "v1", [(("item", i), T0, {"ctr": 0.25, "label": "x"}) for i in ids])


def test_a_dead_shard_costs_no_feature_value(make_cluster: ClusterFactory) -> None:
    cluster: LocalCluster = make_cluster(num_shards=3, lease_ttl=4)
    ids = [f"i{i}" for i in range(60)]
    with RegistryClient(cluster.coordinator_address) as reg:
        replicas = replicated(reg, REPLICATED, ids)
        assert all(len(set(r)) == 2 for r in replicas.values())
        first_on_dead = [i for i in ids if replicas[i][0] == "shard-2"]
        held_by_dead = [i for i in ids if "shard-2" in replicas[i]]
        assert first_on_dead and len(held_by_dead) > len(first_on_dead)
        with client(cluster) as c:
            loaded(c, ids)
            assert values(c, ids) == [(0.25, None, "x")] * len(ids)
            cluster.kill_shard("shard-2")
            assert "shard-2" in registered(reg)  # every call to it is refused
            assert values(c, ids) == [(0.25, None, "x")] * len(ids)
            failovers = [
                metric(
                    (k.ready or {}).get("metrics"), "vecshard_feature_failovers_total", "shard-2"
                )
                for k in cluster.coordinators
            ]
            assert sum(failovers) >= 1
            early, late = held_by_dead[0], held_by_dead[1]
            with pytest.raises(VecshardError) as refused:
                put(c, early, 0.5, "half")
            assert refused.value.code is grpc.StatusCode.UNAVAILABLE
            # Refused, yet the live replica has it (the outcome of a refused
            # write is unknown; retried, it lands everywhere).
            assert values(c, [early]) == [(0.5, None, "half")]

            wait_until_gone(reg, "shard-2", cluster)
            assert values(c, [i for i in ids if i != early]) == [(0.25, None, "x")] * 59
            with pytest.raises(
                VecshardError, match=r"not registered; writes need 2 of 2"
            ) as refused:
                put(c, late, 0.5, "half")
            assert refused.value.code is grpc.StatusCode.UNAVAILABLE
            assert values(c, [late]) == [(0.25, None, "x")]  # refused before it was sent

            ready = cluster.restart_shard("shard-2")
            serving(reg, "shard-2")
            # It copied at least the row the refused write left on its peer.
            copied = metric(ready["metrics"], "vecshard_shard_catch_up_total", "feature_rows")
            assert copied >= 1
            assert metric(ready["metrics"], "vecshard_shard_catch_up_seconds") > 0
            for i in held_by_dead[2:]:
                put(c, i, 0.75, "y")
            # The restarted shard alone: it copied the row it missed from its
            # peer replica before serving (catch-up), and has every later write.
            cluster.kill_shard("shard-0")
            cluster.kill_shard("shard-1")
            want = [(0.5, None, "half"), (0.25, None, "x")] + [(0.75, None, "y")] * (
                len(held_by_dead) - 2
            )
            assert values(c, held_by_dead) == want


def test_an_erasure_is_refused_while_a_shard_holding_copies_is_down(
    make_cluster: ClusterFactory,
) -> None:
    """The erased row would stay on the down shard (a feature row has no
    tombstone) and, with replicas, come back to its peers through catch-up:
    the erasure is refused, naming the shard, with nothing deleted; once the
    shard is back it runs, and the row stays gone through a restart."""
    cluster: LocalCluster = make_cluster(num_shards=3, lease_ttl=4)
    subject = EntityKey("t", "item", "i7")
    with RegistryClient(cluster.coordinator_address) as reg:
        replicated(reg, REPLICATED, [])
        with (
            RetrievalClient(cluster.coordinator_address, tenant_id="t", purpose="test") as c,
            ErasureClient(cluster.coordinator_address, retry=RetryPolicy(max_attempts=1)) as er,
        ):
            put(c, subject.entity_id, 0.9, "nine")
            cluster.kill_shard("shard-1")
            wait_until_gone(reg, "shard-1", cluster)
            with pytest.raises(VecshardError, match=r"shard-1 \(feature group stats@v1\)") as down:
                er.erase(subject, why="test")
            assert down.value.code is grpc.StatusCode.UNAVAILABLE
            assert values(c, [subject.entity_id]) == [(0.9, None, "nine")]  # nothing deleted

            cluster.restart_shard("shard-1")
            serving(reg, "shard-1")
            assert er.erase(subject, why="test").feature_rows_deleted == 2  # both replicas
            gone = [(0.5, "entity_not_found", "none")]  # the definitions' defaults
            for sid in ("shard-0", "shard-2", "shard-1"):  # each restarts; catch-up runs
                cluster.restart_shard(sid)
                serving(reg, sid)
                assert values(c, [subject.entity_id]) == gone, sid


def test_a_replica_that_lost_its_disk_refuses_an_erased_subjects_history(
    make_cluster: ClusterFactory,
) -> None:
    """Erasure markers travel with catch-up: a shard whose data directory is
    gone gets its peer's marker of an erased subject before it serves, so a
    producer replaying the subject's history (rows stamped before the
    erasure) is refused by both replicas — the lone restored replica answers
    the subject as never written."""
    cluster: LocalCluster = make_cluster(num_shards=2, lease_ttl=4)
    subject = EntityKey("t", "item", "i7")
    day_ago = time.time_ns() // 1000 - 86_400 * S
    history = [(("item", "i7"), day_ago, {"ctr": 0.9, "label": "nine"})]
    with RegistryClient(cluster.coordinator_address) as reg:
        replicated(reg, REPLICATED, [])
        with (
            RetrievalClient(cluster.coordinator_address, tenant_id="t", purpose="test") as c,
            ErasureClient(cluster.coordinator_address, retry=RetryPolicy(max_attempts=1)) as er,
        ):
            c.put_features("stats", "v1", history)
            assert er.erase(subject, why="test").feature_rows_deleted == 2  # both replicas
            cluster.kill_shard("shard-1")
            shutil.rmtree(cluster.data_dir / "shard-1")  # its disk is lost
            ready = cluster.restart_shard("shard-1")
            serving(reg, "shard-1")
            c.put_features("stats", "v1", history)  # the replay
            assert metric(ready["metrics"], "vecshard_shard_feature_rows_erased_refused_total") >= 1
            cluster.kill_shard("shard-0")  # shard-1 alone answers
            assert values(c, ["i7"]) == [(0.5, "entity_not_found", "none")]


QUORUM_ONE = REPLICATED.replace(
    "spec: {name: stats, version: v1,", "spec: {name: stats, version: v1, write_quorum: 1,"
)
assert QUORUM_ONE != REPLICATED


def test_with_a_write_quorum_of_one_writes_go_on_and_a_restarted_replica_catches_up(
    make_cluster: ClusterFactory,
) -> None:
    """`write_quorum: 1` of two replicas: writes to a down shard's buckets are
    acknowledged by the other replica — while the down shard is still leased
    and after — and the restarted shard, before it serves, copies every row
    acknowledged without it: alone (its peers killed) it answers them all."""
    cluster: LocalCluster = make_cluster(num_shards=3, lease_ttl=4)
    ids = [f"i{i}" for i in range(60)]
    with RegistryClient(cluster.coordinator_address) as reg:
        held = [i for i, r in replicated(reg, QUORUM_ONE, ids).items() if "shard-2" in r]
        with client(cluster) as c:
            loaded(c, ids)
            cluster.kill_shard("shard-2")
            assert "shard-2" in registered(reg)
            for i in held[3:]:
                put(c, i, 0.5, "half")  # acknowledged by the live replica
            wait_until_gone(reg, "shard-2", cluster)
            for i in held[:3]:
                put(c, i, 0.75, "y")
            want = [(0.75, None, "y")] * 3 + [(0.5, None, "half")] * (len(held) - 3)
            assert values(c, held) == want

            cluster.restart_shard("shard-2")
            serving(reg, "shard-2")
            cluster.kill_shard("shard-0")
            cluster.kill_shard("shard-1")
            assert values(c, held) == want  # shard-2 alone: it caught up


def test_a_stalled_replica_is_hedged(make_cluster: ClusterFactory) -> None:
    """A shard that stops answering without refusing (SIGSTOP: a stall, a
    partition) held its rows and keys until the request's deadline, then
    answered them `timeout` / `unavailable`. With two replicas the
    coordinator asks the other replicas once a call runs past the shard's
    p95: every value and every vector, in a fraction of the deadline; and
    once its hedges answered first three times in a row it is skipped for a
    cool-down instead of being asked first (and waited for) every time."""
    cluster: LocalCluster = make_cluster(num_shards=3, lease_ttl=4)
    ids = [f"i{i}" for i in range(60)]
    with RegistryClient(cluster.coordinator_address) as reg:
        replicas = replicated(reg, REPLICATED, ids)
        assert any(r[0] == "shard-2" for r in replicas.values())
        reg.apply(route_spec(dim=4, num_buckets=6, replicas=2))
        with client(cluster) as c:
            loaded(c, ids)
            c.upsert("v", "v1", [Record(i, np.ones(4), source_version=1) for i in ids])
            for _ in range(30):  # every shard's p95 of feature calls and lookups is known
                assert values(c, ids) == [(0.25, None, "x")] * len(ids)
                assert c.get_embeddings("v", "v1", ids).statuses() == ["found"] * len(ids)
            pid = cluster.shards["shard-2"].pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                start = time.monotonic()
                got = c.get_features(
                    "ranker", "v1", [("item", i) for i in ids], request_time_us=T0 + 5 * S,
                    timeout=5.0,
                )  # fmt: skip
                took = time.monotonic() - start
                start = time.monotonic()
                found = c.get_embeddings("v", "v1", ids, timeout=5.0).statuses()
                took_lookup = time.monotonic() - start
                # Outrun by its hedges in a row, the stalled shard is avoided
                # for a cool-down rather than asked first by every request.
                for _ in range(3):
                    c.get_embeddings("v", "v1", ids, timeout=5.0)
            finally:
                os.kill(pid, signal.SIGCONT)
    assert [(e["stats__ctr"].value, e["stats__ctr"].missing_reason) for e in got.entities] == [
        (0.25, None)
    ] * len(ids)
    assert took < 2.5, f"{took:.2f} s: waited for the stalled shard"
    assert found == ["found"] * len(ids)
    assert took_lookup < 2.5, f"{took_lookup:.2f} s: the lookup waited for the stalled shard"
    port = (cluster.coordinators[0].ready or {}).get("metrics")
    assert metric(port, "vecshard_feature_hedges_total", 'outcome="won"') >= 1
    assert metric(port, "vecshard_lookup_hedges_total", 'outcome="won"') >= 1
    slow = 'reason="slow",shard="shard-2"'
    assert metric(port, "vecshard_replica_cooldowns_total", slow) >= 1
