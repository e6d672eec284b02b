"""Retiring a feature group version through real processes: refused while
a feature set reads it; once retired, every shard holding it drops its
column family — one that was down when it happened, at its next start —
reads and writes of it are refused naming the retirement, the current
version keeps every row, and the retired version cannot be applied again."""

from __future__ import annotations

import json

import grpc
import pytest
from rocksdict import Options, Rdict

from cli.local_cluster import LocalCluster
from cli.main import main as vecshard
from client.registry_client import RegistryClient
from core.domain import VersionRef
from core.errors import VecshardError
from shard_server.feature_store import column_family
from tests.conftest import ClusterFactory
from tests.polling import poll
from tests.specs import tenant_docs
from tests.test_feature_replicas_e2e import client, metric, serving
from tests.test_lookup_faults import FEATURES

pytestmark = pytest.mark.integration
S = 1_000_000
T0 = 1_800_000_000 * S
V2 = (
    FEATURES.split("---\nkind: FeatureGroup")[1]
    .replace("version: v1, entity_type", "version: v2, entity_type")
    .replace("group_version: v1", "group_version: v2")
    .replace("{name: ranker, version: v1", "{name: ranker, version: v2")
)
V2 = "kind: FeatureGroup" + V2
assert V2.count("v2") == 4, V2
DROPPED = "vecshard_shard_feature_groups_dropped_total"


def families(cluster: LocalCluster, shard_id: str) -> list[str]:
    """The column families on a stopped shard's disk."""
    return Rdict.list_cf(str(cluster.data_dir / shard_id / "rocksdb"), Options(raw_mode=True))


def rows(version: str, ids: list[str], ctr: float) -> list:
    return [(("item", i), T0, {"ctr": ctr, "label": version}) for i in ids]


def test_a_retired_group_leaves_every_shard(
    make_cluster: ClusterFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster: LocalCluster = make_cluster(num_shards=3, lease_ttl=4)
    ids = [f"i{i}" for i in range(300)]
    with RegistryClient(cluster.coordinator_address, who="ops") as reg, client(cluster) as c:
        reg.apply("\n---\n".join(json.dumps(d) for d in tenant_docs()))
        reg.apply(FEATURES)
        reg.apply(V2)
        c.put_features("stats", "v1", rows("v1", ids, 0.25))
        c.put_features("stats", "v2", rows("v2", ids, 0.5))

        with pytest.raises(VecshardError, match=r"feature set ranker@v1") as refused:
            reg.retire("FeatureGroup", "stats", "v1")
        assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION

        # The CLI's dry run says what would happen, and does nothing.
        argv = ["registry", "retire", "FeatureSet", "ranker@v1", "--dry-run"]
        assert vecshard([*argv, "--coordinator", cluster.coordinator_address]) == 0
        assert "(dry run)" in capsys.readouterr().out
        got = c.get_features("ranker", "v1", [("item", "i1")], request_time_us=T0 + S)
        assert got.entities[0]["stats__ctr"].value == 0.25

        cluster.kill_shard("shard-2")  # down (still registered) while it happens
        argv = ["registry", "retire", "FeatureSet", "ranker@v1", "--why", "v2 is live"]
        assert vecshard([*argv, "--coordinator", cluster.coordinator_address]) == 0
        record, effects = reg.retire("FeatureGroup", "stats", "v1", why="v2 is live")
        assert (record.spec["kind"], record.spec["why"]) == ("FeatureGroup", "v2 is live")
        assert any("drop its rows" in e for e in effects)

        for k in ("shard-0", "shard-1"):
            port = (cluster.shards[k].ready or {}).get("metrics")
            assert poll(lambda: metric(port, DROPPED), lambda n: n >= 1, timeout=20) == 1, k  # noqa: B023 - polled before the next iteration

        with pytest.raises(VecshardError, match=r"FeatureSet ranker@v1 was retired .*v2 is live"):
            c.get_features("ranker", "v1", [("item", "i1")], request_time_us=T0 + S)
        with pytest.raises(VecshardError, match=r"FeatureGroup stats@v1 was retired") as refused:
            c.put_features("stats", "v1", rows("v1", ["late"], 0.75))
        assert refused.value.code is grpc.StatusCode.NOT_FOUND
        with pytest.raises(VecshardError, match="cannot be applied again") as refused:
            reg.apply(FEATURES)
        assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION

        capsys.readouterr()
        argv = ["registry", "list", "Retirement", "--coordinator", cluster.coordinator_address]
        assert vecshard(argv) == 0
        listed = capsys.readouterr().out.splitlines()
        assert len(listed) == 2 and all(" v1 " in line for line in listed), listed
        assert any("FeatureGroup at " in line and line.startswith("stats ") for line in listed)

        ready = cluster.restart_shard("shard-2")
        serving(reg, "shard-2")
        assert metric(ready["metrics"], DROPPED) == 1  # dropped at start, before serving

        # The current version has every row, from every shard.
        res = c.get_features("ranker", "v2", [("item", i) for i in ids], request_time_us=T0 + S)
        assert [e["stats__ctr"].value for e in res.entities] == [0.5] * len(ids)
        assert {e["stats__label"].value for e in res.entities} == {"v2"}

    old, new = column_family(VersionRef("stats", "v1")), column_family(VersionRef("stats", "v2"))
    for k in ("shard-0", "shard-1", "shard-2"):
        cluster.kill_shard(k)
        on_disk = families(cluster, k)
        assert old not in on_disk and new in on_disk, (k, on_disk)
