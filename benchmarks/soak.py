"""`vecshard soak`: a chaos soak of a local cluster with an invariant checker
(issue 14, item 8). Not part of CI; a short run is in the test suite.

A cluster of 4 shards (two replicas per bucket, writes acknowledged by both), 2
coordinators and its own etcd takes a mixed workload — concurrent upserts of
overlapping keys with out-of-order versions, deletes, lookups, searches (some
from threads sharing one client, which the SDK coalesces into shared calls) and
route switches, for two tenants holding identical ids and vectors, and feature
rows written out of order and read back (`benchmarks.soak_features`) — while
shards, a coordinator and etcd are SIGKILLed and restarted and shard replies
are delayed. Every answer is checked against a model of the acknowledged
operations (`benchmarks.soak_model`): no acknowledged write lost or
resurrected after a newer delete, no deleted key returned after its delete
was acknowledged, no cross-tenant result, every incomplete answer flagged
partial; the same rules for feature rows. After the faults stop, every key's
record and feature row is read back through both coordinators and every
replica of every bucket must hold the same version.

Prints operation counts, faults injected and violations; writes JSON; exits
1 on any violation.

    vecshard soak --duration 600 --out benchmarks/results/soak.json
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.soak_faults import Chaos
from benchmarks.soak_features import FeatureTraffic, feature_spec
from benchmarks.soak_model import Model, Violation, vector_of
from benchmarks.soak_workload import (
    BUNDLES,
    FAMILY,
    PURPOSE,
    ROUTE,
    Tally,
    Workload,
    WorkloadSettings,
    entity,
)
from cli.local_cluster import LocalCluster
from client.credentials import Credentials
from client.registry_client import RegistryClient
from client.retrieval_client import RetrievalClient
from core.domain import EntityKey, VersionRef
from core.wire import key_to_pb
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1.internal import shard_pb2 as spb
from protos.vecshard.v1.internal import shard_pb2_grpc
from registry.placement import tenant_bucket
from registry.registry import Registry

NUM_BUCKETS = 8
SHARDS = 4
INDEX = VersionRef("soak_ix", "v1")


def registry_spec(settings: WorkloadSettings) -> list[dict[str, Any]]:
    family, version = FAMILY
    index = {"name": "soak_ix", "version": "v1"}
    return [
        *(
            {"kind": "Tenant", "spec": {"tenant_id": t, "allowed_purposes": [PURPOSE]}}
            for t in settings.tenants
        ),
        {
            "kind": "EmbeddingFamily",
            "spec": {"name": family, "entity_type": "item", "dimension": settings.dim,
                     "metric": "l2", "allowed_purposes": [PURPOSE]},
        },
        {"kind": "EmbeddingVersion", "spec": {"name": family, "version": version}},
        {
            "kind": "IndexVersion",
            "replicas": 2,
            "spec": {**index, "embedding": {"name": family, "version": version}, "kind": "hnsw",
                     # every replica acknowledges (the default): with fewer, a read
                     # on the replica a write has not reached yet misses it
                     "num_buckets": NUM_BUCKETS, "write_quorum": 0,
                     "params": {"M": 8, "ef_construction": 64, "ef_search": 64}},
        },
        *(
            {"kind": "Bundle", "spec": {"name": b, "index": index,
                                        "query_embedding": {"name": family, "version": version},
                                        "item_embedding": {"name": family, "version": version}}}
            for b in BUNDLES
        ),
        {"kind": "Route", "spec": {"name": ROUTE, "bundle": BUNDLES[0]}},
        *feature_spec(),
    ]  # fmt: skip


@dataclass
class SoakReport:
    duration_s: float
    ops: dict[str, int]
    faults: dict[str, int]
    violations: dict[str, int]
    examples: list[dict[str, Any]] = field(default_factory=list)
    final_keys_checked: int = 0
    final_feature_rows_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations


def _wait_all_serving(
    target: str, shards: int, credentials: Credentials, timeout: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout
    with RegistryClient(target, timeout=5.0, credentials=credentials) as reg:
        while True:
            try:
                status = reg.status()
                serving = [s for s in status.shards if s.state == "serving"]
                if len(serving) == shards:
                    return
            except Exception:  # noqa: BLE001 - etcd or a coordinator may still be starting
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every shard serves again after {timeout}s")
            time.sleep(0.2)


def _client_at(address: str, credentials: Credentials, tenant: str) -> RetrievalClient:
    """A client of one coordinator (not the cluster's target): the final
    checks read through each."""
    return RetrievalClient(
        address, tenant_id=tenant, purpose=PURPOSE, timeout=30, credentials=credentials
    )


def _final_check(
    cluster: LocalCluster, settings: WorkloadSettings, model: Model, tally: Tally
) -> int:
    """Every key through each coordinator, then every replica of every bucket."""
    now = time.monotonic()
    ids = [entity(n) for n in range(settings.keys_per_tenant)]
    for address in cluster.coordinator_addresses:
        for tenant in settings.tenants:
            with _client_at(address, cluster.credentials(), tenant) as c:
                for i in range(0, len(ids), 100):
                    chunk = ids[i : i + 100]
                    for eid, lk in zip(chunk, c.batch_get(*FAMILY, chunk), strict=True):
                        tally.flag(
                            model.check_lookup(
                                (tenant, eid), now, now, lk.status, lk.source_version,
                                lk.vector, settings.dim,
                            )
                        )  # fmt: skip
                for eid in ids:
                    version = model.stable((tenant, eid), now, now)
                    if version is None:
                        continue
                    res = c.search(ROUTE, vector_of(eid, version, settings.dim), 5)
                    hits = [(h.key.tenant_id, h.key.entity_id) for h in res.hits]
                    tally.flag(
                        model.check_search(tenant, now, now, hits, res.partial, (tenant, eid))
                    )
    _check_replicas(cluster, settings, tally, ids)
    return len(ids) * len(settings.tenants)


def _check_replicas(
    cluster: LocalCluster, settings: WorkloadSettings, tally: Tally, ids: list[str]
) -> None:
    """After recovery, every replica of a bucket holds the same version of
    each of its keys (catch-up worked; nothing is present twice or missing)."""
    ref = spb.IndexRef(name=INDEX.name, version=INDEX.version)
    seen: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
    for sid, child in cluster.shards.items():
        assert child.ready is not None
        with cluster.shard_channel(str(child.ready["grpc"]), purpose=PURPOSE) as ch:
            stub = shard_pb2_grpc.ShardServiceStub(ch)
            for tenant in settings.tenants:
                keys = [key_to_pb(EntityKey(tenant, "item", eid)) for eid in ids]
                resp = stub.BatchGet(spb.BatchGetRequest(index=ref, keys=keys), timeout=30)
                for eid, lk in zip(ids, resp.records, strict=True):
                    seen.setdefault((tenant, eid), {})[sid] = (
                        int(lk.status),
                        int(lk.record.source_version) if lk.status == cpb.FOUND else 0,
                    )
    store = cluster.etcd_store()
    try:
        placement = Registry(store, cluster.etcd_prefix).snapshot().placement(INDEX)
    finally:
        store.close()
    for (tenant, eid), per_shard in seen.items():
        b = tenant_bucket(tenant, eid, NUM_BUCKETS, ())
        answers = {per_shard[s] for s in placement.buckets[b] if s in per_shard}
        # A replica answers "missing" for a key of a bucket it does not hold.
        if len(answers) > 1:
            tally.flag(
                [Violation("replica_divergence", (tenant, eid), f"replicas say {sorted(answers)}")]
            )


def run_soak(
    duration: float,
    seed: int = 1,
    data_dir: Path | None = None,
    settings: WorkloadSettings | None = None,
    chaos: bool = True,
    log: Any = print,
) -> SoakReport:
    settings = settings or WorkloadSettings()
    with tempfile.TemporaryDirectory(prefix="vecshard-soak-") as tmp:
        cluster = LocalCluster(
            data_dir or Path(tmp),
            num_shards=SHARDS,
            num_coordinators=2,
            lease_ttl=2,
            extra_env={
                "VECSHARD__SHARD__SEAL_ROWS": "300",
                "VECSHARD__SHARD__MIN_INDEX_ROWS": "100",
                "VECSHARD__SHARD__SEAL_AGE_SECONDS": "5",
            },
        )
        cluster.start()
        try:
            with RegistryClient(
                cluster.coordinator_target, credentials=cluster.credentials()
            ) as reg:
                reg.apply(registry_spec(settings), why="soak")
            model, tally = Model(), Tally()
            workload = Workload(
                cluster.coordinator_target, settings, model, tally, seed, cluster.credentials()
            )
            features = FeatureTraffic(workload.client, settings, tally, seed)
            workload.preload()
            features.preload()
            log(
                f"soak: preloaded {settings.keys_per_tenant} keys x {len(settings.tenants)} tenants"
                " (embeddings and feature rows)"
            )
            faults = Chaos(cluster, seed, log=log)
            t0 = time.monotonic()
            workload.start()
            features.start()
            if chaos:
                faults.start()
            while time.monotonic() - t0 < duration:
                time.sleep(min(10.0, max(0.0, duration - (time.monotonic() - t0))))
                log(
                    f"soak: {time.monotonic() - t0:.0f}s {dict(tally.ops)} faults {dict(faults.injected)}"
                )
            faults.join()
            workload.join()
            features.join()
            elapsed = time.monotonic() - t0
            for child in [*cluster.shards.values(), *cluster.coordinators]:
                if not child.alive():
                    child.start()
                    child.wait_ready(60)
            _wait_all_serving(cluster.coordinator_target, SHARDS, cluster.credentials())
            checked = _final_check(cluster, settings, model, tally)
            feature_rows = features.final_check(
                [
                    functools.partial(_client_at, address, cluster.credentials())
                    for address in cluster.coordinator_addresses
                ]
            )
        finally:
            cluster.stop()
    by_rule = Counter(v.rule for v in tally.violations)
    return SoakReport(
        duration_s=round(elapsed, 1),
        ops=dict(sorted(tally.ops.items())),
        faults=dict(sorted(faults.injected.items())),
        violations=dict(by_rule),
        examples=[
            {"rule": v.rule, "key": list(v.key), "detail": v.detail} for v in tally.violations[:20]
        ],
        final_keys_checked=checked,
        final_feature_rows_checked=feature_rows,
    )


def repeated(
    runs: int,
    seed: int,
    data_dir: Path | None,
    soak: Callable[[int, Path], SoakReport],
    log: Any = print,
) -> list[tuple[int, SoakReport, Path | None]]:
    """`runs` soaks with consecutive seeds, each in its own data directory
    (under `data_dir`, or a temporary one): a passing run's is removed, a
    failing run's kept — its processes' logs are what explains a violation
    (the soak's replica divergences of stop 32 were traced through them).
    Returns (seed, report, the directory kept or None) per run."""
    out: list[tuple[int, SoakReport, Path | None]] = []
    for n in range(runs):
        s = seed + n
        base = Path(tempfile.mkdtemp(prefix=f"vecshard-soak-{s}-", dir=data_dir))
        report = soak(s, base)
        kept = None if report.ok else base
        if kept is None:
            shutil.rmtree(base, ignore_errors=True)
        verdict = "PASSED" if report.ok else f"FAILED (logs kept in {base}/logs)"
        log(
            f"soak run {n + 1}/{runs}, seed {s}: {verdict}: {sum(report.ops.values())} "
            f"operations, {sum(report.faults.values())} faults, "
            f"{sum(report.violations.values())} violations"
        )
        out.append((s, report, kept))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="vecshard soak",
        description="Chaos soak of a local cluster (4 shards, 2 replicas per index bucket, "
        "2 coordinators, its own etcd): embedding writes, lookups, searches, route switches "
        "and feature rows, every answer checked by an invariant checker; exits 1 on any "
        "violation.",
    )
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load and faults")
    p.add_argument("--seed", type=int, default=1, help="random seed (workload and faults)")
    p.add_argument(
        "--runs",
        type=int,
        default=1,
        help="soaks in a row with seeds --seed, --seed+1, ...; a failing run's data and logs "
        "are kept (under --data-dir, else a temp dir), a passing run's removed. Many short "
        "runs (--duration 40 --runs 20) find timing-dependent faults a long one can miss",
    )
    p.add_argument(
        "--keys", type=int, default=150, help="keys per tenant (overlap grows as it shrinks)"
    )
    p.add_argument(
        "--shared-readers",
        type=int,
        default=WorkloadSettings.shared_readers,
        help="reader threads per tenant sharing one client, whose concurrent reads the SDK "
        f"coalesces into shared calls (default {WorkloadSettings.shared_readers}; 0: none)",
    )
    p.add_argument("--no-chaos", action="store_true", help="load only, no faults (a baseline)")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="keep the cluster's data here (default: a temp dir); with --runs, each run's "
        "directory goes under it",
    )
    p.add_argument("--out", type=Path, help="write the report as JSON here (a list with --runs)")
    args = p.parse_args(argv)
    if args.shared_readers < 0:
        p.error("--shared-readers must be 0 or more")
    if args.runs < 1:
        p.error("--runs must be 1 or more")
    settings = WorkloadSettings(keys_per_tenant=args.keys, shared_readers=args.shared_readers)
    if args.runs > 1:
        if args.data_dir:
            args.data_dir.mkdir(parents=True, exist_ok=True)
        results = repeated(
            args.runs,
            args.seed,
            args.data_dir,
            lambda seed, d: run_soak(args.duration, seed, d, settings, not args.no_chaos),
        )
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(
                json.dumps(
                    [
                        {"seed": s, "kept": str(k) if k else None, **asdict(r)}
                        for s, r, k in results
                    ],
                    indent=2,
                )
            )
        failed = [s for s, r, _ in results if not r.ok]
        print(
            f"soak {'PASSED' if not failed else 'FAILED'}: {args.runs} runs, "
            f"{len(failed)} failed" + (f" (seeds {failed})" if failed else "")
        )
        return 1 if failed else 0
    report = run_soak(args.duration, args.seed, args.data_dir, settings, not args.no_chaos)
    text = json.dumps(asdict(report), indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(
        f"soak {'PASSED' if report.ok else 'FAILED'}: {sum(report.ops.values())} operations, "
        f"{sum(report.faults.values())} faults, {sum(report.violations.values())} violations"
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
