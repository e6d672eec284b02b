"""Issue 14, defect 4, through real processes: with one replica per bucket,
a SIGKILLed shard costs its own keys, never the request. BatchGetEmbeddings
answers `unavailable` for the keys the dead shard holds and the others
normally — while the dead shard is still registered (every call to it is
refused) and after its lease expired (no replica is placed) — and
GetFeatures answers those entities' values with the missing reason
`unavailable` and the definition's fill for it. A shard that answers too
late gives `timeout` instead."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from registry.placement import bucket_of
from tests.conftest import ClusterFactory
from tests.specs import route_spec, tenant_docs

pytestmark = pytest.mark.integration
DIM = 4
BUCKETS = 8
S = 1_000_000
T0 = 1_800_000_000 * S
FEATURES = """
kind: FeatureDefinition
spec: {name: ctr, version: v1, entity_type: item, dtype: float64, privacy_class: public, owner: t,
       default_value: 0.5, default_policy: {unavailable: {action: constant, constant: -1.0}}}
---
kind: FeatureDefinition
spec: {name: label, version: v1, entity_type: item, dtype: string, privacy_class: public, owner: t,
       default_value: none}
---
kind: FeatureGroup
spec: {name: stats, version: v1, entity_type: item, features: [{name: ctr, version: v1}, {name: label, version: v1}]}
---
kind: FeatureSet
spec: {name: ranker, version: v1, features: [{group: stats, group_version: v1, feature: ctr},
                                             {group: stats, group_version: v1, feature: label}]}
"""


def homes(reg: RegistryClient, name: str, ids: list[str], buckets: int) -> dict[str, str]:
    """Each id's shard, as the registry places it (one replica per bucket)."""
    placement = reg.get("Placement", name, "v1").spec["buckets"]
    return {i: placement[bucket_of("t", i, buckets)][0] for i in ids}


def registered(reg: RegistryClient) -> set[str]:
    return {s.shard_id for s in reg.status().shards}


def wait_until_gone(reg: RegistryClient, shard_id: str, cluster: LocalCluster) -> None:
    deadline = time.monotonic() + cluster.lease_ttl + 10
    while shard_id in registered(reg):
        assert time.monotonic() < deadline, f"the lease of {shard_id} never expired"


@pytest.fixture
def cluster(make_cluster: ClusterFactory) -> LocalCluster:
    c = make_cluster(num_shards=3, lease_ttl=4)
    with RegistryClient(c.coordinator_address) as reg:
        reg.apply(route_spec(dim=DIM, num_buckets=BUCKETS))
        reg.apply(FEATURES)
    return c


def pick(home: dict[str, str], dead: str) -> tuple[list[str], list[str]]:
    on_dead = [i for i, s in home.items() if s == dead][:5]
    elsewhere = [i for i, s in home.items() if s != dead][:5]
    assert len(on_dead) == len(elsewhere) == 5
    return on_dead, elsewhere


def test_lookups_answer_unavailable_for_the_keys_of_a_dead_shard(cluster: LocalCluster) -> None:
    ids = [f"e{i}" for i in range(60)]
    with RegistryClient(cluster.coordinator_address) as reg:
        home = homes(reg, "ix", ids, BUCKETS)
        on_dead, elsewhere = pick(home, "shard-1")
        with RetrievalClient(cluster.coordinator_address, tenant_id="t", purpose="test") as c:
            c.upsert("v", "v1", [Record(i, np.ones(DIM), source_version=3) for i in ids])
            keys = [*on_dead, *elsewhere, "never-written"]
            cluster.kill_shard("shard-1")
            assert "shard-1" in registered(reg)  # still leased: calls to it are refused
            got = c.batch_get("v", "v1", keys)
            never = homes(reg, "ix", ["never-written"], BUCKETS)["never-written"]
            want = ["unavailable"] * 5 + ["found"] * 5
            want.append("unavailable" if never == "shard-1" else "missing")
            assert [lk.status for lk in got] == want
            assert [lk.source_version for lk in got[5:10]] == [3] * 5
            batch = c.get_embeddings("v", "v1", keys)
            assert batch.statuses() == want
            assert np.all(batch.vectors[5:10] == 1.0) and batch.vectors.shape == (11, DIM)

            wait_until_gone(reg, "shard-1", cluster)  # no replica left for its buckets
            assert [lk.status for lk in c.batch_get("v", "v1", keys)] == want
            assert [lk.status for lk in c.batch_get("v", "v1", elsewhere)] == ["found"] * 5
            assert c.get_embeddings("v", "v1", elsewhere).statuses() == ["found"] * 5


def test_features_of_a_dead_shard_are_unavailable_with_their_fill(cluster: LocalCluster) -> None:
    ids = [f"i{i}" for i in range(60)]
    with RegistryClient(cluster.coordinator_address) as reg:
        home = homes(reg, "features:stats", ids, 16)
        on_dead, elsewhere = pick(home, "shard-2")
        with RetrievalClient(cluster.coordinator_address, tenant_id="t", purpose="test") as c:
            c.put_features(
                "stats", "v1", [(("item", i), T0, {"ctr": 0.25, "label": "x"}) for i in ids]
            )
            entities = [("item", i) for i in [*on_dead, *elsewhere]]
            cluster.kill_shard("shard-2")
            for phase in ("refused", "lease expired"):
                if phase == "lease expired":
                    wait_until_gone(reg, "shard-2", cluster)
                res = c.get_features("ranker", "v1", entities, request_time_us=T0 + S)
                got = [
                    (e["stats__ctr"].value, e["stats__ctr"].missing_reason,
                     e["stats__label"].value, e["stats__label"].missing_reason)
                    for e in res.entities
                ]  # fmt: skip
                assert (
                    got
                    == [(-1.0, "unavailable", "none", "unavailable")] * 5
                    + [(0.25, None, "x", None)] * 5
                ), phase
                assert res.missing_by_reason == {"unavailable": 10}, phase
                ctr = res.column("item", "stats__ctr")
                assert ctr.reasons() == ["unavailable"] * 5 + [None] * 5, phase


def test_a_shard_answering_too_late_gives_timeout_values(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(
        num_shards=2, shard_env={"shard-1": {"VECSHARD_FAULTS": "GetFeatureColumns=delay:3"}}
    )
    ids = [f"i{i}" for i in range(40)]
    with RegistryClient(cluster.coordinator_address) as reg:
        reg.apply(FEATURES)
        reg.apply(tenant_docs())
        home = homes(reg, "features:stats", ids, 16)
    with RetrievalClient(cluster.coordinator_address, tenant_id="t", purpose="test") as c:
        c.put_features("stats", "v1", [(("item", i), T0, {"ctr": 0.25}) for i in ids])
        t0 = time.monotonic()
        res = c.get_features("ranker", "v1", [("item", i) for i in ids], timeout=1.0)
        assert time.monotonic() - t0 < 1.0
    for i, e in zip(ids, res.entities, strict=True):
        want = ("timeout", 0.5) if home[i] == "shard-1" else (None, 0.25)
        assert (e["stats__ctr"].missing_reason, e["stats__ctr"].value) == want
