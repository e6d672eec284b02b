"""``make bench`` (``python -m benchmarks``): a small run of every benchmark, then a summary.

In order: the search benchmark (recall/QPS per index kind, in-process against 1/2/4-shard
clusters), a fixed-rate load test, a highest-sustainable-rate search with a run at half of
it, and a load test with a shard SIGKILLed and restarted mid-run. Every tool writes its JSON
and PNG under ``benchmarks/results/``; ``summary.json`` and ``summary.md`` put the figures
the targets are judged on side by side. ``--size small`` (default) fits in 10 minutes on 2
cores; ``--size full`` measures the 100,000 × 128 set the targets are stated for.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import loadtest, search_bench
from benchmarks.run_record import RESULTS_DIR, machine, write_json

SIZES: dict[str, dict[str, list[str]]] = {
    "small": {
        "search": [
            "--n", "20000", "--dim", "128", "--queries", "200", "--shards", "1,2,4",
            "--sweep", "hnsw.ef_search=16,32,64,128", "--sweep", "ivfpq.nprobe=4,16,64",
            "--duration", "2", "--latency-duration", "1.5", "--warmup", "0.5",
            "--search-batch", "16",
        ],
        "load": ["--n", "20000", "--dim", "128", "--shards", "2"],
        "fixed": ["--rate", "100", "--duration", "10s"],
        "find_max": [
            "--start-rate", "50", "--step-factor", "1.6", "--step-duration", "3s",
            "--refine", "1", "--duration", "8s",
        ],
        "fault": ["--rate", "100", "--duration", "12s", "--kill-at", "4s", "--restart-after", "2s"],
    },
    "full": {
        "search": [
            "--n", "100000", "--dim", "128", "--queries", "500", "--shards", "1,2,4",
            "--sweep", "hnsw.ef_search=32,64,128", "--sweep", "ivfpq.nprobe=8,32",
            "--duration", "5", "--latency-duration", "3", "--search-batch", "16",
        ],
        "load": ["--n", "100000", "--dim", "128", "--shards", "2"],
        "fixed": ["--rate", "100", "--duration", "30s"],
        "find_max": [
            "--start-rate", "50", "--step-factor", "1.5", "--step-duration", "5s",
            "--refine", "2", "--duration", "20s",
        ],
        "fault": ["--rate", "100", "--duration", "20s", "--kill-at", "5s", "--restart-after", "3s"],
    },
}  # fmt: skip

TARGET_QPS_PER_CORE = 1000.0
TARGET_P50_OVERHEAD_MS = 1.0
TARGET_P99_MS = 5.0
# "Sustainable" for the max-rate search: no errors and no runaway queue. Past saturation an
# open-loop p99 climbs to hundreds of milliseconds within seconds, so 50 ms separates the two
# regimes cleanly; the 5 ms target is then checked at half the rate found.
SUSTAINABLE_P99_MS = 50.0


def say(text: str) -> None:
    print(f"[make bench] {text}", file=sys.stderr, flush=True)


def _load_kind(search: dict[str, Any] | None) -> str:
    """The index kind the load tests use: HNSW, the kind the targets are stated for, unless
    the search benchmark found that this build's shards do not serve it (then flat). Without
    a search run, HNSW; the load test's own report then says which segments served it."""
    if search is None:
        return "hnsw"
    for cluster in search.get("clusters", []):
        if cluster["support"].get("hnsw", {}).get("supported"):
            return "hnsw"
    return "flat"


