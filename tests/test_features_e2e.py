"""Issue 6 through real processes: PutFeatures / GetFeatures via the
coordinator and shard servers — request order, missing reasons with
defaults, staleness, TTL, out-of-order writes, privacy refusal, parity with
the offline point-in-time join; and BatchGetEmbeddings statuses."""

from __future__ import annotations

import pytest

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import RetrievalClient
from core.errors import InvalidArgument, NotFound
from tests.conftest import ClusterFactory
from tests.specs import tenant_docs

pytestmark = pytest.mark.integration
S = 1_000_000
T0 = 1_800_000_000 * S
SPEC = (
    __import__("pathlib").Path(__file__).resolve().parent.parent
    / "deploy"
    / "examples"
    / "50-features.yaml"
).read_text()


@pytest.fixture(scope="module")
def cluster(make_module_cluster: ClusterFactory) -> LocalCluster:
    c = make_module_cluster(num_shards=3)
    with RegistryClient(c.coordinator_target) as reg:
        reg.apply(SPEC)
        reg.apply(tenant_docs())
    return c


def client(cluster: LocalCluster) -> RetrievalClient:
    return RetrievalClient(cluster.coordinator_target, tenant_id="acme", purpose="recommendation")


def test_values_in_request_order_with_reasons_defaults_and_staleness(cluster: LocalCluster) -> None:
    with client(cluster) as c:
        items = [("item", f"i{n}") for n in range(300)]
        written, ignored = c.put_features(
            "item_stats",
            "v1",
            [
                (k, T0, {"item_ctr": 0.1 + n / 1000, "item_price": float(n)})
                for n, k in enumerate(items[:200])
            ],
        )
        assert (written, ignored) == (200, 0)
        c.put_features("user_profile", "v1", [(("user", "u1"), T0, {"age_bucket": "25-34"})])
        c.put_features(
            "user_activity", "v1", [(("user", "u1"), T0 - 2 * 3600 * S, {"ctr_7d": 0.3})]
        )
        entities = [("user", "u1"), *items]
        res = c.get_features("home_ranker", "v1", entities, request_time_us=T0 + 60 * S)
        assert [e.key.entity_id for e in res.entities] == ["u1", *[k for _, k in items]]
        user = res.entities[0]
        assert user["user_profile__age_bucket"].value == "25-34"
        assert user["user_profile__age_bucket"].staleness_us == 60 * S
        stale = user["user_activity__ctr_7d"]  # 2 h old, SLA 1 h: stale → constant -1.0
        assert (stale.value, stale.missing_reason, stale.default_applied) == (
            -1.0,
            "stale",
            "constant",
        )
        # nothing was ever written to the session group: not computed (yet)
        assert user["user_session__session_clicks"].missing_reason == "not_computed"
        assert res.entities[5]["price"].value == 4.0 and res.entities[5][
            "item_stats__item_ctr"
        ].value == pytest.approx(0.104)
        unknown = res.entities[250]["item_stats__item_ctr"]
        assert (unknown.value, unknown.missing_reason, unknown.default_applied) == (
            0.01,
            "entity_not_found",
            "feature_default",
        )
        assert res.missing_by_reason["entity_not_found"] == 100 * 2
        assert res.missing_by_reason["not_computed"] == 1


def test_older_writes_never_overwrite_newer_and_ttl_expires(cluster: LocalCluster) -> None:
    with client(cluster) as c:
        u = ("user", "u2")
        assert c.put_features("user_session", "v1", [(u, T0, {"session_clicks": 7})]) == (1, 0)
        assert c.put_features("user_session", "v1", [(u, T0 - 10 * S, {"session_clicks": 1})]) == (
            0,
            1,
        )
        fresh = c.get_features("home_ranker", "v1", [u], request_time_us=T0 + 60 * S).entities[0]
        assert fresh["user_session__session_clicks"].value == 7
        late = c.get_features("home_ranker", "v1", [u], request_time_us=T0 + 1801 * S).entities[0]
        assert (
            late["user_session__session_clicks"].missing_reason == "entity_not_found"
        )  # TTL 30 min
        # once the group has data anywhere, every shard answers entity_not_found for absent users
        others = c.get_features(
            "home_ranker", "v1", [("user", f"x{n}") for n in range(30)], request_time_us=T0
        )
        assert {e["user_session__session_clicks"].missing_reason for e in others.entities} == {
            "entity_not_found"
        }


def test_non_personalized_requests_never_read_behavioural_features(cluster: LocalCluster) -> None:
    with client(cluster) as c:
        c.put_features("user_activity", "v1", [(("user", "u3"), T0, {"ctr_7d": 0.5})])
        res = c.get_features(
            "home_ranker", "v1", [("user", "u3")], personalized=False, request_time_us=T0
        )
        v = res.entities[0]["user_activity__ctr_7d"]
        assert (v.value, v.missing_reason) == (0.0, "privacy_disabled")
        assert res.entities[0]["user_profile__age_bucket"].missing_reason == "entity_not_found"


