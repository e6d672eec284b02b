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
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import plots
from benchmarks.bench_cluster import shared_etcd
from benchmarks.datasets import METRICS, REAL_DATASETS, Dataset, load_file, load_real
from benchmarks.ground_truth import with_ground_truth
from benchmarks.hdf5_files import load_hdf5
from benchmarks.index_kinds import KINDS, configure, default_sweeps
from benchmarks.run_record import RESULTS_DIR, machine, scratch_directory, write_json
from benchmarks.search_points import TARGET_RECALL, Point, Say, comparisons, targets
from benchmarks.search_sweeps import measure_cluster, measure_inprocess
from benchmarks.synthetic_data import gaussian_mixture
from registry.placement import PLACEMENTS


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
# Output
# --------------------------------------------------------------------------------------------


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
        with scratch_directory("vecshard-bench-", args.data_dir) as tmp:
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
            "placement": args.placement,
            "concurrency": args.concurrency,
            "search_batch": args.search_batch,
            "search_batch_hits": "messages" if args.search_batch_messages else "packed",
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
        "--replicas",
        type=int,
        default=1,
        help="shards holding each bucket (1); capped at each cluster's size — every write "
        "goes to all of them, a search asks one per bucket (hedging, failover)",
    )
    meas.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default="hash",
        help="how rows spread over buckets (hash): hash — every shard holds a sample of "
        "everything and every query asks every shard; centroid — nearby rows share a bucket "
        "(centroids trained on the base vectors), so score bounds can skip shards",
    )
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
    meas.add_argument(
        "--search-batch-messages",
        action="store_true",
        help="SearchBatch answers with a Hit message per hit (default: packed hits, "
        "the SDK's search_batch form)",
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
    for name in ("n", "dim", "queries", "k", "concurrency", "threads", "search_batch", "replicas"):
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
    copies = {str(c["shards"]): c.get("replicas", 1) for c in payload["clusters"]}
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
            each = f" ({copies[shards]} replicas a bucket)" if copies.get(shards, 1) > 1 else ""
            print(
                f"       cluster {shards} shard(s){each}: {row['qps']:.0f} qps at recall {row['recall']:.3f} "
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
