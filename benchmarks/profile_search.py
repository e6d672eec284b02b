"""Where a search's CPU goes in each process of a local cluster: py-spy (or perf) on the
coordinator and every shard while a closed loop drives them, summarized per process.

    python -m benchmarks.profile_search [--n 100000] [--shards 2] [--seconds 10] [--batch 16] \
        [--profiler py-spy|perf]

Loads a Gaussian mixture (the search benchmark's data) into a local cluster with one HNSW
index version, then for one query per ``Search`` (and, with ``--batch B``, ``SearchBatch``
×B) records every server process with ``py-spy record --format raw`` (folded stacks) while
``--concurrency`` calls are in flight. Prints, per process, the functions with the largest
share of samples (inclusive: on the stack; self: on top) and the CPU milliseconds per query
from ``/proc``; the folded stacks stay in ``--out-dir`` for flame graphs. py-spy must be
installed (``pip install py-spy``) and allowed to read other processes (ptrace).

py-spy sees Python frames while a thread holds the GIL; the CPU a process spends outside
it — gRPC's core and TLS, the kernel switching threads, RocksDB, numpy and hnswlib with the
GIL released — it does not. ``--profiler perf`` samples every thread's instruction pointer
with ``perf record`` instead (cpu-clock, all threads of each process) and prints each
process's CPU by where it ran — the Python interpreter, gRPC core, the kernel (its
scheduling and wake-ups apart), numpy, hnswlib, RocksDB, protobuf, libc — and its hottest
symbols; the ``perf.data`` files stay in ``--out-dir``. perf must be on PATH and allowed to
sample other processes (root, or ``kernel.perf_event_paranoid`` ≤ 1). In a virtual machine
without a virtual PMU, kernel samples land where interrupts are re-enabled
(``finish_task_switch``, ``_raw_spin_unlock_irqrestore``): the time is the scheduler's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.bench_cluster import BenchCluster, IndexPlan, serving_cluster
from benchmarks.closed_loop import Timing, grpc_closed_loop
from benchmarks.process_cpu import CpuMeter, per_query_faults, per_query_ms
from benchmarks.request_mix import access_context, search_requests
from benchmarks.scrape import samples
from benchmarks.synthetic_data import gaussian_mixture


def folded_summary(lines: Iterable[str], top: int = 25) -> tuple[int, list[tuple[str, int, int]]]:
    """From py-spy's folded stacks ("frame;frame;... count"): total samples and the `top`
    functions by inclusive samples, each with (name, inclusive, self)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";")]
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
    return total, [(name, inc, own[name]) for name, inc in ranked]


def _short(frame: str) -> str:
    """`func (path/to/module.py:123)` → `func (module.py)`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({Path(path).name})" if path else name


def py_spy() -> str | None:
    """py-spy on PATH, or beside this interpreter (a virtualenv that is not activated)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


PROFILERS = ("py-spy", "perf")

# Where a native sample ran, by the library (perf's "dso") it was in; first match wins.
LIBRARY_GROUPS = (
    ("python interpreter", ("libpython",)),
    ("gRPC core", ("cygrpc",)),
    ("numpy", ("_multiarray_umath", "_umath_linalg", "libopenblas", "libscipy_openblas")),
    ("hnswlib", ("hnswlib",)),
    ("faiss", ("_swigfaiss", "libfaiss")),
    ("RocksDB", ("rocksdict",)),
    ("protobuf", ("_message",)),
    ("libc", ("libc.so", "libstdc++", "ld-linux")),
)
KERNEL = "[kernel.kallsyms]"
# Kernel symbols of switching threads and waking them (with cpu-clock sampling in a VM,
# a context switch's time shows where it re-enables interrupts: finish_task_switch).
SCHEDULING = (
    "finish_task_switch",
    "_raw_spin_unlock_irqrestore",
    "schedule",
    "try_to_wake_up",
    "ttwu_",
    "futex",
    "__switch_to",
    "pick_next_task",
    "dequeue_task",
    "enqueue_task",
)


def perf_summary(
    lines: Iterable[str], top: int = 25
) -> tuple[dict[str, float], list[tuple[float, str, str]]]:
    """From ``perf report --stdio -q --sort dso,sym`` ("  12.65%  dso  [.] symbol"): the
    percentage of samples by group (LIBRARY_GROUPS, "kernel: scheduling", "kernel: other",
    "other") and the `top` symbols as (percentage, dso, symbol)."""
    groups: dict[str, float] = {}
    symbols: list[tuple[float, str, str]] = []
    for line in lines:
        parts = line.split(None, 3)
        if len(parts) < 4 or not parts[0].endswith("%"):
            continue
        try:
            share = float(parts[0].rstrip("%"))
        except ValueError:
            continue
        dso, symbol = parts[1], parts[3].strip()
        symbols.append((share, dso, symbol))
        group = _group(dso, symbol)
        groups[group] = groups.get(group, 0.0) + share
    symbols.sort(key=lambda row: -row[0])
    return dict(sorted(groups.items(), key=lambda kv: -kv[1])), symbols[:top]