def test_bad_feature_requests_are_clear(cluster: LocalCluster) -> None:
    with client(cluster) as c:
        with pytest.raises(NotFound, match="unknown feature set"):
            c.get_features("nope", "v1", [("user", "u1")])
        with pytest.raises(InvalidArgument, match="no features for entity type"):
            c.get_features("home_ranker", "v1", [("creator", "c1")])
        with pytest.raises(InvalidArgument, match="item_ctr"):
            c.put_features("item_stats", "v1", [(("item", "x"), T0, {"item_ctr": "high"})])
        # Nanoseconds sent as microseconds would stamp the row tens of
        # thousands of years ahead: every later write of it would be ignored.
        with pytest.raises(InvalidArgument, match="feature_timestamp .* reads as nanoseconds"):
            c.put_features("item_stats", "v1", [(("item", "ns"), T0 * 1000, {"item_ctr": 0.5})])
        with pytest.raises(InvalidArgument, match="request_time_us -1; expected microseconds"):
            c.get_features("home_ranker", "v1", [("item", "ns")], request_time_us=-1)
        got = c.get_features("home_ranker", "v1", [("item", "ns")], request_time_us=T0)
        assert set(got.missing_by_reason) == {"entity_not_found"}  # nothing was written


def test_offline_online_parity_through_real_processes(
    make_cluster: ClusterFactory, tmp_path
) -> None:
    """Materialize an offline data set through the coordinator, then compare
    GetFeatures with the offline point-in-time join at the same timestamps."""
    import json
    import random

    import pyarrow.compute as pc

    from offline.materialize import GrpcFeatureSink, MaterializeJob, materialize
    from offline.parquet_store import OfflineStore
    from offline.pit_join import load_group_tables, point_in_time_values
    from registry import codec
    from tests.feature_catalog import CATALOG, DEFINITIONS, GROUPS, HOUR, MINUTE, RANKER
    from tests.test_feature_parity import DAYS, MIDNIGHT, WRITTEN, data_set, events_at

    cluster = make_cluster(num_shards=3)
    docs = [json.loads(codec.encode(o)) for o in (*DEFINITIONS, *GROUPS, RANKER)]
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply([{"kind": d["kind"], "spec": d["spec"]} for d in docs] + tenant_docs())
    rng = random.Random(5)
    offline = OfflineStore(tmp_path / "offline")
    for group, rows in data_set(rng).items():
        offline.write_features(CATALOG.schema(group), rows)
    sink = GrpcFeatureSink(cluster.coordinator_target)
    for group in WRITTEN:
        job = MaterializeJob(
            CATALOG.schema(group), start_date=DAYS[0], end_date=DAYS[-1], batch_size=50
        )
        report = materialize(job, offline, sink, tmp_path / f"ck-{group.name}.json", progress=None)
        assert report.rows > 0
    sink.close()
    compared = 0
    with client(cluster) as c:
        for t in (
            MIDNIGHT + 3 * 86_400 * 1_000_000 + 5 * MINUTE,
            MIDNIGHT + 3 * 86_400 * 1_000_000 + 2 * HOUR,
        ):
            ev = events_at(t, rng)
            ev = ev.filter(pc.equal(ev.column("tenant_id"), "acme"))  # one tenant per client
            for personalized in (True, False):
                tables = load_group_tables(ev, RANKER, CATALOG, offline, personalized=personalized)
                want = point_in_time_values(ev, RANKER, CATALOG, tables, personalized=personalized)
                users = ev.column("user_id").to_pylist()
                items = ev.column("item_id").to_pylist()
                entities = [("user", u) for u in users] + [("item", i) for i in items]
                got = c.get_features(
                    RANKER.name,
                    RANKER.version,
                    entities,
                    personalized=personalized,
                    request_time_us=t,
                )
                for name, values in want.items():
                    etype = "user" if name.startswith(("user_", "session")) else "item"
                    offset = 0 if etype == "user" else len(users)
                    for n, expected in enumerate(values):
                        v = got.entities[offset + n][name]
                        assert (v.value, v.missing_reason, v.default_applied, v.staleness_us) == (
                            expected.value,
                            expected.missing_reason.value if expected.missing_reason else None,
                            expected.default_applied.value if expected.default_applied else None,
                            expected.staleness_us,
                        ), f"{name} event {n} at {t} personalized={personalized}"
                        compared += 1
    assert compared > 500


