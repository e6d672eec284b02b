"""Verified deletion (issue 15, item 5) through real processes: a user erased
across two embedding families, three versions, four index versions (flat and
HNSW, sealed segments on disk), its online feature rows and the offline
store, while a search load runs; the job is SIGKILLed and resumed; after it
returns nothing serves the user, the verification report shows zero matches,
and no segment file or RocksDB file holds its vector (the bytes are read)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import EntityKey, VersionRef
from offline.erasure import find_offline
from offline.parquet_store import EmbeddingRow, OfflineStore
from protos.vecshard.v1.internal import shard_pb2 as spb
from protos.vecshard.v1.internal import shard_pb2_grpc
from registry.features import GroupRow
from registry.registry import Registry
from shard_server.feature_store import FeatureShardStore
from shard_server.storage import FEATURE_ERASURES, TOMBSTONES
from tests.conftest import ClusterFactory
from tests.polling import poll
from tests.specs import tenant_docs

pytestmark = pytest.mark.integration
VECSHARD = str(Path(sys.executable).parent / "vecshard")
DIM = 16
SUBJECT = EntityKey("acme", "user", "subject-7f3a9c2e1b4d")
USERS = [f"user-{i:04d}" for i in range(240)]
FEATURES = (Path(__file__).resolve().parent.parent / "deploy/examples/50-features.yaml").read_text()
# (family, version, index, kind): every embedding of entity type `user`.
INDEXES = [
    ("user_tower", "v1", "users_flat", "flat"),
    ("user_tower", "v1", "users_hnsw", "hnsw"),
    ("user_tower", "v2", "users_v2", "hnsw"),
    ("user_session", "v1", "sessions", "flat"),
]


def spec() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {
            "kind": "EmbeddingFamily",
            "spec": {"name": f, "entity_type": "user", "dimension": DIM, "metric": "l2"},
        }
        for f in ("user_tower", "user_session")
    ]
    docs += [
        {"kind": "EmbeddingVersion", "spec": {"name": f, "version": v}}
        for f, v in {(f, v) for f, v, _, _ in INDEXES}
    ]
    docs += [
        {
            "kind": "IndexVersion",
            "replicas": 2,
            "spec": {
                "name": ix,
                "version": "v1",
                "embedding": {"name": f, "version": v},
                "kind": kind,
                "num_buckets": 4,
                "params": {"M": 8, "ef_construction": 40, "ef_search": 32}
                if kind == "hnsw"
                else {},
            },
        }
        for f, v, ix, kind in INDEXES
    ]
    docs.append(
        {
            "kind": "Bundle",
            "spec": {
                "name": "users_b",
                "query_embedding": {"name": "user_tower", "version": "v1"},
                "item_embedding": {"name": "user_tower", "version": "v1"},
                "index": {"name": "users_hnsw", "version": "v1"},
            },
        }
    )
    docs.append({"kind": "Route", "spec": {"name": "similar_users", "bundle": "users_b"}})
    return docs


def vectors(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {u: rng.normal(size=DIM).astype(np.float32) for u in [*USERS, SUBJECT.entity_id]}


@pytest.fixture
def cluster(make_cluster: ClusterFactory, tmp_path: Path) -> LocalCluster:
    c = make_cluster(
        num_shards=2,
        extra_env={
            "VECSHARD__SHARD__SEAL_ROWS": "100",
            "VECSHARD__SHARD__MIN_INDEX_ROWS": "50",
            "VECSHARD__SHARD__SEAL_AGE_SECONDS": "3600",
        },
    )
    with RegistryClient(c.coordinator_target) as reg:
        reg.apply(spec())
        reg.apply(FEATURES)
        reg.apply(tenant_docs())
    return c


def load(cluster: LocalCluster) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    data = {}
    with RetrievalClient(cluster.coordinator_target, tenant_id="acme", purpose="p") as c:
        for n, (f, v) in enumerate(sorted({(f, v) for f, v, _, _ in INDEXES})):
            vecs = data[(f, v)] = vectors(n)
            c.upsert(f, v, [Record(u, x) for u, x in vecs.items()])
        rows = [(("user", u), 1_000, {"age_bucket": "25-34"}) for u in [*USERS, SUBJECT.entity_id]]
        c.put_features("user_profile", "v1", rows)
    for ready in (s.ready for s in cluster.shards.values()):
        with cluster.shard_channel(str(ready["grpc"])) as ch:  # type: ignore[index]  # started
            stub = shard_pb2_grpc.ShardServiceStub(ch)
            for _, _, ix, _ in INDEXES:  # seal: the subject is in segment files on disk
                stub.Flush(spb.FlushRequest(index=spb.IndexRef(name=ix, version="v1")), timeout=120)
    return data


def offline_store(
    cluster: LocalCluster, root: Path, data: dict[tuple[str, str], Any]
) -> OfflineStore:
    store = OfflineStore(root)
    etcd = cluster.etcd_store()
    snap = Registry(etcd, cluster.etcd_prefix).snapshot()
    etcd.close()
    schema = snap.feature_catalog.schema(VersionRef("user_profile", "v1"))
    keys = [EntityKey("acme", "user", u) for u in [*USERS, SUBJECT.entity_id]]
    store.write_features(schema, [GroupRow(k, 1_000, 1_000, {"age_bucket": "25-34"}) for k in keys])
    (family, version), vecs = next(iter(data.items()))
    store.write_embeddings(
        snap.family(family),
        version,
        [EmbeddingRow(EntityKey("acme", "user", u), x, 1_000) for u, x in vecs.items()],
    )
    assert find_offline(root, SUBJECT)
    return store


class SearchLoad(threading.Thread):
    """Searches with the subject's own vector until stopped; notes when the
    subject was last seen in an answer."""

    def __init__(self, cluster: LocalCluster, query: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.cluster, self.query = cluster, query
        self.stop = threading.Event()
        self.last_seen = 0.0
        self.searches = 0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        with RetrievalClient(self.cluster.coordinator_target, tenant_id="acme", purpose="p") as c:
            while not self.stop.is_set():
                try:
                    hits = c.search("similar_users", self.query, 5).hits
                except Exception as exc:  # noqa: BLE001 - reported by the test
                    self.errors.append(exc)
                    continue
                self.searches += 1
                if any(h.key == SUBJECT for h in hits):
                    self.last_seen = time.monotonic()


def delete_subject(cluster: LocalCluster, state: Path, offline: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            VECSHARD, "delete-subject", "--coordinator", cluster.coordinator_target,
            "--tenant", SUBJECT.tenant_id, "--entity-type", SUBJECT.entity_type,
            "--entity-id", SUBJECT.entity_id, "--offline", str(offline),
            "--state-dir", str(state), "--why", "GDPR request 42",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **cluster.client_env()},
    )  # fmt: skip


def shard_files(cluster: LocalCluster, sid: str) -> dict[Path, bytes]:
    root = cluster.data_dir / sid
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_subject_is_erased_everywhere_verified_and_gone_from_the_bytes(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    data = load(cluster)
    offline = tmp_path / "offline"
    offline_store(cluster, offline, data)
    stored = {f"{f}@{v}": vecs[SUBJECT.entity_id].tobytes() for (f, v), vecs in data.items()}
    before = b"".join(b for sid in cluster.shards for b in shard_files(cluster, sid).values())
    assert all(vec in before for vec in stored.values())  # the bytes check can fail
    load_thread = SearchLoad(cluster, data[("user_tower", "v1")][SUBJECT.entity_id])
    load_thread.start()
    # The load runs, and finds the subject.
    assert poll(lambda: load_thread.searches, lambda n: n >= 5, timeout=60) >= 5
    assert load_thread.last_seen

    # First run: SIGKILLed right after the tombstones are in.
    state = tmp_path / "state"
    first = delete_subject(cluster, state, offline)
    assert first.stdout is not None
    for line in first.stdout:
        if ": erase done:" in line:
            erased_at = time.monotonic()
            first.send_signal(signal.SIGKILL)
            break
    first.wait(30)
    first.stdout.close()
    assert first.returncode == -signal.SIGKILL
    # Already nothing is served, though the job did not finish.
    with RetrievalClient(cluster.coordinator_target, tenant_id="acme", purpose="p") as c:
        for f, v in data:
            assert c.batch_get(f, v, [SUBJECT.entity_id])[0].status in ("deleted", "missing")

    second = delete_subject(cluster, state, offline)
    out, _ = second.communicate(timeout=600)
    returned_at = time.monotonic()
    assert second.returncode == 0, out
    assert "resuming; done before: plan, erase" in out
    report = json.loads(out[out.index("\n{") + 1 :])
    assert report["verified"] and report["matches"] == 0, report
    assert report["copies_found"] == len(INDEXES)  # every index version held a copy
    assert report["erase"]["feature_rows_deleted"] >= 1
    assert report["offline"]["rows_removed"] == 2  # its feature row and its embedding row
    v = report["verify"]
    assert v["searches"] >= len(INDEXES) and v["lookups"] >= len(INDEXES) and v["files_scanned"]
    assert v["markers"] >= 1  # the tombstones that keep it deleted

    # The load runs on after the job returned: 5 more searches, none finding it.
    after = load_thread.searches
    assert poll(lambda: load_thread.searches, lambda n: n >= after + 5, timeout=60) >= after + 5
    load_thread.stop.set()
    load_thread.join(30)
    assert not load_thread.errors, load_thread.errors[:3]
    assert load_thread.last_seen < erased_at <= returned_at  # never served after the erase

    with RetrievalClient(cluster.coordinator_target, tenant_id="acme", purpose="p") as c:
        for f, v in data:
            assert c.batch_get(f, v, [SUBJECT.entity_id, USERS[0]])[1].status == "found"
            assert c.batch_get(f, v, [SUBJECT.entity_id])[0].status in ("deleted", "missing")
        res = c.get_features("home_ranker", "v1", [("user", SUBJECT.entity_id)])
        reasons = {x.missing_reason for x in res.entities[0].values}
        assert reasons <= {"entity_not_found", "not_computed"}, reasons
        # A producer replaying the subject's history: refused (an erasure marker).
        replay = [(("user", SUBJECT.entity_id), 1_000, {"age_bucket": "25-34"})]
        assert c.put_features("user_profile", "v1", replay) == (0, 1)
        res = c.get_features("home_ranker", "v1", [("user", SUBJECT.entity_id)])
        assert {x.missing_reason for x in res.entities[0].values} == reasons
    assert find_offline(offline, SUBJECT) == []
    audit = [
        json.loads(line)
        for p in cluster.audit_dir.rglob("audit-*.jsonl")
        for line in p.read_text().splitlines()
    ]
    verified = [
        r
        for r in audit
        if r["rpc"].endswith("/VerifyErasure") and r.get("code") == "OK" and "event" not in r
    ]
    assert len(verified) == 1 and verified[0]["searches"] >= len(INDEXES)
    assert verified[0].get("search_matches", 0) == 0 and verified[0].get("file_matches", 0) == 0
    assert verified[0]["why"] == "GDPR request 42" and verified[0]["principal"] == "admin"
    assert all(SUBJECT.entity_id not in json.dumps(r) for r in audit)  # hashed, never raw

    # The bytes: no file of any shard holds one of its vectors; its id only in
    # the deletion markers' column families' files and RocksDB's MANIFEST.
    cluster.stop()
    for sid in cluster.shards:
        files = shard_files(cluster, sid)
        store = FeatureShardStore(cluster.data_dir / sid / "rocksdb")
        markers = store.sst_files(TOMBSTONES) | store.sst_files(FEATURE_ERASURES)
        store.close()
        for path, content in files.items():
            assert not any(vec in content for vec in stored.values()), path
            if SUBJECT.entity_id.encode() in content:
                assert path.name in markers or path.name.startswith("MANIFEST-"), path
    for path in offline.rglob("*.parquet"):
        assert SUBJECT.entity_id.encode() not in path.read_bytes(), path
    audit_trail_verifies_against_its_anchors(cluster)


def audit_trail_verifies_against_its_anchors(cluster: LocalCluster) -> None:
    """The stopped coordinators' chains verify, also against the heads they
    anchored in etcd; cutting the newest record off a chain passes the files
    alone but not the anchor."""
    etcd = cluster.certs.etcd
    args = [
        VECSHARD, "audit", "verify", "--dir", str(cluster.audit_dir),
        "--key-file", str(cluster.certs.audit_key_file),
        "--etcd", cluster.endpoint, "--etcd-prefix", cluster.etcd_prefix,
        "--etcd-ca-file", str(etcd.ca_file), "--etcd-cert-file", str(etcd.cert_file),
        "--etcd-key-file", str(etcd.key_file),
    ]  # fmt: skip
    ok = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK") == len(cluster.coordinators)
    newest = max(cluster.audit_dir.rglob("audit-*.jsonl"), key=lambda p: p.stat().st_mtime)
    lines = newest.read_bytes().splitlines(keepends=True)
    newest.write_bytes(b"".join(lines[:-1]))
    files_only = subprocess.run(args[:7], capture_output=True, text=True, timeout=60)
    assert files_only.returncode == 0  # a consistent, shorter chain
    anchored = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert anchored.returncode == 1 and "removed from its end" in anchored.stdout
