"""Issue 8: the rollout protocol. Against a local 3-shard cluster with two
replicas of every bucket, restarting every shard in turn while a load runs
costs no failed or partial search and loses no acknowledged write; SIGTERM
on a shard under load finishes its in-flight work and clients only see
their queries routed elsewhere."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from cli.rollout import (
    KubectlFleet,
    LocalFleet,
    Rollout,
    coordinator_errors,
    in_flight_from_metrics,
)
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from tests.conftest import ClusterFactory
from tests.polling import poll
from tests.specs import route_spec

pytestmark = pytest.mark.integration
VECSHARD = str(Path(sys.executable).parent / "vecshard")
DIM = 16
SPEC = route_spec(dim=DIM, family="vec", index="vec_r2", num_buckets=6, replicas=2)


class Load:
    """Searches and writes from two threads; records every outcome."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.partials = 0
        self.searches = 0
        self.acked: dict[str, np.ndarray] = {}
        self.progress = threading.Condition()
        self.threads = [threading.Thread(target=self._search), threading.Thread(target=self._write)]

    def acknowledged(self, n: int, timeout: float = 60.0) -> None:
        """Keeps the load on until `n` written keys were acknowledged (a
        quick rollout may end before the writer got that far)."""
        with self.progress:
            assert self.progress.wait_for(lambda: len(self.acked) >= n, timeout), len(self.acked)

    def reached(self, n: int, timeout: float = 30.0) -> None:
        with self.progress:
            assert self.progress.wait_for(
                lambda: self.searches >= n or bool(self.failures), timeout
            )

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def _search(self) -> None:
        rng = np.random.default_rng(1)
        with RetrievalClient(self.address, tenant_id="t", purpose="test", timeout=10) as c:
            while not self.stop.is_set():
                try:
                    res = c.search("r", rng.normal(size=DIM).astype(np.float32), 10)
                    if res.partial or res.completeness != 1.0 or len(res.hits) != 10:
                        self.partials += 1
                    with self.progress:
                        self.searches += 1
                        self.progress.notify_all()
                except Exception as exc:  # noqa: BLE001 - every failure is a finding
                    self.failures.append(repr(exc))

    def _write(self) -> None:
        rng = np.random.default_rng(2)
        with RetrievalClient(self.address, tenant_id="t", purpose="test", timeout=10) as c:
            n = 0
            while not self.stop.is_set():
                batch = [
                    Record(f"w{n + i}", rng.normal(size=DIM).astype(np.float32)) for i in range(20)
                ]
                n += 20
                try:
                    c.upsert("vec", "v1", batch)
                except Exception:  # noqa: BLE001 - a refused write is not acknowledged, that is fine
                    continue
                with self.progress:
                    self.acked.update({r.entity_id: np.asarray(r.vector) for r in batch})
                    self.progress.notify_all()


def seeded(make_cluster: ClusterFactory) -> LocalCluster:
    cluster = make_cluster(num_shards=3)
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(SPEC)
    rng = np.random.default_rng(0)
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="test") as c:
        c.upsert(
            "vec",
            "v1",
            [Record(f"s{i}", rng.normal(size=DIM).astype(np.float32)) for i in range(500)],
        )
    return cluster


def check_acknowledged(cluster: LocalCluster, load: Load) -> None:
    keys = list(load.acked)
    assert len(keys) > 100, "the write load should have been acknowledged many times"
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="test") as c:
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            got = c.batch_get("vec", "v1", chunk)
            assert [lk.status for lk in got] == ["found"] * len(chunk)
            assert all(
                lk.vector is not None and lk.vector.tobytes() == load.acked[k].tobytes()
                for lk, k in zip(got, chunk, strict=True)
            )


