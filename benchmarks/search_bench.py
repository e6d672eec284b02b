"""``vecshard bench search``: recall@10 against QPS and latency, in-process and through a cluster.

For each index kind (flat, hnsw, ivfpq) and each value of its search parameter (ef_search,
nprobe), it measures the library alone in this process (numpy / hnswlib / faiss, one query
per call, on ``--threads`` threads) and the same data served by a local vecshard cluster
(real etcd, shard and coordinator processes) with 1, 2 and 4 shards, driven by grpc.aio
with ``--concurrency`` requests in flight. Each point reports recall@10 against exact
ground truth, QPS, and p50/p95/p99 latency both unloaded (one request at a time) and at the
fixed concurrency; then cluster ÷ in-process QPS at equal recall. Output: JSON and a PNG
(recall on x, QPS on a log y axis, one line per configuration).

Kinds the shards of this build do not serve (HNSW and IVF-PQ arrive with issue 4) are
probed first and reported as unsupported, with the reason, while the rest runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks import plots, retrieval_api
from benchmarks.bench_cluster import PURPOSE, TENANT, BenchCluster, IndexPlan, shared_etcd
from benchmarks.blas_threads import set_blas_threads
from benchmarks.closed_loop import ClosedLoopResult, Timing, grpc_closed_loop, threaded_closed_loop
from benchmarks.datasets import (
    METRICS,
    REAL_DATASETS,
    Dataset,
    gaussian_mixture,
    load_file,
    load_hdf5,
    load_real,
    recall_at_k,
    with_ground_truth,
)
from benchmarks.index_kinds import KINDS, KindSweep, configure, default_sweeps
from benchmarks.inprocess_index import build
from benchmarks.process_cpu import CpuMeter, per_query_ms
from benchmarks.recall_curves import CurvePoint, qps_at_recall, ratios_at_equal_recall
from benchmarks.request_mix import access_context, search_requests
from benchmarks.run_record import RESULTS_DIR, machine, write_json
from protos.vecshard.v1 import retrieval_pb2 as pb

TARGET_RECALL = 0.95
Say = Callable[[str], None]


def say_stderr(text: str) -> None:
    print(f"[bench search] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_dataset(args: argparse.Namespace) -> Dataset:
    """The data set the options name, with exact ground truth of at least k columns."""
    if args.dataset == "gaussian":
        clusters = args.clusters or max(8, args.n // 1000)
        dataset = gaussian_mixture(
            args.n, args.dim, clusters, args.queries, args.seed, metric=args.metric
        )
    elif args.dataset in REAL_DATASETS:
        dataset = load_real(args.dataset)
    elif args.dataset == "files":
        if not (args.base and args.query):
            raise SystemExit("--dataset files needs --base FILE and --query FILE (.fvecs/.bvecs)")
        dataset = load_file(args.base, args.query, args.groundtruth, args.metric)
    elif args.dataset == "hdf5":
        if not args.hdf5:
            raise SystemExit("--dataset hdf5 needs --hdf5 FILE (ann-benchmarks layout)")
        dataset = load_hdf5(args.hdf5)
    else:
        raise SystemExit(
            f"--dataset {args.dataset!r}: expected gaussian, {', '.join(REAL_DATASETS)}, "
            "files or hdf5"
        )
    if args.dataset != "gaussian" and args.queries < dataset.n_queries:
        gt = None if dataset.ground_truth is None else dataset.ground_truth[: args.queries]
        dataset = replace(dataset, queries=dataset.queries[: args.queries], ground_truth=gt)
    if dataset.ground_truth is None or dataset.ground_truth.shape[1] < args.k:
        dataset = with_ground_truth(dataset, args.k)
    return dataset


def dataset_record(dataset: Dataset, k: int) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "n": dataset.n_base,
        "dim": dataset.dim,
        "queries": dataset.n_queries,
        "metric": dataset.metric,
        "k": k,
    }


# --------------------------------------------------------------------------------------------
# One measured point
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    system: str  # "in-process" | "cluster"
    kind: str
    shards: int | None
    param: str | None
    value: int | None
    recall: float
    single: ClosedLoopResult  # one request at a time: unloaded latency
    loaded: ClosedLoopResult  # at the fixed concurrency / thread count: QPS
    batch: int = 1  # queries per call under load (SearchBatch when > 1)
    # CPU milliseconds per query by process (client, coordinator, shard-N), where measured.
    cpu_single: Mapping[str, float | None] | None = None
    cpu_loaded: Mapping[str, float | None] | None = None

    @property
    def label(self) -> str:
        where = "in-process" if self.shards is None else f"cluster {self.shards} shard(s)"
        return f"{where} {self.kind}" + (f" SearchBatch×{self.batch}" if self.batch > 1 else "")

    @property
    def setting(self) -> str:
        return "" if self.param is None else f"{self.param}={self.value}"

    def curve_point(self) -> CurvePoint:
        return CurvePoint(self.recall, self.loaded.qps, self.setting)

    def to_dict(self) -> dict[str, Any]:
        single, loaded = self.single.to_dict(), self.loaded.to_dict()
        return {
            "system": self.system,
            "kind": self.kind,
            "shards": self.shards,
            "param": self.param,
            "value": self.value,
            "batch": self.batch,
            "recall_at_k": self.recall,
            "qps": loaded["qps"],
            "p50_ms": loaded["latency"].get("p50_ms"),
            "p95_ms": loaded["latency"].get("p95_ms"),
            "p99_ms": loaded["latency"].get("p99_ms"),
            "single_p50_ms": single["latency"].get("p50_ms"),
            "single_p95_ms": single["latency"].get("p95_ms"),
            "single_p99_ms": single["latency"].get("p99_ms"),
            "single": single,
            "loaded": loaded,
            "cpu_ms_per_query_single": self.cpu_single,
            "cpu_ms_per_query_loaded": self.cpu_loaded,
        }


def recall_of(result: ClosedLoopResult, gt: NDArray[np.int32], k: int, say: Say) -> float:
    """Recall@k over the queries that were answered; a run that hit its time limit before
    answering them all says so, since its recall then covers fewer queries."""
    answered = result.answered if result.answered is not None else np.ones(len(gt), bool)
    if not answered.any():
        return 0.0
    if not answered.all():
        say(f"only {int(answered.sum())} of {len(gt)} queries answered; recall is over those")
    return recall_at_k(result.found_ids[answered], gt[answered], k)


def _describe(point: Point) -> str:
    d = point.to_dict()
    return (
        f"{point.label:<28} {point.setting:<16} recall {point.recall:.4f}  "
        f"{d['qps']:9.1f} qps (p50 {d['p50_ms'] or 0:.3f} / p99 {d['p99_ms'] or 0:.3f} ms at "
        f"{point.loaded.workers} in flight)  single p50 {d['single_p50_ms'] or 0:.3f} ms"
        + (f"  errors {point.loaded.errors}" if point.loaded.errors else "")
        + (
            "  cpu ms/query "
            + " ".join(f"{k}={v:.2f}" for k, v in point.cpu_loaded.items() if v is not None)
            if point.cpu_loaded
            else ""
        )
    )


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
                return index.search(dataset.queries[i], args.k)  # type: ignore[no-any-return]

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
            )
            points.append(point)
            say(_describe(point))
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
    local = cluster.cluster
    pids = {sid: child.pid for sid, child in local.shards.items() if child.pid is not None}
    if local.coordinator is not None and local.coordinator.pid is not None:
        pids["coordinator"] = local.coordinator.pid
    meter = CpuMeter(pids).start()
    result = asyncio.run(run)
    return result, per_query_ms(meter.stop(), result.answered_total)


def measure_cluster(
    dataset: Dataset,
    sweeps: Sequence[KindSweep],
    shards: int,
    args: argparse.Namespace,
    etcd: str,
    data_root: Path,
    say: Say,
) -> tuple[list[Point], dict[str, Any]]:
    gt = dataset.ground_truth
    assert gt is not None
    info: dict[str, Any] = {"shards": shards, "support": {}}
    points: list[Point] = []
    env = dict(item.split("=", 1) for item in args.cluster_env)
    with BenchCluster.local(
        data_root / f"shards-{shards}",
        shards,
        etcd_endpoint=etcd,
        env=env,
        dim=dataset.dim,
        metric=dataset.metric,
        max_k=max(100, args.k),
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
                    cluster.add_index(plan)
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
                ),
            )
            loaded, cpu_loaded = _metered(
                cluster,
                grpc_closed_loop(
                    cluster.address, requests, args.k, args.concurrency, Timing(args.duration, 0.5)
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
            )
            points.append(point)
            say(_describe(point))
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
                    ),
                )
                point = replace(
                    point, loaded=batched, batch=args.search_batch, cpu_loaded=cpu_batched
                )
                points.append(point)
                say(_describe(point))
    return points, info


# --------------------------------------------------------------------------------------------
# Comparison and output
# --------------------------------------------------------------------------------------------


def comparisons(points: Sequence[Point]) -> list[dict[str, Any]]:
    """Per cluster point: ratio at equal recall, ratio at the same parameter, p50 overhead."""
    inproc = {
        kind: [p for p in points if p.system == "in-process" and p.kind == kind] for kind in KINDS
    }
    out = []
    for p in points:
        if p.system != "cluster":
            continue
        curve = [q.curve_point() for q in inproc[p.kind]]
        (ratio,) = ratios_at_equal_recall([p.curve_point()], curve)
        same = next((q for q in inproc[p.kind] if q.value == p.value), None)
        single_p50 = p.to_dict()["single_p50_ms"] if p.batch == 1 else None
        same_p50 = same.to_dict()["single_p50_ms"] if same else None
        out.append(
            {
                "kind": p.kind,
                "shards": p.shards,
                "setting": p.setting,
                "batch": p.batch,
                "cluster_recall": p.recall,
                "cluster_qps": p.loaded.qps,
                "inprocess_at_equal_recall": None
                if ratio.inprocess is None
                else {
                    "recall": ratio.inprocess.recall,
                    "qps": ratio.inprocess.qps,
                    "setting": ratio.inprocess.label,
                },
                "ratio_at_equal_recall": ratio.ratio,
                "ratio_at_same_setting": p.loaded.qps / same.loaded.qps
                if same and same.loaded.qps
                else None,
                "single_p50_ms": single_p50,
                "inprocess_single_p50_ms": same_p50,
                "single_p50_overhead_ms": single_p50 - same_p50
                if single_p50 is not None and same_p50 is not None
                else None,
            }
        )
    return out


def targets(points: Sequence[Point], target_recall: float = TARGET_RECALL) -> dict[str, Any]:
    """The issue's figures: per kind and shard count, QPS at recall ≥ target and the ratio."""
    out: dict[str, Any] = {"recall_target": target_recall, "by_kind": {}}
    for kind in KINDS:
        inproc = [p for p in points if p.system == "in-process" and p.kind == kind]
        best_in = qps_at_recall([p.curve_point() for p in inproc], target_recall)
        cluster = [p for p in points if p.system == "cluster" and p.kind == kind]
        rows = {}
        for shards in sorted({p.shards for p in cluster if p.shards is not None}):
            mine = [p for p in cluster if p.shards == shards and p.batch == 1]
            batched = [p for p in cluster if p.shards == shards and p.batch > 1]
            best = qps_at_recall([p.curve_point() for p in mine], target_recall)
            best_batched = qps_at_recall([p.curve_point() for p in batched], target_recall)
            at = next((p for p in mine if best is not None and p.setting == best.label), None)
            rows[str(shards)] = {
                "qps": best.qps if best else None,
                "recall": best.recall if best else None,
                "setting": best.label if best else None,
                "ratio_to_inprocess": best.qps / best_in.qps if best and best_in else None,
                "single_p50_ms": at.to_dict()["single_p50_ms"] if at else None,
                "p99_ms_at_concurrency": at.to_dict()["p99_ms"] if at else None,
                "qps_with_search_batch": best_batched.qps if best_batched else None,
            }
        if inproc or rows:
            out["by_kind"][kind] = {
                "inprocess": None
                if best_in is None
                else {"qps": best_in.qps, "recall": best_in.recall, "setting": best_in.label},
                "cluster": rows,
            }
    return out