def headline(
    search: dict[str, Any] | None, max_rate: dict[str, Any] | None, fault: dict[str, Any] | None
) -> dict[str, Any]:
    """The figures the issue's targets are judged on, each next to its target."""
    cpus = machine()["cpus_usable"]
    out: dict[str, Any] = {"cpus": cpus}
    if search is not None:
        kind = _load_kind(search)
        figures = search["targets"]["by_kind"].get(kind, {})
        cluster = figures.get("cluster", {})
        two = cluster.get("2", {})
        inproc = figures.get("inprocess") or {}
        out["search"] = {
            "kind": kind,
            "dataset": search["dataset"],
            "recall_target": search["targets"]["recall_target"],
            "inprocess_qps": inproc.get("qps"),
            "cluster_qps_by_shards": {s: row["qps"] for s, row in cluster.items()},
            "ratio_to_inprocess_by_shards": {
                s: row["ratio_to_inprocess"] for s, row in cluster.items()
            },
            "cluster_qps_with_search_batch_by_shards": {
                s: row["qps_with_search_batch"] for s, row in cluster.items()
            },
            "qps_target": TARGET_QPS_PER_CORE * cpus,
            "qps_target_met_2_shards": bool(
                two.get("qps") and two["qps"] >= TARGET_QPS_PER_CORE * cpus
            ),
        }
        overhead = [
            c for c in search["comparisons"]
            if c["kind"] == kind and c["single_p50_overhead_ms"] is not None
        ]  # fmt: skip
        out["single_query_p50"] = [
            {
                "shards": c["shards"],
                "setting": c["setting"],
                "cluster_ms": c["single_p50_ms"],
                "inprocess_ms": c["inprocess_single_p50_ms"],
                "overhead_ms": c["single_p50_overhead_ms"],
                "target_met": c["single_p50_overhead_ms"] <= TARGET_P50_OVERHEAD_MS,
            }
            for c in overhead
        ]
    if max_rate is not None:
        found = max_rate["find_max_rate"]
        half = max_rate.get("half_rate")
        p99 = half["latency"].get("p99_ms") if half else None
        out["load"] = {
            "index": max_rate["target"],
            "max_sustainable_rate": found["max_sustainable_rate"],
            "limited_by": found["limited_by"],
            "half_rate": half["target_rate"] if half else None,
            "p99_ms_at_half_rate": p99,
            "p99_target_ms": TARGET_P99_MS,
            "p99_target_met": p99 is not None and p99 <= TARGET_P99_MS,
        }
    if fault is not None:
        out["fault"] = fault["fault"]
    return out