def test_rolling_restart_under_load_loses_nothing(make_cluster: ClusterFactory) -> None:
    cluster = seeded(make_cluster)
    log: list[str] = []
    with (
        RegistryClient(cluster.coordinator_target, who="test") as reg,
        Load(cluster.coordinator_target) as load,
    ):
        Rollout(reg, LocalFleet(cluster), say=log.append).run()
        load.acknowledged(120)
    assert [line for line in log if line.endswith("serving")] == [
        f"[{s}] serving" for s in cluster.shard_ids()
    ]
    assert load.failures == [], load.failures[:3]
    assert load.partials == 0
    assert load.searches > 50
    check_acknowledged(cluster, load)


def test_sigterm_on_a_shard_under_load_is_invisible_to_clients(
    make_cluster: ClusterFactory,
) -> None:
    cluster = seeded(make_cluster)
    with Load(cluster.coordinator_target) as load:
        load.reached(20)
        rc = cluster.shards["shard-1"].stop()  # SIGTERM: graceful
        load.reached(load.searches + 30)
    assert rc == 0
    assert load.failures == [], load.failures[:3]
    assert load.partials == 0
    cluster.restart_shard("shard-1")


def test_kubectl_plan_lowers_the_partition_one_ordinal_at_a_time(tmp_path: Path) -> None:
    ran: list[list[str]] = []

    def run(cmd: list[str]) -> str:
        ran.append(cmd)
        return "3" if "jsonpath={.spec.replicas}" in cmd else "old:1"

    fleet = KubectlFleet("reg/vecshard:2", run=run)
    fleet.prepare()
    assert fleet.shard_ids() == ["vecshard-shard-2", "vecshard-shard-1", "vecshard-shard-0"]
    assert ran[-1] == [
        "kubectl",
        "-n",
        "vecshard",
        "set",
        "image",
        "statefulset/vecshard-shard",
        "shard=reg/vecshard:2",
    ]
    fleet.restart("vecshard-shard-1")
    assert '"partition": 1' in ran[-1][-1]
    # --dry-run plans for the StatefulSet's own replica count (it planned for
    # 3 whatever it had), read with the one kubectl call it makes.
    calls = tmp_path / "calls"
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\necho 5\n')
    kubectl.chmod(0o755)
    out = subprocess.run(
        [VECSHARD, "rollout", "shards", "--image", "x:2", "--dry-run", "--kubectl", str(kubectl)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    patches = [line for line in out.stdout.splitlines() if "patch statefulset" in line]
    assert [p.split('"partition": ')[1][0] for p in patches] == ["5", "4", "3", "2", "1", "0"]
    assert calls.read_text() == (
        "-n vecshard get statefulset vecshard-shard -o jsonpath={.spec.replicas}\n"
    )
    kubectl.write_text("#!/bin/sh\necho 'connection refused' >&2\nexit 1\n")
    out = subprocess.run(
        [VECSHARD, "rollout", "shards", "--image", "x:2", "--dry-run", "--kubectl", str(kubectl)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and out.stdout == ""
    assert "dry run failed: " in out.stderr and "connection refused" in out.stderr


def test_in_flight_parsing() -> None:
    text = (
        'vecshard_grpc_in_flight{component="shard",method="Search",service="vecshard.v1.internal.ShardService"} 2.0\n'
        'vecshard_grpc_in_flight{component="shard",method="Upsert",service="vecshard.v1.internal.ShardService"} 1.0\n'
        'vecshard_grpc_in_flight{component="coordinator",method="Search",service="vecshard.v1.RetrievalService"} 9.0\n'
    )
    assert in_flight_from_metrics(text) == 3


def test_failed_requests_are_read_from_coordinator_metrics() -> None:
    from cli.rollout import failed_requests_from_metrics

    text = (
        'vecshard_grpc_requests_total{code="OK",component="coordinator",method="Search",service="s"} 90.0\n'
        'vecshard_grpc_requests_total{code="UNAVAILABLE",component="coordinator",method="Search",service="s"} 3.0\n'
        'vecshard_grpc_requests_total{code="DEADLINE_EXCEEDED",component="coordinator",method="Search",service="s"} 2.0\n'
        'vecshard_grpc_requests_total{code="INVALID_ARGUMENT",component="coordinator",method="Search",service="s"} 7.0\n'
        'vecshard_grpc_requests_total{code="INTERNAL",component="shard",method="Search",service="s"} 5.0\n'
        # A write refused while a replica restarts is expected; failing otherwise it counts.
        'vecshard_grpc_requests_total{code="UNAVAILABLE",component="coordinator",method="Upsert",service="s"} 11.0\n'
        'vecshard_grpc_requests_total{code="UNAVAILABLE",component="coordinator",method="PutFeatures",service="s"} 4.0\n'
        'vecshard_grpc_requests_total{code="INTERNAL",component="coordinator",method="Upsert",service="s"} 1.0\n'
        'vecshard_grpc_requests_total{component="coordinator",code="RESOURCE_EXHAUSTED",method="Delete",service="s"} 2.0\n'
    )
    assert failed_requests_from_metrics(text) == 5.0 + 1.0 + 2.0


def test_an_error_rise_rolls_the_shard_back(make_cluster: ClusterFactory) -> None:
    from cli.rollout import RolloutFailed

    cluster = seeded(make_cluster)
    errors = iter([0.0, 7.0])
    with RegistryClient(cluster.coordinator_target, who="test") as reg:
        rollout = Rollout(
            reg,
            LocalFleet(cluster, ["shard-0"]),
            error_count=lambda: next(errors),
            say=lambda m: None,
        )
        with pytest.raises(RolloutFailed, match="7 requests failed while shard-0 restarted"):
            rollout.run()


def test_a_rolling_restart_under_write_load_passes_the_error_check(
    make_cluster: ClusterFactory,
) -> None:
    """With every replica needed for a write (the default write quorum), writes
    to a restarting shard's buckets are refused UNAVAILABLE until it is back —
    expected, and retried by their callers. The error check counted them, so
    a rollout under any write load rolled its first shard back; it counts the
    failures that mean a broken shard: reads, and writes failing otherwise."""
    cluster = seeded(make_cluster)
    urls = [f"http://127.0.0.1:{(c.ready or {})['metrics']}/metrics" for c in cluster.coordinators]
    readers = [coordinator_errors(u) for u in urls]
    log: list[str] = []
    with (
        RegistryClient(cluster.coordinator_target, who="test") as reg,
        Load(cluster.coordinator_target) as load,
    ):
        load.acknowledged(20)
        Rollout(
            reg, LocalFleet(cluster), error_count=lambda: sum(r() for r in readers), say=log.append
        ).run()
        load.acknowledged(120)
    assert [line for line in log if line.endswith("serving")] == [
        f"[{s}] serving" for s in cluster.shard_ids()
    ]
    assert load.failures == [] and load.partials == 0
    check_acknowledged(cluster, load)


def test_a_shard_that_fails_readiness_is_rolled_back_and_serves_again(
    make_cluster: ClusterFactory,
) -> None:
    """The rollout drained the shard, restarted it, saw it fail readiness and
    restarted the old build — leaving the registry's `draining` intent, so
    the shard never got a query again (found in review)."""
    from cli.rollout import RolloutFailed

    class NeverReady(LocalFleet):
        def wait_ready(self, shard_id: str, timeout: float) -> None:
            raise RuntimeError("CrashLoopBackOff")

    cluster = seeded(make_cluster)
    with RegistryClient(cluster.coordinator_target, who="test") as reg:
        rollout = Rollout(reg, NeverReady(cluster, ["shard-0"]), say=lambda m: None)
        with pytest.raises(RolloutFailed, match="shard-0 failed readiness"):
            rollout.run()
        states = poll(
            lambda: {s.shard_id: s.state for s in reg.status().shards},
            lambda got: got.get("shard-0") == "serving",
            timeout=30,
            interval=0.2,
        )
        assert states.get("shard-0") == "serving", states
