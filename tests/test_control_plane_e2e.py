"""The control plane through real processes: CLI changes reach a running
coordinator in under a second, an etcd outage costs no search, an expired
lease stops routing, draining shards get no new queries, canary and shadow."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.errors import Conflict, FailedPrecondition
from tests.conftest import ClusterFactory, new_prefix

pytestmark = pytest.mark.integration
VECSHARD = str(Path(sys.executable).parent / "vecshard")
EXAMPLES = sorted(
    str(p) for p in (Path(__file__).resolve().parent.parent / "deploy" / "examples").glob("*.yaml")
)
PURPOSE = "recommendation"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VECSHARD, *args], capture_output=True, text=True, timeout=60)


def load_items(address: str, n: int = 600) -> None:
    rng = np.random.default_rng(5)
    records = [Record(f"item-{i}", rng.normal(size=64).astype(np.float32)) for i in range(n)]
    with RetrievalClient(address, tenant_id="acme", purpose=PURPOSE) as c:
        for version in ("2026-10", "2026-11"):
            assert c.upsert("item_tower", version, records)[0] == n


def metric_value(metrics_port: int, name: str, labels: str = "") -> float:
    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        .read()
        .decode()
    )
    pattern = (
        re.escape(name)
        + (r"\{" + labels + r"[^}]*\}" if labels else r"(\{[^}]*\})?")
        + r" ([0-9.eE+-]+)"
    )
    m = re.search(pattern, text)
    assert m and m.lastindex, f"{name} not exported"
    return float(m.group(m.lastindex))


@pytest.fixture(scope="module")
def cluster(make_module_cluster: ClusterFactory) -> LocalCluster:
    c = make_module_cluster(num_shards=3, lease_ttl=2)
    out = cli(
        "registry",
        "apply",
        "--coordinator",
        c.coordinator_target,
        "--why",
        "bootstrap",
        *sum((["-f", f] for f in EXAMPLES), []),
    )
    assert out.returncode == 0, out.stderr
    assert "Route home_feed created" in out.stdout
    load_items(c.coordinator_target)
    return c


def test_cli_change_reaches_another_coordinator_within_a_second(cluster: LocalCluster) -> None:
    other = cluster.coordinator_addresses[1]
    with RetrievalClient(other, tenant_id="acme", purpose=PURPOSE) as watcher:
        assert watcher.describe_route("home_feed").bundle == "home_2026_10"
        out = cli(
            "registry",
            "switch",
            "home_feed",
            "home_2026_11",
            "--coordinator",
            cluster.coordinator_addresses[0],
            "--why",
            "promote",
        )
        assert out.returncode == 0, out.stderr
        assert re.search(r"\(rev [1-9][0-9]*\)", out.stdout), out.stdout  # to chain on
        t0 = time.monotonic()  # the CLI has returned: the change is committed in etcd
        while watcher.describe_route("home_feed", refresh=True).bundle != "home_2026_11":
            assert time.monotonic() - t0 < 5, "change never arrived"
        elapsed = time.monotonic() - t0
    history = cli("registry", "history", "home_feed", "--coordinator", other)
    assert "home_2026_10 → home_2026_11  promote" in history.stdout
    rollback = cli("registry", "rollback", "home_feed", "--coordinator", other, "--why", "undo")
    assert "rolled back to bundle home_2026_10" in rollback.stdout
    assert elapsed < 1.0, f"propagation took {elapsed:.3f}s"


def test_a_switch_and_a_rollback_answer_the_revision_to_chain_on(cluster: LocalCluster) -> None:
    """A switch's answer carries the route's new mod_revision, so an operator
    can chain the next compare-and-swap on it (it answered 0)."""
    with RegistryClient(cluster.coordinator_target) as reg:
        start = reg.get("Route", "home_feed")
        switched = reg.switch_route(
            "home_feed", "home_2026_11", expected_revision=start.mod_revision, why="chain"
        )
        assert switched.mod_revision == reg.get("Route", "home_feed").mod_revision
        assert switched.mod_revision > start.mod_revision
        back = reg.rollback("home_feed", why="chain back")
        assert back.mod_revision == reg.get("Route", "home_feed").mod_revision
        assert back.mod_revision > switched.mod_revision
        with pytest.raises(Conflict):  # the revision it chains on is checked
            reg.switch_route("home_feed", "home_2026_11", expected_revision=switched.mod_revision)
        assert reg.get("Route", "home_feed").spec["bundle"] == start.spec["bundle"]


def test_incompatible_switch_fails_and_leaves_the_route(cluster: LocalCluster) -> None:
    with RegistryClient(cluster.coordinator_target) as reg:
        before = reg.get("Route", "home_feed")
        with pytest.raises(FailedPrecondition, match="dimension differs"):
            reg.switch_route("home_feed", "home_xl_broken", why="oops")
        assert reg.get("Route", "home_feed") == before
    out = cli(
        "registry",
        "check-compat",
        "user_tower@2026-11",
        "items_xl_flat@2026-11",
        "--coordinator",
        cluster.coordinator_target,
    )
    assert out.returncode == 3 and "incompatible: dimension differs" in out.stdout


def test_canary_is_sticky_per_subject_and_shadow_is_measured(cluster: LocalCluster) -> None:
    q = np.ones(64, np.float32)
    seen: dict[str, str] = {}
    for i in range(200):
        subject = f"user-{i}"
        with RetrievalClient(
            cluster.coordinator_target, tenant_id="acme", purpose=PURPOSE, subject_id=subject
        ) as c:
            bundles = {c.search("home_feed", q, 5).bundle for _ in range(2)}
        assert len(bundles) == 1, f"{subject} saw {bundles}"
        seen[subject] = bundles.pop()
    share = Counter(seen.values())["home_2026_11"] / len(seen)
    assert 0.03 < share < 0.2, share  # canary_share is 0.1
    assert cluster.coordinator is not None
    ready = cluster.coordinator.ready
    assert ready is not None
    port = int(ready["metrics"])
    deadline = time.monotonic() + 5
    while metric_value(port, "vecshard_shadow_topk_jaccard_count", 'route="home_feed"') < 150:
        assert time.monotonic() < deadline, "shadow searches were not measured"
    assert (
        metric_value(port, "vecshard_shadow_latency_delta_seconds_count", 'route="home_feed"')
        >= 150
    )


def test_the_coordinator_collects_garbage_rarely(cluster: LocalCluster) -> None:
    """Its young-generation threshold (50,000, not CPython's 700) reaches the
    process: at CPython's default these searches collect a dozen times or more
    (a SearchBatch several times, re-scanning every request in flight)."""
    assert cluster.coordinator is not None and cluster.coordinator.ready is not None
    port = int(cluster.coordinator.ready["metrics"])
    collections = "python_gc_collections_total"
    before = metric_value(port, collections, 'generation="0"')
    queries = np.random.default_rng(5).normal(size=(16, 64)).astype(np.float32)
    with RetrievalClient(cluster.coordinator_target, tenant_id="acme", purpose=PURPOSE) as c:
        for _ in range(20):
            c.search_batch("home_feed", queries, 10)
        for q in queries:
            c.search("home_feed", q, 10)
    after = metric_value(port, collections, 'generation="0"')
    assert after - before <= 2, f"{after - before} young-generation collections"


def test_draining_shard_gets_no_new_queries(cluster: LocalCluster) -> None:
    spec = """
kind: IndexVersion
replicas: 2
spec: {name: items_r2, version: "1", embedding: {name: item_tower, version: "2026-11"}, kind: flat, num_buckets: 6}
---
kind: Bundle
spec: {name: r2, query_embedding: {name: user_tower, version: "2026-11"}, item_embedding: {name: item_tower, version: "2026-11"}, index: {name: items_r2, version: "1"}}
---
kind: Route
spec: {name: r2_route, bundle: r2}
"""
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(spec)
    load_items(cluster.coordinator_target)  # writes go to both replicas of each bucket
    q = np.ones(64, np.float32)
    with RetrievalClient(cluster.coordinator_target, tenant_id="acme", purpose=PURPOSE) as c:
        full = [(h.key, h.score) for h in c.search("r2_route", q, 50).hits]
        assert "shard-0" in {h.shard_id for h in c.search("r2_route", q, 50).hits}
        assert (
            cli(
                "registry", "drain", "shard-0", "--coordinator", cluster.coordinator_target
            ).returncode
            == 0
        )
        deadline = time.monotonic() + 5
        while "shard-0" in {h.shard_id for h in c.search("r2_route", q, 50).hits}:
            assert time.monotonic() < deadline, "draining shard still receives queries"
        drained = c.search("r2_route", q, 50)
        assert [
            (h.key, h.score) for h in drained.hits
        ] == full  # same answer from the other replicas
        assert (
            cli(
                "registry", "undrain", "shard-0", "--coordinator", cluster.coordinator_target
            ).returncode
            == 0
        )


def test_expired_lease_stops_routing_within_the_ttl(cluster: LocalCluster) -> None:
    with RegistryClient(cluster.coordinator_target) as reg:
        assert "shard-2" in {s.shard_id for s in reg.status().shards}
        cluster.kill_shard("shard-2")
        t0 = time.monotonic()
        while "shard-2" in {s.shard_id for s in reg.status().shards}:
            assert time.monotonic() - t0 < 10, "lease never expired"
        elapsed = time.monotonic() - t0
    assert elapsed <= cluster.lease_ttl + 1.0, (
        f"took {elapsed:.2f}s with a {cluster.lease_ttl}s lease"
    )
    # Its client (a channel, a batcher) is retired with it, not held for good.
    assert cluster.coordinator is not None and cluster.coordinator.ready is not None
    port = int(cluster.coordinator.ready["metrics"])
    clients = "vecshard_coordinator_shard_clients"
    while metric_value(port, clients) > len(cluster.shard_ids()) - 1:
        assert time.monotonic() - t0 < 10, f"{metric_value(port, clients)} shard clients held"
    cluster.restart_shard("shard-2")


def test_etcd_outage_costs_no_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = LocalCluster(tmp_path / "c", num_shards=2, etcd_prefix=new_prefix())
    cluster.start()
    # Its own etcd, so its own local CA and admin token: what the SDK reads.
    for name, value in cluster.client_env().items():
        monkeypatch.setenv(name, value)
    try:
        with RegistryClient(cluster.coordinator_target) as reg:
            reg.apply("\n---\n".join(Path(f).read_text() for f in EXAMPLES))
        load_items(cluster.coordinator_target, n=300)
        failures: list[str] = []
        done = threading.Event()
        searched = [0]

        def load() -> None:
            with RetrievalClient(
                cluster.coordinator_target, tenant_id="acme", purpose=PURPOSE, subject_id="u1"
            ) as c:
                q = np.ones(64, np.float32)
                while not done.is_set():
                    try:
                        assert len(c.search("home_feed", q, 10).hits) == 10
                        searched[0] += 1
                    except Exception as exc:  # noqa: BLE001 - counted, reported below
                        failures.append(repr(exc))

        thread = threading.Thread(target=load)
        thread.start()
        assert cluster.coordinator is not None
        ready = cluster.coordinator.ready
        assert ready is not None
        port = int(ready["metrics"])
        assert cluster.etcd is not None
        cluster.etcd.kill()
        t0 = time.monotonic()
        while metric_value(port, "vecshard_registry_staleness_seconds") < 2.0:
            assert time.monotonic() - t0 < 15, "staleness not exported while etcd is down"
        during = searched[0]
        cluster.etcd.restart()
        with RegistryClient(cluster.coordinator_target) as reg:
            deadline = time.monotonic() + 20
            while True:  # the coordinator catches up without a restart
                try:
                    reg.switch_route("home_feed", "home_2026_11", why="after outage")
                    break
                except Exception:  # noqa: BLE001 - etcd may still be electing itself
                    assert time.monotonic() < deadline
            with RetrievalClient(
                cluster.coordinator_target, tenant_id="acme", purpose=PURPOSE
            ) as c:
                while c.describe_route("home_feed", refresh=True).bundle != "home_2026_11":
                    assert time.monotonic() < deadline, "coordinator did not catch up"
        while metric_value(port, "vecshard_registry_staleness_seconds") != 0.0:
            assert time.monotonic() < deadline
        done.set()
        thread.join()
        assert failures == [], failures[:3]
        assert during > 20 and searched[0] > during, "searches must keep flowing during the outage"
    finally:
        cluster.stop()


def test_registry_service_errors_are_clear(cluster: LocalCluster) -> None:
    with RegistryClient(cluster.coordinator_target) as reg:
        with pytest.raises(Exception, match="unknown kind 'Widget'"):
            reg.list("Widget")
        with pytest.raises(Exception, match="not valid YAML"):
            reg.apply("kind: [unclosed")