def markdown(summary: dict[str, Any]) -> str:
    m = summary["machine"]
    lines = [
        "# make bench summary",
        "",
        f"{m['date_utc']} — {m['cpu_model']}, {m['cpus_usable']} CPUs usable, "
        f"{m['memory_gib']} GiB; load average at start {m['load_average_1_5_15']}; "
        f"commit {m['git_commit']}{' (dirty)' if m['git_dirty'] else ''}; size {summary['size']}; "
        f"{summary['seconds']:.0f} s.",
        "",
    ]
    h = summary["headline"]
    if "search" in h:
        s = h["search"]
        ds = s["dataset"]
        lines += [
            f"## Search ({s['kind']}, {ds['n']}×{ds['dim']}, recall@{ds['k']} ≥ {s['recall_target']})",
            "",
            f"- in-process: {_fmt(s['inprocess_qps'])} QPS",
        ]
        for shards, qps in s["cluster_qps_by_shards"].items():
            ratio = s["ratio_to_inprocess_by_shards"].get(shards)
            batched = s["cluster_qps_with_search_batch_by_shards"].get(shards)
            lines.append(
                f"- cluster, {shards} shard(s): {_fmt(qps)} QPS (÷ in-process {_fmt(ratio, 3)})"
                + (f"; {_fmt(batched)} QPS with SearchBatch" if batched else "")
            )
        lines.append(
            f"- target ≥ {s['qps_target']:.0f} QPS with 2 shards: "
            f"{'met' if s['qps_target_met_2_shards'] else 'not met'}"
        )
        lines += ["", "Single-query p50 (cluster vs in-process, target overhead ≤ 1.0 ms):", ""]
        for row in h.get("single_query_p50", []):
            lines.append(
                f"- {row['shards']} shard(s) {row['setting'] or 'exact'}: {row['cluster_ms']:.3f} ms vs "
                f"{row['inprocess_ms']:.3f} ms → +{row['overhead_ms']:.3f} ms "
                f"({'met' if row['target_met'] else 'not met'})"
            )
        lines.append("")
    if "load" in h:
        ld = h["load"]
        lines += [
            f"## Load ({ld['index'].get('index_kind')} index, rows by segment kind "
            f"{ld['index'].get('rows_by_segment_kind')}, "
            f"{ld['index'].get('shards')} shards)",
            "",
            f"- highest sustainable rate (searches only; p99 ≤ {SUSTAINABLE_P99_MS:g} ms, no errors): "
            f"{_fmt(ld['max_sustainable_rate'])}/s; "
            f"limited by: {ld['limited_by']}",
            f"- p99 at half of it ({_fmt(ld['half_rate'])}/s): {_fmt(ld['p99_ms_at_half_rate'], 2)} ms "
            f"(target ≤ {ld['p99_target_ms']:g} ms: {'met' if ld['p99_target_met'] else 'not met'})",
            "",
        ]
    if "fault" in h:
        f = h["fault"]
        lines += [
            "## Fault (SIGKILL shard-1, then restart)",
            "",
            f"- clients saw {f['failed']} failed {f['codes']} and {f['partial']} partial answers; "
            f"first {_fmt(f.get('first_failure_after_kill_s'), 3)} s after the kill; "
            f"{f.get('failures_after_ready', 0)} after the shard was ready again",
            "",
        ]
    if summary["failures"]:
        lines += ["## Failures", ""] + [f"- {x}" for x in summary["failures"]] + [""]
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="small", help="small (default) or full"
    )
    parser.add_argument("--out-dir", default=str(RESULTS_DIR), help="results directory")
    parser.add_argument(
        "--cluster-env", action="append", default=[], metavar="KEY=VALUE",
        help="environment for every cluster process, e.g. OPENBLAS_NUM_THREADS=1",
    )  # fmt: skip
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["search", "fixed", "find_max", "fault"],
        help="leave a step out (repeatable)",
    )
    parser.add_argument(
        "--load-kind",
        choices=["flat", "hnsw", "ivfpq"],
        help="index kind for the load tests (default: hnsw where the shards serve it)",
    )
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    out = ["--out-dir", args.out_dir]
    env = [x for item in args.cluster_env for x in ("--cluster-env", item)]
    started = time.perf_counter()
    meta = machine()
    failures: list[str] = []
    results: dict[str, dict[str, Any] | None] = {
        "search": None,
        "fixed": None,
        "find_max": None,
        "fault": None,
    }

    def attempt(name: str, fn: Any, argv_: list[str]) -> None:
        if name in args.skip:
            return
        say(f"{name}: {' '.join(argv_)}")
        try:
            results[name] = fn(argv_)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - one tool failing must not hide the others
            failures.append(f"{name}: {exc!r}")
            say(f"{name} failed: {exc!r}")

    def bench(argv_: list[str]) -> dict[str, Any]:
        parsed = search_bench.build_parser().parse_args(argv_)
        search_bench.check_args(parsed)
        return search_bench.run(parsed)

    def load(argv_: list[str]) -> dict[str, Any]:
        payload = loadtest.run(loadtest.build_parser().parse_args(argv_))
        loadtest.print_result(payload)
        return payload

    attempt("search", bench, ["search", *size["search"], *env, *out])
    kind = args.load_kind or _load_kind(results["search"])
    common = ["--local", "--kind", kind, *size["load"], *env, *out, "--quiet"]
    attempt("fixed", load, [*common, *size["fixed"], "--name", "loadtest"])
    attempt(
        "find_max",
        load,
        [
            *common, "--find-max-rate", "--p99-bound-ms", str(SUSTAINABLE_P99_MS), "--mix", "search=1",
            *size["find_max"], "--name", "loadtest_max_rate",
        ],
    )  # fmt: skip
    attempt(
        "fault",
        load,
        [*common, *size["fault"], "--kill-shard", "shard-1", "--name", "loadtest_fault"],
    )
    summary = {
        "tool": "make bench",
        "size": args.size,
        "machine": meta,
        "seconds": time.perf_counter() - started,
        "cluster_env": args.cluster_env,
        "headline": headline(results["search"], results["find_max"], results["fault"]),
        "failures": failures,
    }
    out_dir = Path(args.out_dir)
    write_json(out_dir / "summary.json", summary)
    (out_dir / "summary.md").write_text(markdown(summary))
    print(markdown(summary))
    say(f"done in {summary['seconds']:.0f} s; results in {out_dir}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