def write_outputs(
    payload: dict[str, Any], points: Sequence[Point], out_dir: Path, name: str, say: Say
) -> None:
    json_path = write_json(out_dir / f"{name}.json", payload)
    grouped: dict[str, list[Point]] = {}
    for p in points:
        grouped.setdefault(p.label, []).append(p)
    curves = [
        plots.Curve(
            label,
            group[0].kind,
            group[0].shards,
            group[0].batch > 1,
            [(p.recall, p.loaded.qps, p.setting) for p in group],
        )
        for label, group in grouped.items()
    ]
    ds = payload["dataset"]
    title = (
        f"{ds['name']} ({ds['n']}×{ds['dim']}, {ds['metric']}): recall@{ds['k']} vs QPS — "
        f"cluster at {payload['settings']['concurrency']} in flight, in-process on "
        f"{payload['settings']['threads']} thread(s); {payload['machine']['cpus_usable']} CPUs"
    )
    png = plots.recall_qps(curves, out_dir / f"{name}.png", title)
    say(f"wrote {json_path}" + (f" and {png}" if png else " (no PNG: matplotlib is not installed)"))


def run(args: argparse.Namespace, say: Say = say_stderr) -> dict[str, Any]:
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise SystemExit(f"--kinds: unknown {unknown}; expected some of {list(KINDS)}")
    shard_counts = [int(s) for s in args.shards.split(",") if s.strip()] if args.shards else []
    start_meta = machine()
    dataset = load_dataset(args)
    try:
        sweeps_by_kind = configure(
            default_sweeps(dataset.n_base, dataset.dim), args.param, args.sweep
        )
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    sweeps = [sweeps_by_kind[k] for k in kinds]
    say(f"data set {dataset.name}: {dataset.n_base}×{dataset.dim}, {dataset.n_queries} queries")
    points: list[Point] = []
    errors: list[dict[str, str]] = []
    clusters: list[dict[str, Any]] = []
    if not args.no_inprocess:
        found, errs = measure_inprocess(dataset, sweeps, args, say)
        points += found
        errors += errs
    if shard_counts and not args.no_cluster:
        with tempfile.TemporaryDirectory(prefix="vecshard-bench-", dir=args.data_dir) as tmp:
            root = Path(tmp)
            with shared_etcd(root) as etcd:
                for shards in shard_counts:
                    try:
                        found, info = measure_cluster(
                            dataset, sweeps, shards, args, etcd, root, say
                        )
                    except Exception as exc:  # noqa: BLE001 - report and go on to the next size
                        errors.append(
                            {"system": "cluster", "shards": str(shards), "error": repr(exc)}
                        )
                        say(f"cluster {shards} shard(s) failed: {exc!r}")
                        continue
                    points += found
                    clusters.append(info)
    payload = {
        "tool": "vecshard bench search",
        "machine": start_meta,
        "load_average_at_end": list(os.getloadavg()),
        "dataset": dataset_record(dataset, args.k),
        "settings": {
            "kinds": kinds,
            "sweeps": {
                s.kind: {"params": dict(s.params), "sweep": s.sweep_param, "values": list(s.values)}
                for s in sweeps
            },
            "shards": shard_counts,
            "concurrency": args.concurrency,
            "search_batch": args.search_batch,
            "threads": args.threads,
            "duration_s": args.duration,
            "latency_duration_s": args.latency_duration,
            "cluster_env": args.cluster_env,
        },
        "points": [p.to_dict() for p in points],
        "clusters": clusters,
        "comparisons": comparisons(points),
        "targets": targets(points),
        "errors": errors,
    }
    write_outputs(payload, points, Path(args.out_dir), args.name, say)
    return payload


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

