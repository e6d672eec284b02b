"""What the model-change tests through real processes share
(tests/test_model_change_e2e.py): data sets, registry documents, a load
generator, and readers of the servers' metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from protos.vecshard.v1.internal import shard_pb2 as spb
from protos.vecshard.v1.internal import shard_pb2_grpc
from registry.quality import encode_vector
from tests.polling import eventually

VECSHARD = str(Path(sys.executable).parent / "vecshard")
DIM, N, K = 16, 600, 10
PURPOSE = "recommendation"


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VECSHARD, *args], capture_output=True, text=True, timeout=timeout)


def clustered(rng: np.random.Generator, n: int, centers: int = 12) -> np.ndarray:
    c = rng.normal(size=(centers, DIM)) * 4
    return (c[rng.integers(0, centers, n)] + rng.normal(size=(n, DIM))).astype(np.float32)


def exact_top(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    d = ((queries[:, None, :] - items[None, :, :]) ** 2).sum(-1)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def write_parquet(directory: Path, ids: list[str], vectors: np.ndarray, version: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for f, lo in enumerate(range(0, len(ids), 150)):
        rows = range(lo, min(lo + 150, len(ids)))
        table = pa.table(
            {
                "tenant_id": ["acme"] * len(rows),
                "entity_type": ["item"] * len(rows),
                "entity_id": [ids[i] for i in rows],
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors[lo : rows.stop].reshape(-1)), DIM
                ),
                "source_version": pa.array([version] * len(rows), pa.int64()),
                "model_version": ["m2"] * len(rows),
                "attributes": [json.dumps({"cat": f"c{i % 3}"}) for i in rows],
            }
        )
        pq.write_table(table, directory / f"part-{f}.parquet")


def docs(
    version: str, status: str, gates: dict[str, object] | None = None
) -> list[dict[str, object]]:
    out: list[dict[str, object]] = [
        {
            "kind": "EmbeddingVersion",
            "spec": {"name": "items", "version": version, "status": status},
        },
        {
            "kind": "IndexVersion",
            "spec": {
                "name": "ix",
                "version": version,
                "embedding": {"name": "items", "version": version},
                "kind": "flat",
                "num_buckets": 4,
                "attributes": {"cat": "string"},
                "status": "building" if gates else "ready",
                **({"gates": gates} if gates else {}),
            },
        },
    ]
    return out


def canary_doc(
    name: str, embedding_version: str, vectors: np.ndarray, relevant: list[list[str]]
) -> dict[str, object]:
    return {
        "kind": "CanaryQuerySet",
        "spec": {
            "name": name,
            "version": "v1",
            "query_embedding": {"name": "items", "version": embedding_version},
            "queries": [
                {"tenant_id": "acme", "vector": encode_vector(v), "relevant_ids": ids}
                for v, ids in zip(vectors, relevant, strict=True)
            ],
        },
    }


def bundle(name: str, version: str) -> dict[str, object]:
    ref = {"name": "items", "version": version}
    return {
        "kind": "Bundle",
        "spec": {
            "name": name,
            "query_embedding": ref,
            "item_embedding": ref,
            "index": {"name": "ix", "version": version},
        },
    }


def gates(canary: str) -> dict[str, object]:
    return {
        "k": K,
        "canary_set": canary,
        "min_canary_recall": 0.97,
        "min_recall_vs_exact": 0.95,
        "min_coverage": 0.99,
        "min_overlap_with_production": 0.8,
    }


class Data:
    def __init__(self) -> None:
        rng = np.random.default_rng(16)
        self.ids = [f"item-{i:04d}" for i in range(N)]
        self.v1 = clustered(rng, N)
        rotation, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
        self.v2 = (self.v1 @ rotation).astype(np.float32)  # "the new model": same neighbours
        picks = rng.choice(N, 100, replace=False)
        self.canary_vectors = self.v2[picks]
        self.relevant = [
            [self.ids[j] for j in row] for row in exact_top(self.v2, self.canary_vectors, K)
        ]
        # The corrupted build: 5 % of the vectors replaced by noise of the same norm.
        self.v3 = self.v2.copy()
        bad = rng.choice(N, N // 20, replace=False)
        noise = rng.normal(size=(len(bad), DIM)).astype(np.float32)
        norms = np.linalg.norm(self.v2[bad], axis=1) / np.linalg.norm(noise, axis=1)
        self.v3[bad] = noise * norms[:, None]


class Load:
    """Searches through the route and writes new records (tenant globex) to
    v1 until stopped; every failure is kept."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.searches = 0
        self.written: dict[str, int] = {}
        self.indexes: set[str] = set()
        self.threads = [threading.Thread(target=self._search)]
        self.writer = threading.Thread(target=self._write)

    def _search(self) -> None:
        rng = np.random.default_rng(1)
        with RetrievalClient(self.target, tenant_id="acme", purpose=PURPOSE) as c:
            while not self.stop.is_set():
                try:
                    res = c.search(
                        "r", rng.normal(size=DIM).astype(np.float32), k=K, require_complete=True
                    )
                    self.indexes.add(res.index)
                    self.searches += 1
                except Exception as exc:  # noqa: BLE001 - every failure is the finding
                    self.failures.append(f"search: {exc!r}")

    def _write(self) -> None:
        rng = np.random.default_rng(2)
        n = 0
        with RetrievalClient(self.target, tenant_id="globex", purpose=PURPOSE) as c:
            while not self.stop.is_set():
                version = time.time_ns() // 1000
                batch = [
                    Record(f"live-{n + i}", rng.normal(size=DIM), source_version=version)
                    for i in range(5)
                ]
                try:
                    c.upsert("items", "v1", batch)
                except Exception as exc:  # noqa: BLE001
                    self.failures.append(f"upsert: {exc!r}")
                    continue
                self.written.update({r.entity_id: version for r in batch})
                n += 5
                self.stop.wait(0.02)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def start_writing(self) -> None:
        self.threads.append(self.writer)
        self.writer.start()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Polls a state another process changes (no event reaches this one)."""
    assert eventually(check, timeout), f"timed out waiting for {what}"


def coordinator_metric(cluster: LocalCluster, series: str) -> float | None:
    ready = cluster.coordinator.ready if cluster.coordinator else None
    assert ready is not None
    text = urllib.request.urlopen(f"http://127.0.0.1:{ready['metrics']}/metrics", timeout=5)
    for line in text.read().decode().splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def has_revision(client: RegistryClient, revision: int) -> bool:
    return bool(client.status().revision >= revision)


def shard_metric(cluster: LocalCluster, shard_id: str, name: str, labels: str) -> float | None:
    ready = cluster.shards[shard_id].ready
    assert ready is not None
    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{ready['metrics']}/metrics", timeout=5)
        .read()
        .decode()
    )
    for line in text.splitlines():
        if line.startswith(name + "{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def flush(cluster: LocalCluster, index: str, version: str) -> int:
    """Seals every shard's rows of the index; returns the sealed rows."""
    sealed = 0
    for shard_id in cluster.shard_ids():
        ready = cluster.shards[shard_id].ready
        assert ready is not None
        with cluster.shard_channel(str(ready["grpc"])) as ch:
            stats = (
                shard_pb2_grpc.ShardServiceStub(ch)
                .Flush(
                    spb.FlushRequest(index=spb.IndexRef(name=index, version=version)), timeout=60
                )
                .stats
            )
        sealed += sum(s.rows for s in stats.segments if s.state == "sealed")
    return sealed