def test_session_embeddings_expire_in_lookups(cluster: LocalCluster) -> None:
    import time

    import numpy as np

    from client.retrieval_client import Record

    spec = """
kind: EmbeddingFamily
spec: {name: session_vec, entity_type: session, dimension: 4, metric: inner_product, ttl_seconds: 600}
---
kind: EmbeddingVersion
spec: {name: session_vec, version: v1}
---
kind: IndexVersion
spec: {name: session_ix, version: v1, embedding: {name: session_vec, version: v1}, kind: flat, num_buckets: 3}
"""
    with RegistryClient(cluster.coordinator_target) as reg:
        assert reg.apply(spec)[-1] == "IndexVersion session_ix@v1 created"
    now_us = time.time_ns() // 1000
    with client(cluster) as c:
        c.upsert("session_vec", "v1", [Record("fresh", np.ones(4)), Record("old", np.ones(4))])
        # "old" was created 11 minutes ago: past the family's 10-minute TTL
        from protos.vecshard.v1 import common_pb2 as cpb
        from protos.vecshard.v1 import retrieval_pb2 as rpb

        req = rpb.UpsertRequest(
            access=c.access,
            embedding_name="session_vec",
            embedding_version="v1",
            records=[
                cpb.EmbeddingRecord(
                    key=cpb.EntityKey(entity_id="old"),
                    vector=np.ones(4, np.float32).tobytes(),
                    created_at_unix_micros=now_us - 660 * S,
                    source_version=now_us + 3600 * S,
                )
            ],
        )
        c._rpc("Upsert", req, None)
        got = c.batch_get("session_vec", "v1", ["fresh", "old", "never"])
        assert [lk.status for lk in got] == ["found", "missing", "missing"]
        assert got[0].created_at_unix_micros >= now_us and got[0].norm == 2.0


def test_materialize_cli_copies_offline_rows_online_and_resumes(
    cluster: LocalCluster, tmp_path
) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from core.domain import EntityKey, VersionRef
    from offline.parquet_store import OfflineStore
    from registry.features import GroupRow

    schema_ref = VersionRef("item_stats", "v1")
    from registry import codec
    from registry.feature_catalog import FeatureCatalog

    with RegistryClient(cluster.coordinator_target) as reg:
        objs = [
            codec.from_dict(codec.KINDS[k], o.spec)
            for k in ("FeatureDefinition", "FeatureGroup", "FeatureSet")
            for o in reg.list(k)
        ]
    schema = FeatureCatalog.build(objs).schema(schema_ref)
    store = OfflineStore(tmp_path / "offline")
    rows = [
        GroupRow(
            EntityKey("acme", "item", f"m{n}"),
            T0 + n * S,
            T0 + n * S,
            {"item_ctr": n / 100, "item_price": float(n)},
        )
        for n in range(50)
    ]
    store.write_features(schema, rows)
    cmd = [
        str(Path(sys.executable).parent / "vecshard"),
        "features",
        "materialize",
        "--group",
        "item_stats@v1",
        "--offline",
        str(tmp_path / "offline"),
        "--coordinator",
        cluster.coordinator_target,
        "--checkpoint",
        str(tmp_path / "ck.json"),
        "--batch-size",
        "20",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "materialized 50 rows" in first.stdout and "50 written" in first.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert (
        "materialized 0 rows" in again.stdout
        and "3 batch(es) were done by an earlier run" in again.stdout
    )
    with client(cluster) as c:
        got = c.get_features(
            "home_ranker", "v1", [("item", f"m{n}") for n in range(50)], request_time_us=T0 + 60 * S
        )
    assert [e["price"].value for e in got.entities] == [float(n) for n in range(50)]


def test_a_materialization_rides_out_a_shard_restart(
    make_cluster: ClusterFactory, tmp_path
) -> None:
    """A shard is down when the job starts and back 3 s later: the job's
    writes to its buckets are refused UNAVAILABLE meanwhile, and it waits
    for the shard (the SDK's default retries gave up within a second, and
    the job stopped) — and every row is acknowledged."""
    import json
    import random
    import threading

    from offline.materialize import GrpcFeatureSink, MaterializeJob, materialize
    from offline.parquet_store import OfflineStore
    from registry import codec
    from tests.feature_catalog import CATALOG, DEFINITIONS, GROUPS, RANKER
    from tests.test_feature_parity import DAYS, WRITTEN, data_set

    cluster = make_cluster(num_shards=3, lease_ttl=4)
    docs = [json.loads(codec.encode(o)) for o in (*DEFINITIONS, *GROUPS, RANKER)]
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply([{"kind": d["kind"], "spec": d["spec"]} for d in docs] + tenant_docs())
    offline = OfflineStore(tmp_path / "offline")
    for group, rows in data_set(random.Random(5)).items():
        offline.write_features(CATALOG.schema(group), rows)
    group = WRITTEN[0]
    job = MaterializeJob(
        CATALOG.schema(group), start_date=DAYS[0], end_date=DAYS[-1], batch_size=50
    )
    cluster.kill_shard("shard-1")
    back = threading.Timer(3.0, cluster.restart_shard, ("shard-1",))
    back.start()
    sink = GrpcFeatureSink(cluster.coordinator_target)
    try:
        report = materialize(job, offline, sink, tmp_path / "ck.json", progress=None)
    finally:
        back.join()
        sink.close()
    assert report.rows > 0 and report.written + report.ignored_older == report.rows
