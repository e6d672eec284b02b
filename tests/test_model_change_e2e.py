"""A model change through real processes (issue 16 acceptance): family v1
serving under load → backfill v2 from Parquet (SIGKILLed once mid-way and
resumed) while dual-write copies the records that keep arriving → evaluate →
promote → route switch, with no failed search and every record written
during the migration in v2 → rollback → v1 answers again → retention expiry
drops v1. And: a version built from 5 % corrupted vectors fails its
canary-recall gate and cannot be promoted; the shards' recall estimate
tracks a deliberately degraded HNSW index."""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.errors import FailedPrecondition
from protos.vecshard.v1.internal import shard_pb2 as spb
from protos.vecshard.v1.internal import shard_pb2_grpc
from tests.conftest import ClusterFactory
from tests.model_change_support import (
    DIM,
    PURPOSE,
    VECSHARD,
    Data,
    K,
    Load,
    N,
    bundle,
    canary_doc,
    cli,
    clustered,
    coordinator_metric,
    docs,
    exact_top,
    flush,
    gates,
    has_revision,
    shard_metric,
    wait_for,
    write_parquet,
)
from tests.specs import tenant_docs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


@pytest.fixture(scope="module")
def cluster(make_module_cluster: ClusterFactory, data: Data) -> Iterator[LocalCluster]:
    c = make_module_cluster(
        num_shards=2,
        extra_env={
            "VECSHARD__COORDINATOR__RETENTION_SWEEP_SECONDS": "0.3",
            "VECSHARD__COORDINATOR__CANARY_INTERVAL_SECONDS": "0.5",
            "VECSHARD__SHARD__RECALL_SAMPLE_RATE": "1.0",
            # Every query re-checked: a whole core for it, not the default 2 %.
            "VECSHARD__SHARD__RECALL_SAMPLE_CPU_SHARE": "1.0",
        },
    )
    family = {
        "kind": "EmbeddingFamily",
        "spec": {
            "name": "items",
            "entity_type": "item",
            "dimension": DIM,
            "metric": "l2",
            "rollback_retention_seconds": 1,
        },
    }
    with RegistryClient(c.coordinator_target) as reg:
        reg.apply(
            [
                *tenant_docs(),
                family,
                *docs("v1", "ready"),
                bundle("b1", "v1"),
                {"kind": "Route", "spec": {"name": "r", "bundle": "b1"}},
            ]
        )
        reg.promote("IndexVersion", "ix", "v1", "production")
    with RetrievalClient(c.coordinator_target, tenant_id="acme", purpose=PURPOSE) as client:
        records = [
            Record(i, v, attributes={"cat": f"c{n % 3}"})
            for n, (i, v) in enumerate(zip(data.ids, data.v1, strict=True))
        ]
        assert client.upsert("items", "v1", records)[0] == N
    yield c