def _group(dso: str, symbol: str) -> str:
    if dso == KERNEL:
        scheduling = any(s in symbol for s in SCHEDULING)
        return "kernel: scheduling" if scheduling else "kernel: other"
    name = Path(dso).name
    return next(
        (group for group, marks in LIBRARY_GROUPS if any(m in name for m in marks)), "other"
    )


def perf() -> str | None:
    return shutil.which("perf")


def perf_report(data: Path) -> list[str]:
    """`perf report`'s per-symbol lines for one recording (empty if it cannot be read)."""
    done = subprocess.run(
        [perf() or "perf", "report", "-i", str(data), "--stdio", "-q", "--sort", "dso,sym"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.splitlines() if done.returncode == 0 else []


def missing(profiler: str) -> str | None:
    """Why `profiler` cannot run here, or None."""
    if profiler == "perf" and perf() is None:
        return "perf is not installed (linux-perf / linux-tools)"
    if profiler == "py-spy" and py_spy() is None:
        return "py-spy is not installed (pip install py-spy)"
    return None


class Recording:
    """One process recorded by py-spy (`--gil`, folded stacks) or perf (cpu-clock, every
    thread) until `stop()`: the work decides how long, not a duration guessed ahead."""

    def __init__(self, profiler: str, pid: int, out: Path, rate: int) -> None:
        self.profiler, self.out = profiler, out
        if profiler == "perf":
            cmd = [perf() or "perf", "record", "-F", str(rate), "-o", str(out), "-p", str(pid)]
        else:
            cmd = [py_spy() or "py-spy", "record", "--pid", str(pid), "--gil", "--rate", str(rate)]
            cmd += ["--format", "raw", "--output", str(out), "--nonblocking"]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self, timeout: float = 60.0) -> None:
        """Ends the recording: on SIGINT both profilers write their file and exit."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def summary(self, top: int) -> dict[str, Any] | None:
        """Where the samples went (None when the profiler could not record)."""
        if not self.out.exists():
            return None
        if self.profiler == "perf":
            lines = perf_report(self.out)
            if not lines:
                return None
            groups, symbols = perf_summary(lines, top)
            return {"groups_pct": groups, "symbols": symbols}
        total, ranked = folded_summary(self.out.read_text().splitlines(), top)
        return {"samples": total, "functions": ranked} if total else None


def _print_summary(name: str, profiler: str, summary: dict[str, Any] | None) -> None:
    if summary is None:
        why = "perf_event_paranoid ≤ 1 or root?" if profiler == "perf" else "ptrace allowed?"
        print(f"-- {name}: no profile ({profiler} failed: {why})")
    elif profiler == "perf":
        groups = summary["groups_pct"]
        print(f"-- {name}: % of its CPU samples by where they ran (perf, all threads)")
        print("   " + ", ".join(f"{g} {v:.1f}" for g, v in groups.items()))
        for share, dso, symbol in summary["symbols"]:
            print(f"   {share:5.1f}  {Path(dso).name}  {symbol}")
    else:
        total = max(summary["samples"], 1)
        print(f"-- {name}: {summary['samples']} samples (inclusive % / self %)")
        for fn, inc, own in summary["functions"]:
            print(f"   {100 * inc / total:5.1f} {100 * own / total:5.1f}  {fn}")


def recording_path(out_dir: Path, tag: str, name: str, profiler: str) -> Path:
    return out_dir / f"{tag}-{name}.{'perf.data' if profiler == 'perf' else 'txt'}"


@contextmanager
def profiled(
    profiler: str | None,
    pids: Mapping[str, int],
    out_dir: Path,
    tag: str,
    rate: int = 1000,
    top: int = 15,
) -> Iterator[dict[str, Any]]:
    """Records every process of `pids` while the block runs (nothing when `profiler` is
    None); afterwards the dict holds where each one's CPU went (`print_where`)."""
    where: dict[str, Any] = {}
    if profiler is None:
        yield where
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    spies = {
        name: Recording(profiler, pid, recording_path(out_dir, tag, name, profiler), rate)
        for name, pid in pids.items()
    }
    try:
        yield where
    finally:
        for spy in spies.values():
            spy.stop()
    where.update((name, spy.summary(top)) for name, spy in spies.items())


def print_where(profiler: str, where: Mapping[str, dict[str, Any] | None]) -> None:
    for name, summary in where.items():
        _print_summary(name, profiler, summary)


def shard_call_totals(metrics_port: int | None) -> dict[str, tuple[float, float]]:
    """Per shard, (search calls, queries they carried) so far, from the coordinator's
    `vecshard_shard_call_queries` histogram; empty when its metrics are not served."""
    if not metrics_port:
        return {}
    out: dict[str, tuple[float, float]] = {}
    for name, labels, value in samples(metrics_port, "vecshard_shard_call_queries"):
        shard = labels.get("shard_id", "")
        calls, queries = out.get(shard, (0.0, 0.0))
        if name.endswith("_count"):
            out[shard] = (value, queries)
        elif name.endswith("_sum"):
            out[shard] = (calls, value)
    return out


def profile_mode(
    cluster: BenchCluster,
    requests: tuple[bytes, ...],
    args: argparse.Namespace,
    batch: int,
    out_dir: Path,
) -> dict[str, object]:
    """One mode's run: CPU per query per process, and where it went (printed; returned
    for the JSON)."""
    local = cluster.cluster
    pids = cluster.server_pids
    tag = "single" if batch <= 1 else f"batch{batch}"
    coordinator = local.coordinator
    metrics_port = coordinator.ready.get("metrics") if coordinator and coordinator.ready else None
    calls_before = shard_call_totals(metrics_port)
    with profiled(args.profiler, pids, out_dir, tag, args.rate, args.top) as where:
        meter = CpuMeter(pids).start()
        result = asyncio.run(
            grpc_closed_loop(
                cluster.address,
                requests,
                args.k,
                args.concurrency,
                Timing(args.seconds, 0.0, cover_all=False),
                batch=batch,
                credentials=cluster.credentials(),
            )
        )
        cpu = per_query_ms(meter.stop(), result.answered_total)
    faults = per_query_faults(meter.faults, result.answered_total)
    calls_after = shard_call_totals(metrics_port)
    print(f"\n== {tag}: {result.qps:.0f} qps, CPU ms/query {_fmt(cpu)}")
    sizes = {
        shard: (queries - calls_before.get(shard, (0.0, 0.0))[1])
        / max(1.0, calls - calls_before.get(shard, (0.0, 0.0))[0])
        for shard, (calls, queries) in calls_after.items()
    }
    print("   queries per shard call " + " ".join(f"{k}={v:.2f}" for k, v in sorted(sizes.items())))
    print(
        "   minor page faults/query "
        + " ".join(f"{k}={v:.1f}" for k, v in faults.items() if v is not None)
    )
    print_where(args.profiler, where)
    return {"qps": result.qps, "cpu_ms_per_query": cpu, "shard_call_sizes": sizes, "where": where}


def _fmt(cpu: Mapping[str, float | None]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in cpu.items() if v is not None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_search", description=__doc__)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--ef-search", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batch", type=int, default=16, help="also SearchBatch×B (0: off)")
    p.add_argument(
        "--profiler",
        choices=PROFILERS,
        default="py-spy",
        help="py-spy (Python frames holding the GIL; default) or perf (every thread's CPU "
        "by library: interpreter, gRPC core, kernel scheduling, numpy, RocksDB, ...)",
    )
    p.add_argument("--rate", type=int, default=250, help="samples per second")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--cluster-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out-dir", default="benchmarks/results/profile")
    args = p.parse_args(argv)
    why = missing(args.profiler)
    if why:
        print(why, file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = gaussian_mixture(args.n, args.dim, max(8, args.n // 1000), args.queries, 1)
    env = dict(item.split("=", 1) for item in args.cluster_env)
    plan = IndexPlan("prof", "hnsw", {"M": 16, "ef_construction": 100, "ef_search": args.ef_search})
    with tempfile.TemporaryDirectory(prefix="vecshard-prof-") as tmp:
        root = Path(tmp)
        with serving_cluster(root, args.shards, plan, data.base, env) as cluster:
            requests = search_requests(
                plan.route, access_context("bench", "benchmark"), data.queries, args.k
            )
            report = {"single": profile_mode(cluster, requests, args, 1, out_dir)}
            if args.batch > 1:
                report[f"batch{args.batch}"] = profile_mode(
                    cluster, requests, args, args.batch, out_dir
                )
    out = out_dir / f"profile-{args.profiler}.json"
    out.write_text(json.dumps({"args": vars(args), **report}, indent=2, default=str))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
