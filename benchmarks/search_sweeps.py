"""The two sides of the search benchmark: each index kind's sweep measured in process (the
library alone) and through local clusters of real shard and coordinator processes."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks import retrieval_api
from benchmarks.bench_cluster import PURPOSE, TENANT, BenchCluster, IndexPlan, SharedEtcd
from benchmarks.blas_threads import set_blas_threads
from benchmarks.closed_loop import ClosedLoopResult, Timing, grpc_closed_loop, threaded_closed_loop
from benchmarks.datasets import Dataset
from benchmarks.ground_truth import without_self_matches
from benchmarks.index_kinds import KindSweep
from benchmarks.inprocess_index import build
from benchmarks.process_cpu import CpuMeter, per_query_ms
from benchmarks.request_mix import access_context, search_requests
from benchmarks.search_points import Point, Say, describe, recall_of, recall_of_others
from protos.vecshard.v1 import retrieval_pb2 as pb

# --------------------------------------------------------------------------------------------
# In-process
# --------------------------------------------------------------------------------------------


def measure_inprocess(
    dataset: Dataset, sweeps: Sequence[KindSweep], args: argparse.Namespace, say: Say
) -> tuple[list[Point], list[dict[str, str]]]:
    # One query runs on one thread, as in a shard: N caller threads use N cores.
    set_blas_threads(1)
    gt = dataset.ground_truth
    assert gt is not None
    others = without_self_matches(dataset.base, dataset.queries, gt)
    points: list[Point] = []
    errors: list[dict[str, str]] = []
    for sweep in sweeps:
        try:
            index, seconds = build(
                sweep.kind, dataset.base, dataset.metric, sweep.params, args.threads
            )
        except Exception as exc:  # noqa: BLE001 - one kind failing must not end the run
            errors.append({"system": "in-process", "kind": sweep.kind, "error": repr(exc)})
            say(f"in-process {sweep.kind}: build failed: {exc!r}")
            continue
        say(f"in-process {sweep.kind}: built in {seconds:.1f} s")
        for value, _ in sweep.points():
            index.set_search_param(value)

            def search(i: int, index: Any = index) -> NDArray[np.int64]:
                ids: NDArray[np.int64] = index.search(dataset.queries[i], args.k)
                return ids

            single = threaded_closed_loop(
                search,
                dataset.n_queries,
                args.k,
                1,
                Timing(args.latency_duration, args.warmup, cover_all=False),
            )
            meter = CpuMeter({}).start()
            loaded = threaded_closed_loop(
                search, dataset.n_queries, args.k, args.threads, Timing(args.duration, 0.2)
            )
            cpu = per_query_ms(meter.stop(), loaded.answered_total)
            point = Point(
                "in-process",
                sweep.kind,
                None,
                sweep.sweep_param,
                value,
                recall_of(loaded, gt, args.k, say),
                single,
                loaded,
                cpu_loaded=cpu,
                recall_excluding_self=recall_of_others(loaded, others, args.k),
            )
            points.append(point)
            say(describe(point))
        del index
    return points, errors


# --------------------------------------------------------------------------------------------
# Cluster
# --------------------------------------------------------------------------------------------

# Each shard seals segments of at least ~1,000 rows into an index (smaller ones stay exact).
PROBE_ROWS_PER_SHARD = 2000


def probe_params(sweep: KindSweep) -> dict[str, Any]:
    """The kind's parameters shrunk to train on a small probe: IVF-PQ needs ~39 vectors per
    list and per code (2**nbits), so the probe uses 16 lists and 4-bit codes."""
    params = dict(sweep.points()[0][1])
    if "nlist" in params:
        params["nlist"] = min(int(params["nlist"]), 16)
        params["nbits"] = min(int(params.get("nbits", 8)), 4)
        params["nprobe"] = min(int(params.get("nprobe", 1)), params["nlist"])
    return params


# Below this share of rows in segments of the measured kind, the figure would describe a mix.
MIN_SERVED_SHARE = 0.95


def served_share(rows_by_kind: Mapping[str, int], kind: str) -> float:
    total = sum(rows_by_kind.values())
    return rows_by_kind.get(kind, 0) / total if total else 0.0


def plans_for(
    sweep: KindSweep, per_request: frozenset[str]
) -> list[tuple[IndexPlan, int | None, dict[str, int]]]:
    """(index version, sweep value, per-request search fields) for every point.

    Search parameters belong to the index version (issue 4), so each value gets its own
    index version over the same embedding version — one upsert fills them all. If a later
    SearchRequest carries the parameter, one index version serves the whole sweep.
    """
    if sweep.sweep_param is not None and sweep.sweep_param in per_request:
        plan = IndexPlan(sweep.kind, sweep.kind, sweep.params)
        return [(plan, v, {sweep.sweep_param: v}) for v, _ in sweep.points() if v is not None]
    return [
        (IndexPlan(sweep.index_name(v), sweep.kind, params), v, {}) for v, params in sweep.points()
    ]


def _requests(
    plan: IndexPlan, extra: Mapping[str, int], queries: NDArray[np.float32], k: int
) -> tuple[bytes, ...]:
    access = access_context(TENANT, PURPOSE)
    plain = search_requests(plan.route, access, queries, k)
    if not extra:
        return plain
    out = []
    for raw in plain:
        request = pb.SearchRequest.FromString(raw)
        for name, value in extra.items():
            setattr(request, name, value)
        out.append(request.SerializeToString())
    return tuple(out)


def _metered(
    cluster: BenchCluster, run: Coroutine[Any, Any, ClosedLoopResult]
) -> tuple[ClosedLoopResult, dict[str, float | None]]:
    """Runs a closed loop and the CPU milliseconds per query it cost each process."""
    meter = CpuMeter(cluster.server_pids).start()
    result = asyncio.run(run)
    return result, per_query_ms(meter.stop(), result.answered_total)


def measure_cluster(
    dataset: Dataset,
    sweeps: Sequence[KindSweep],
    shards: int,
    args: argparse.Namespace,
    etcd: SharedEtcd,
    data_root: Path,
    say: Say,
) -> tuple[list[Point], dict[str, Any]]:
    gt = dataset.ground_truth
    assert gt is not None
    others = without_self_matches(dataset.base, dataset.queries, gt)
    # A cluster smaller than --replicas keeps every bucket on every shard.
    replicas = min(getattr(args, "replicas", 1), shards)
    info: dict[str, Any] = {"shards": shards, "replicas": replicas, "support": {}}
    points: list[Point] = []
    env = dict(item.split("=", 1) for item in args.cluster_env)
    with BenchCluster.local(
        data_root / f"shards-{shards}",
        shards,
        etcd=etcd,
        env=env,
        dim=dataset.dim,
        metric=dataset.metric,
        max_k=max(100, args.k),
        replicas=replicas,
        placement=getattr(args, "placement", "hash"),
    ) as cluster:
        per_request = retrieval_api.search_params_on_request()
        planned: list[tuple[KindSweep, IndexPlan, int | None, dict[str, int]]] = []
        for sweep in sweeps:
            sample = dataset.base[: PROBE_ROWS_PER_SHARD * shards]
            support = cluster.probe_kind(sweep.kind, probe_params(sweep), sample)
            info["support"][sweep.kind] = {
                "supported": support.supported,
                "reason": support.reason,
                "served_as": list(support.served_as),
            }
            if not support.supported:
                say(f"cluster {shards} shard(s): {sweep.kind} not measured: {support.reason}")
                continue
            for plan, value, extra in plans_for(sweep, per_request):
                if plan.name not in {p.name for _, p, _, _ in planned}:
                    cluster.add_index(plan, sample=dataset.base)
                planned.append((sweep, plan, value, extra))
        if not planned:
            return points, info
        say(
            f"cluster {shards} shard(s): ingesting {dataset.n_base} rows into {len({p.name for _, p, _, _ in planned})} index version(s)"
        )
        info["ingest_seconds"] = cluster.ingest(dataset.base)
        info["ingest_rows_per_second"] = dataset.n_base / info["ingest_seconds"]
        say(
            f"cluster {shards} shard(s): ingested in {info['ingest_seconds']:.1f} s "
            f"({info['ingest_rows_per_second']:.0f} rows/s)"
        )
        info["builds"] = {}
        for name, kind in dict((p.name, p.kind) for _, p, _, _ in planned).items():
            build = cluster.build_index(name, args.settle_timeout)
            build["served_share"] = served_share(build["rows_by_segment_kind"], kind)
            info["builds"][name] = build
            say(
                f"cluster {shards} shard(s): {name} built in {build['seconds']:.1f} s "
                f"(flushed={build['flushed']}); rows by segment kind {build['rows_by_segment_kind']}"
            )
        info["describe"] = cluster.describe_shards()
        info["skipped"] = {}
        for sweep, plan, value, extra in planned:
            build = info["builds"][plan.name]
            if build["served_share"] < MIN_SERVED_SHARE:
                reason = (
                    f"only {build['served_share']:.1%} of the rows are in {sweep.kind} segments "
                    f"after the build {build['rows_by_segment_kind']} (too few rows on a shard "
                    "to train or index them?): its figures would describe a mix of kinds"
                )
                info["skipped"][plan.name] = reason
                say(f"cluster {shards} shard(s): {plan.name} not measured: {reason}")
                continue
            requests = _requests(plan, extra, dataset.queries, args.k)
            single, cpu_single = _metered(
                cluster,
                grpc_closed_loop(
                    cluster.address,
                    requests,
                    args.k,
                    1,
                    Timing(args.latency_duration, args.warmup, cover_all=False),
                    credentials=cluster.credentials(),
                ),
            )
            loaded, cpu_loaded = _metered(
                cluster,
                grpc_closed_loop(
                    cluster.address,
                    requests,
                    args.k,
                    args.concurrency,
                    Timing(args.duration, 0.5),
                    credentials=cluster.credentials(),
                ),
            )
            point = Point(
                "cluster",
                sweep.kind,
                shards,
                sweep.sweep_param,
                value,
                recall_of(loaded, gt, args.k, say),
                single,
                loaded,
                cpu_single=cpu_single,
                cpu_loaded=cpu_loaded,
                recall_excluding_self=recall_of_others(loaded, others, args.k),
            )
            points.append(point)
            say(describe(point))
            if args.search_batch > 1:
                # Same index, same queries, same answers: recall is the single-call point's,
                # so this run only needs its measuring time.
                batched, cpu_batched = _metered(
                    cluster,
                    grpc_closed_loop(
                        cluster.address,
                        requests,
                        args.k,
                        args.concurrency,
                        Timing(args.duration, 0.5, cover_all=False),
                        batch=args.search_batch,
                        credentials=cluster.credentials(),
                        packed_hits=not args.search_batch_messages,
                    ),
                )
                point = replace(
                    point, loaded=batched, batch=args.search_batch, cpu_loaded=cpu_batched
                )
                points.append(point)
                say(describe(point))
    return points, info