def test_model_change_end_to_end(cluster: LocalCluster, data: Data, tmp_path: Path) -> None:
    target = cluster.coordinator_target
    src = tmp_path / "v2"
    write_parquet(src, data.ids, data.v2, version=time.time_ns() // 1000)
    reg = RegistryClient(target)
    reg.apply(
        [
            *docs("v2", "validating", gates("canary@v1")),
            canary_doc("canary", "v2", data.canary_vectors, data.relevant),
        ]
    )
    with pytest.raises(FailedPrecondition, match="never evaluated"):
        reg.promote("IndexVersion", "ix", "v2", "ready")
    with Load(target) as load:
        wait_for(lambda: load.searches > 20, "searches to start")
        out = cli(
            "embeddings",
            "dual-write",
            "items",
            "--from",
            "v1",
            "--to",
            "v2",
            "--coordinator",
            target,
        )
        assert out.returncode == 0, out.stderr
        # The migration begins once every coordinator has the setting; the
        # Parquet export (here: the items) covers what was written before.
        revision = reg.get("DualWrite", "items").mod_revision
        for address in cluster.coordinator_addresses:
            with RegistryClient(address) as one:
                wait_for(functools.partial(has_revision, one, revision), "dual-write to spread")
        load.start_writing()
        ckpt, dead = tmp_path / "ckpt.json", tmp_path / "dead"
        args = [
            "embeddings",
            "backfill",
            "--from",
            str(src),
            "--to",
            "items@v2",
            "--coordinator",
            target,
            "--checkpoint",
            str(ckpt),
            "--dead-letter",
            str(dead),
            "--batch-size",
            "25",
        ]
        child = subprocess.Popen(
            [VECSHARD, *args, "--max-rows-per-s", "300"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

        def done_batches() -> int:
            if not ckpt.exists():
                return 0
            return sum(f["batches"] for f in json.loads(ckpt.read_text())["files"].values())

        wait_for(lambda: done_batches() >= 8, "the backfill to write 8 batches", 60)
        child.kill()  # SIGKILL mid-way
        child.communicate()
        assert 8 <= done_batches() < N // 25, "killed too late to prove a resume"
        out = cli(*args)
        assert out.returncode == 0, out.stderr
        assert "done by an earlier run" in out.stdout and "rejected: none" in out.stdout, out.stdout
        assert "backfill items@v2" in out.stderr  # the progress line
        wait_for(lambda: len(load.written) > 100, "more live writes")
        reg.promote("IndexVersion", "ix", "v2", "validating")  # built: now measure it
        out = cli(
            "embeddings",
            "evaluate",
            "ix@v2",
            "--coordinator",
            target,
            "--source",
            str(src),
            "--sample",
            "50",
            "--coverage-attribute",
            "cat",
        )
        assert out.returncode == 0, out.stdout + out.stderr
        ev = json.loads(out.stdout)
        assert ev["canary_recall"] == 1.0 and ev["recall_vs_exact"] >= 0.99, ev
        assert ev["coverage"] == 1.0 and ev["coverage_by_attribute"]["cat=c0"] == 1.0, ev
        assert ev["overlap_with_production"] >= 0.8 and ev["production_index"] == "ix@v1", ev
        assert (
            set(ev["recall_by_shard"]) == {"shard-0", "shard-1"} and ev["recall_by_segment_kind"]
        ), ev
        reg.promote("EmbeddingVersion", "items", "v2", "ready")
        reg.promote("IndexVersion", "ix", "v2", "ready")
        reg.promote("IndexVersion", "ix", "v2", "production")
        reg.apply([bundle("b2", "v2")])
        reg.switch_route("r", "b2", why="november model")
        wait_for(lambda: "ix@v2" in load.indexes, "searches to reach v2")
        # The coordinators run the canary set through the route on a schedule,
        # next to the baseline v2 was promoted on.
        wait_for(
            lambda: (
                coordinator_metric(cluster, 'vecshard_canary_recall_baseline{route="r"}') == 1.0
            ),
            "the canary baseline",
        )
        assert coordinator_metric(cluster, 'vecshard_canary_recall{route="r"}') == 1.0
    assert not load.failures, load.failures[:5]
    # Every record acknowledged during the migration is in v2, at its version.
    with RetrievalClient(target, tenant_id="globex", purpose=PURPOSE) as c:
        found = c.batch_get("items", "v2", list(load.written), include_vectors=False)
    missing = [f.key.entity_id for f in found if f.status != "found"]
    assert not missing, missing[:5]
    assert {f.key.entity_id: f.source_version for f in found} == load.written
    with RetrievalClient(target, tenant_id="acme", purpose=PURPOSE) as c:
        assert all(
            f.status == "found" for f in c.batch_get("items", "v2", data.ids, include_vectors=False)
        )

        reg.rollback("r", why="ctr dropped")
        wait_for(lambda: c.search("r", data.v1[0], k=K).index == "ix@v1", "v1 to answer again")
        assert c.search("r", data.v1[0], k=K).hits[0].key.entity_id == data.ids[0]
        reg.switch_route("r", "b2", why="forward again")
        reg.promote("IndexVersion", "ix", "v1", "deprecated")
    wait_for(
        lambda: reg.get("IndexVersion", "ix", "v1").spec["status"] == "archived",
        "retention expiry",
        30,
    )
    segments = [
        p for s in cluster.shard_ids() for p in (cluster.data_dir / s / "segments").glob("ix@v1-*")
    ]
    wait_for(lambda: not any(p.exists() for p in segments), "the shards to drop v1")
    out = cli("registry", "rollback", "r", "--coordinator", target)
    assert (
        out.returncode == 1
        and "archived" in out.stderr
        and "rollback retention ended" in out.stderr
    ), out.stderr
    reg.close()


def test_a_version_built_from_corrupted_vectors_fails_its_canary_gate(
    cluster: LocalCluster, data: Data, tmp_path: Path
) -> None:
    target = cluster.coordinator_target
    src = tmp_path / "v3"
    write_parquet(src, data.ids, data.v3, version=1)
    with RegistryClient(target) as reg:
        reg.apply(
            [
                *docs("v3", "validating", gates("canary3@v1")),
                canary_doc("canary3", "v3", data.canary_vectors, data.relevant),
            ]
        )
        out = cli(
            "embeddings",
            "backfill",
            "--from",
            str(src),
            "--to",
            "items@v3",
            "--coordinator",
            target,
            "--checkpoint",
            str(tmp_path / "c.json"),
        )
        assert out.returncode == 0 and "rejected: none" in out.stdout, (
            out.stdout + out.stderr
        )  # noise passes validation
        reg.promote("IndexVersion", "ix", "v3", "validating")
        out = cli("embeddings", "evaluate", "ix@v3", "--coordinator", target, "--sample", "50")
        assert out.returncode == 1, out.stdout
        assert "min_canary_recall: measured 0.9" in out.stderr, out.stderr
        assert json.loads(out.stdout)["canary_recall"] < 0.97
        with pytest.raises(
            FailedPrecondition,
            match=r"ix@v3 cannot become ready: failed gate\(s\): min_canary_recall",
        ):
            reg.promote("IndexVersion", "ix", "v3", "ready")


def test_recall_estimate_tracks_a_degraded_hnsw_index(cluster: LocalCluster) -> None:
    rng = np.random.default_rng(3)
    items = clustered(rng, 3000, centers=30)
    queries = (items[rng.choice(3000, 200, replace=False)] + rng.normal(size=(200, DIM))).astype(
        np.float32
    )
    spec = [
        {
            "kind": "EmbeddingFamily",
            "spec": {"name": "hn", "entity_type": "item", "dimension": DIM, "metric": "l2"},
        },
        {"kind": "EmbeddingVersion", "spec": {"name": "hn", "version": "v1"}},
        {
            "kind": "IndexVersion",
            "spec": {
                "name": "hn_ix",
                "version": "v1",
                "embedding": {"name": "hn", "version": "v1"},
                "kind": "hnsw",
                "num_buckets": 1,  # one shard holds it all: its recall is the route's
                "params": {"M": 4, "ef_construction": 8, "ef_search": 1},
            },
        },
        {
            "kind": "Bundle",
            "spec": {
                "name": "hb",
                "query_embedding": {"name": "hn", "version": "v1"},
                "item_embedding": {"name": "hn", "version": "v1"},
                "index": {"name": "hn_ix", "version": "v1"},
            },
        },
        {"kind": "Route", "spec": {"name": "hr", "bundle": "hb"}},
    ]
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(spec)
        (holder,) = {s for b in reg.get("Placement", "hn_ix", "v1").spec["buckets"] for s in b}
    ids = [f"h{i}" for i in range(len(items))]
    with RetrievalClient(cluster.coordinator_target, tenant_id="acme", purpose=PURPOSE) as c:
        c.upsert("hn", "v1", [Record(i, v) for i, v in zip(ids, items, strict=True)])
        ready = cluster.shards[holder].ready
        assert ready is not None
        with cluster.shard_channel(str(ready["grpc"])) as ch:
            stats = (
                shard_pb2_grpc.ShardServiceStub(ch)
                .Flush(
                    spb.FlushRequest(index=spb.IndexRef(name="hn_ix", version="v1")), timeout=120
                )
                .stats
            )
        assert {s.kind for s in stats.segments if s.rows} == {"hnsw"}
        truth = exact_top(items, queries, K)
        recalls = []
        for q, want in zip(queries, truth, strict=True):
            got = {h.key.entity_id for h in c.search("hr", q, k=K).hits}
            recalls.append(len(got & {ids[j] for j in want}) / K)
    true_recall = float(np.mean(recalls))
    assert true_recall < 0.9, f"the index is not degraded enough to test with ({true_recall:.3f})"
    label = 'index="hn_ix@v1"'

    def count(outcome: str) -> float:
        found = shard_metric(
            cluster, holder, "vecshard_recall_samples_total", f'{label},outcome="{outcome}"'
        )
        return found or 0.0

    def measured() -> bool:
        # Under load the re-check queue may drop some (counted): every query
        # is accounted for once measured + dropped reach the number sent.
        return count("measured") + count("dropped") + count("over_budget") >= len(queries)

    wait_for(measured, "the shard to re-check every query", 60)
    assert count("measured") >= len(queries) / 2
    estimate = shard_metric(cluster, holder, "vecshard_recall_estimate", label)
    assert estimate is not None
    print(f"recall@{K}: estimate {estimate:.3f}, true {true_recall:.3f}")  # the figure
    assert abs(estimate - true_recall) <= 0.03, (estimate, true_recall)


def test_metadata_backfill_makes_a_new_attribute_filterable_over_the_whole_corpus(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    from core.filters import Eq

    target = cluster.coordinator_target
    ix = {
        "name": "meta_ix",
        "version": "v1",
        "embedding": {"name": "meta", "version": "v1"},
        "kind": "flat",
        "num_buckets": 4,
        "attributes": {"cat": "string"},
    }
    with RegistryClient(target) as reg:
        reg.apply(
            [
                {
                    "kind": "EmbeddingFamily",
                    "spec": {
                        "name": "meta",
                        "entity_type": "item",
                        "dimension": DIM,
                        "metric": "l2",
                    },
                },
                {"kind": "EmbeddingVersion", "spec": {"name": "meta", "version": "v1"}},
                {"kind": "IndexVersion", "spec": ix},
                {
                    "kind": "Bundle",
                    "spec": {
                        "name": "mb",
                        "query_embedding": {"name": "meta", "version": "v1"},
                        "item_embedding": {"name": "meta", "version": "v1"},
                        "index": {"name": "meta_ix", "version": "v1"},
                    },
                },
                {"kind": "Route", "spec": {"name": "mr", "bundle": "mb"}},
            ]
        )
    rng = np.random.default_rng(7)
    ids = [f"m{i}" for i in range(300)]
    region = ["eu" if i % 2 else "us" for i in range(300)]
    eu = {i for i, r in zip(ids, region, strict=True) if r == "eu"}
    with RetrievalClient(target, tenant_id="acme", purpose=PURPOSE) as c:
        c.upsert(
            "meta", "v1", [Record(i, rng.normal(size=DIM), attributes={"cat": "a"}) for i in ids]
        )
        assert flush(cluster, "meta_ix", "v1") == 300  # the old rows live in sealed segments
        keys = tmp_path / "keys"
        keys.mkdir()
        pq.write_table(
            pa.table(
                {
                    "tenant_id": ["acme"] * 300,
                    "entity_type": ["item"] * 300,
                    "entity_id": ids,
                    "region": region,
                }
            ),
            keys / "keys.parquet",
        )
        out = cli(
            "embeddings",
            "add-attribute",
            "meta_ix@v1",
            "--name",
            "region",
            "--type",
            "string",
            "--keys",
            str(keys),
            "--value-column",
            "region",
            "--coordinator",
            target,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "set on 300 record(s)" in out.stdout, out.stdout
        hits = c.search("mr", rng.normal(size=DIM), k=300, filter=Eq("region", "eu")).hits
        assert {h.key.entity_id for h in hits} == eu
        # A new write carrying it is filterable at once; a rerun changes nothing.
        c.upsert(
            "meta",
            "v1",
            [Record("late", rng.normal(size=DIM), attributes={"cat": "a", "region": "eu"})],
        )
        hits = c.search("mr", rng.normal(size=DIM), k=300, filter=Eq("region", "eu")).hits
        assert {h.key.entity_id for h in hits} == eu | {"late"}
        out = cli(
            "embeddings",
            "add-attribute",
            "meta_ix@v1",
            "--name",
            "region",
            "--type",
            "string",
            "--keys",
            str(keys),
            "--value-column",
            "region",
            "--coordinator",
            target,
        )
        assert "set on 0 record(s); 300 had it already" in out.stdout, out.stdout
        out = cli(
            "embeddings",
            "add-attribute",
            "meta_ix@v1",
            "--name",
            "region",
            "--type",
            "int",
            "--keys",
            str(keys),
            "--default",
            "1",
            "--coordinator",
            target,
        )
        assert out.returncode == 1 and "not int" in out.stderr, out.stderr