EXAMPLES = """\
examples:
  vecshard bench search                                  # 100,000 x 128 Gaussian mixture, all kinds, 1/2/4 shards
  vecshard bench search --n 20000 --shards 1,2 --duration 2
  vecshard bench search --dataset bigann10k --kinds hnsw --sweep hnsw.ef_search=16,64,256
  vecshard bench search --dataset files --base sift_base.fvecs --query sift_query.fvecs \\
                        --groundtruth sift_groundtruth.ivecs
  vecshard bench search --kinds ivfpq --param ivfpq.nlist=256 --param ivfpq.refine_factor=8

Results go to benchmarks/results/<name>.json and .png; benchmarks/README.md explains them.
"""


def add_search_arguments(s: argparse.ArgumentParser) -> None:
    data = s.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default="gaussian",
        help="gaussian (seeded clustered mixture, default), bigann10k, fmnistsmall (shared real "
        "sets), files (--base/--query[/--groundtruth] .fvecs/.bvecs/.ivecs) or hdf5 (--hdf5)",
    )
    data.add_argument("--n", type=int, default=100_000, help="gaussian: base vectors (100000)")
    data.add_argument("--dim", type=int, default=128, help="gaussian: dimension (128)")
    data.add_argument("--clusters", type=int, help="gaussian: mixture components (n/1000)")
    data.add_argument("--queries", type=int, default=1000, help="queries to use (1000)")
    data.add_argument("--seed", type=int, default=1, help="gaussian: seed (1)")
    data.add_argument("--metric", choices=METRICS, default="l2", help="gaussian/files (l2)")
    data.add_argument("--base", help="files: base vectors")
    data.add_argument("--query", help="files: query vectors")
    data.add_argument("--groundtruth", help="files: exact neighbours (.ivecs); computed if absent")
    data.add_argument("--hdf5", help="hdf5: an ann-benchmarks file")
    idx = s.add_argument_group("indexes")
    idx.add_argument("--kinds", default="flat,hnsw,ivfpq", help="index kinds (flat,hnsw,ivfpq)")
    idx.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KIND.NAME=VALUE",
        help="index parameter for both sides, e.g. hnsw.M=32 (repeatable)",
    )
    idx.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KIND.NAME=V1,V2",
        help="search parameter values, e.g. hnsw.ef_search=16,64 (default: hnsw ef_search "
        "16..256, ivfpq nprobe 1..256)",
    )
    meas = s.add_argument_group("measurement")
    meas.add_argument("--k", type=int, default=10, help="neighbours per query; recall@k (10)")
    meas.add_argument("--shards", default="1,2,4", help="cluster sizes; empty for none (1,2,4)")
    meas.add_argument(
        "--concurrency", type=int, default=16, help="cluster requests in flight for QPS (16)"
    )
    meas.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help=f"in-process search threads for QPS (CPU count: {os.cpu_count()})",
    )
    meas.add_argument("--duration", type=float, default=5.0, help="seconds per QPS point (5)")
    meas.add_argument(
        "--latency-duration", type=float, default=3.0, help="seconds per unloaded point (3)"
    )
    meas.add_argument(
        "--search-batch",
        type=int,
        default=1,
        metavar="B",
        help="also measure the cluster with B queries per SearchBatch call (default 1: off)",
    )
    meas.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds (1)")
    meas.add_argument("--no-inprocess", action="store_true", help="skip the in-process side")
    meas.add_argument("--no-cluster", action="store_true", help="skip the cluster side")
    meas.add_argument(
        "--cluster-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for the cluster processes, e.g. OPENBLAS_NUM_THREADS=1 (repeatable)",
    )
    meas.add_argument(
        "--settle-timeout",
        type=float,
        default=900.0,
        help="shards without Flush only: seconds to wait for background builds to settle (900)",
    )
    meas.add_argument("--data-dir", help="parent directory for the clusters' data (system temp)")
    out = s.add_argument_group("output")
    out.add_argument("--out-dir", default=str(RESULTS_DIR), help="where JSON and PNG go")
    out.add_argument("--name", default="search_bench", help="file name stem (search_bench)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vecshard bench",
        description="Benchmarks of a vecshard deployment against in-process baselines.",
    )
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    search = sub.add_parser(
        "search",
        help="recall@10 vs QPS and latency per index kind: in-process vs a 1/2/4-shard cluster",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_search_arguments(search)
    return parser


def check_args(args: argparse.Namespace) -> None:
    for name in ("n", "dim", "queries", "k", "concurrency", "threads", "search_batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"--{name} must be >= 1, got {value}")
    for name in ("duration", "latency_duration"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be > 0 seconds")
    for item in args.cluster_env:
        if "=" not in item:
            raise SystemExit(f"--cluster-env {item!r}: expected KEY=VALUE")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    payload = run(args)
    for kind, figures in payload["targets"]["by_kind"].items():
        inproc = figures["inprocess"]
        print(
            f"{kind:<6} in-process at recall>={TARGET_RECALL}: "
            + (
                f"{inproc['qps']:.0f} qps ({inproc['setting'] or 'exact'})"
                if inproc
                else "not reached"
            )
        )
        for shards, row in figures["cluster"].items():
            if row["qps"] is None:
                print(f"       cluster {shards} shard(s): recall {TARGET_RECALL} not reached")
                continue
            ratio = f"{row['ratio_to_inprocess']:.3f}" if row["ratio_to_inprocess"] else "-"
            if row["qps_with_search_batch"]:
                ratio += f"; with SearchBatch {row['qps_with_search_batch']:.0f} qps"
            print(
                f"       cluster {shards} shard(s): {row['qps']:.0f} qps at recall {row['recall']:.3f} "
                f"({row['setting'] or 'exact'}), ÷ in-process {ratio}, single p50 {row['single_p50_ms']:.2f} ms"
            )
    for kinds in payload["clusters"]:
        for kind, support in kinds["support"].items():
            if not support["supported"]:
                print(
                    f"{kind:<6} cluster {kinds['shards']} shard(s): not supported — {support['reason']}"
                )
    return 1 if payload["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
