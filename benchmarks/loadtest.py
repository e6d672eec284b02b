"""``vecshard loadtest``: an open-loop load test of a vecshard coordinator.

Requests are sent at a target arrival rate (Poisson or uniform), whatever the server does,
and latency is measured from each request's *scheduled* send time, so a stall shows up as
the queueing real clients would see instead of being hidden by a slower send rate
(coordinated omission). The request mix is configurable (searches with and without
filters, BatchGetEmbeddings, and any RetrievalService RPC from a JSON request file — e.g.
GetFeatures once it exists). A live line on stderr shows progress once a second; the end
report gives the achieved rate, p50/p90/p99/p99.9/max latency from a log-bucket histogram,
errors by status code and partial results, as JSON plus a PNG of latency over time.

It targets a running coordinator (``--coordinator``) or starts a local cluster with a
synthetic data set (``--local``). ``--find-max-rate`` steps the rate up until p99 breaks a
bound and reports the highest sustainable rate and p99 at half of it; ``--kill-shard``
SIGKILLs a shard of the local cluster mid-run, restarts it, and reports what clients saw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from benchmarks import plots
from benchmarks.arrivals import ARRIVALS
from benchmarks.faults import FaultPlan, fault_report, shard_kill
from benchmarks.load_report import format_report, summarize
from benchmarks.load_targets import Target, open_target
from benchmarks.open_loop import LoadRun, OpenLoopConfig, SideTask, run_open_loop, stderr_progress
from benchmarks.rate_search import RateSearch, find_max_rate
from benchmarks.request_mix import (
    RequestMix,
    build_mix,
    parse_mix,
)
from benchmarks.run_record import RESULTS_DIR, machine, write_json
from client.credentials import Credentials


def say(text: str) -> None:
    print(f"[loadtest] {text}", file=sys.stderr, flush=True)


def seconds(text: str) -> float:
    """``"5s"``, ``"500ms"``, ``"2m"`` or a plain number of seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|min)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration like 30s, 500ms or 2m")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0}[unit]


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


async def _run(
    channel: grpc.aio.Channel,
    mix: RequestMix,
    config: OpenLoopConfig,
    side: list[SideTask],
    progress: bool,
    stop: asyncio.Event,
) -> tuple[LoadRun, dict[str, Any]]:
    cpu = time.process_time()
    run = await run_open_loop(
        channel, mix, config, side_tasks=side, progress=stderr_progress(progress), stop=stop
    )
    summary = summarize(run)
    cpu = time.process_time() - cpu
    summary["generator_cpu_s"] = cpu
    summary["generator_cpu_ms_per_request"] = cpu / max(1, summary["sent"]) * 1e3
    return run, summary


async def drive(args: argparse.Namespace, target: Target, mix: RequestMix) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)  # Ctrl-C: stop sending, still report
    # TLS and a token: the local cluster's admin, else the SDK's environment.
    # (The token rides the channel's call credentials: the requests are raw
    # bytes through a generic harness; it costs the generator, not the servers.)
    creds = target.cluster.credentials() if target.cluster is not None else Credentials.from_env()
    async with grpc.aio.secure_channel(target.address, creds.composite_credentials()) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=15)
        if args.warmup > 0:
            warm = OpenLoopConfig(
                min(args.rate, 200.0), args.warmup, "uniform", args.seed, args.timeout
            )
            await run_open_loop(channel, mix, warm, stop=stop)

        def config(rate: float, duration: float) -> OpenLoopConfig:
            return OpenLoopConfig(rate, duration, args.arrivals, args.seed, args.timeout)

        if args.find_max_rate:
            search = RateSearch(
                args.p99_bound_ms, args.start_rate, args.step_factor, args.max_rate, args.refine
            )

            async def step(rate: float) -> dict[str, Any]:
                _, summary = await _run(
                    channel, mix, config(rate, args.step_duration), [], False, stop
                )
                summary.pop("timeline")
                return summary

            found = await find_max_rate(step, search, say, stopped=stop.is_set)
            result: dict[str, Any] = {"find_max_rate": found}
            best = found["max_sustainable_rate"]
            if best and not args.no_half_rate_check and not stop.is_set():
                say(
                    f"half of the highest sustainable rate: {best / 2:.1f}/s for {args.duration:g} s"
                )
                _, half = await _run(
                    channel, mix, config(best / 2, args.duration), [], not args.quiet, stop
                )
                result["half_rate"] = half
            return result
        side: list[SideTask] = []
        if args.kill_shard:
            assert target.cluster is not None
            plan = FaultPlan(args.kill_shard, args.kill_at, args.restart_after)
            side.append(shard_kill(plan, target.cluster.cluster))
        run, summary = await _run(
            channel, mix, config(args.rate, args.duration), side, not args.quiet, stop
        )
        result = {"run": summary}
        if args.kill_shard:
            result["fault"] = fault_report(run)
        return result


def write_outputs(args: argparse.Namespace, payload: dict[str, Any]) -> list[Path]:
    out_dir = Path(args.out_dir)
    written = [write_json(out_dir / f"{args.name}.json", payload)]
    target = payload["target"]
    where = (
        f"{target['mode']} {target.get('shards', '')} shard(s)"
        if target["mode"] == "local"
        else target["route"]
    )
    cpus = payload["machine"]["cpus_usable"]
    if "find_max_rate" in payload:
        found = payload["find_max_rate"]
        png = plots.rate_steps(
            found["steps"],
            found["p99_bound_ms"],
            out_dir / f"{args.name}_steps.png",
            f"max sustainable rate under p99 ≤ {found['p99_bound_ms']:g} ms: "
            f"{found['max_sustainable_rate'] or 0:.0f}/s ({where}, {cpus} CPUs)",
        )
        written += [png] if png else []
    summary = payload.get("run") or payload.get("half_rate")
    if summary is not None:
        title = (
            f"latency over time at {summary['target_rate']:.0f}/s offered ({where}, {cpus} CPUs); "
            f"p99 {summary['latency'].get('p99_ms', float('nan')):.2f} ms"
        )
        png = plots.latency_timeline(summary, out_dir / f"{args.name}.png", title)
        written += [png] if png else []
    return written


def print_result(payload: dict[str, Any]) -> None:
    if "run" in payload:
        print(format_report(payload["run"], "load test"))
    if "fault" in payload:
        f = payload["fault"]

        def at(key: str) -> str:
            value = f.get(key)
            return "-" if value is None else f"{value:.2f}s"

        print(
            f"== fault: kill at {at('kill_at_s')}, restart at {at('restart_at_s')}, ready at "
            f"{at('ready_at_s')}; clients saw {f['failed']} failed {f['codes']} and "
            f"{f['partial']} partial answers; the first {at('first_failure_after_kill_s')} after "
            "the kill; "
            + (
                f"the last {at('recovered_after_ready_s')} after the shard was ready"
                if f.get("failures_after_ready")
                else "none once the shard was ready"
            )
        )
    if "find_max_rate" in payload:
        found = payload["find_max_rate"]
        print(
            f"== highest sustainable rate with p99 ≤ {found['p99_bound_ms']:g} ms and no errors: "
            f"{found['max_sustainable_rate'] or 0:.1f}/s (first failing {found['first_failing_rate'] or 0:.1f}/s: "
            f"{found['limited_by']})"
        )
    if "half_rate" in payload:
        print(format_report(payload["half_rate"], "half of the highest sustainable rate"))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

EXAMPLES = """\
examples:
  vecshard loadtest --local --shards 2 --n 20000 --rate 500 --duration 30s
  vecshard loadtest --local --find-max-rate --p99-bound-ms 5
  vecshard loadtest --local --shards 2 --rate 300 --duration 15s \\
                    --kill-shard shard-1 --kill-at 5s --restart-after 2s
  vecshard loadtest --coordinator 127.0.0.1:7300 --route home_feed --tenant acme \\
                    --purpose recommendation --embedding demo_items@v1 \\
                    --lookup-id-template 'item-{:05d}' --lookup-id-count 3000 \\
                    --filter '{"eq": {"category": "books"}}' --rate 200 --duration 1m
  vecshard loadtest --local --request features=GetFeatures:get_features.json \\
                    --mix search=80,features=20      # any RPC from a proto-JSON request

Output: benchmarks/results/<name>.json and <name>.png (see benchmarks/README.md).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vecshard loadtest",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t = p.add_argument_group("target (one of --coordinator or --local)")
    t.add_argument("--coordinator", metavar="HOST:PORT", help="a running coordinator")
    t.add_argument("--route", help="route to search (with --coordinator)")
    t.add_argument("--tenant", help="tenant id (with --coordinator)")
    t.add_argument("--purpose", help="purpose (with --coordinator)")
    t.add_argument("--embedding", metavar="NAME@VERSION", help="embedding for batch_get lookups")
    t.add_argument("--lookup-ids", metavar="FILE", help="entity ids for batch_get, one per line")
    t.add_argument("--lookup-id-template", default="{}", help="entity id format for batch_get ({})")
    t.add_argument("--lookup-id-count", type=int, default=1000, help="ids from the template (1000)")
    t.add_argument(
        "--queries-file", metavar="FILE", help="query vectors (.fvecs/.bvecs); random if absent"
    )
    t.add_argument(
        "--filter", action="append", default=[], help="JSON filter for search_filtered (repeatable)"
    )
    t.add_argument("--local", action="store_true", help="start a local cluster with synthetic data")
    t.add_argument("--shards", type=int, default=2, help="local: shard servers (2)")
    t.add_argument("--n", type=int, default=20_000, help="local: vectors to load (20000)")
    t.add_argument("--dim", type=int, default=64, help="local: dimension (64)")
    t.add_argument("--kind", default="flat", help="local: index kind flat|hnsw|ivfpq (flat)")
    t.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KIND.NAME=VALUE",
        help="local: index parameter",
    )
    t.add_argument(
        "--cluster-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="local: environment for the cluster processes",
    )
    t.add_argument("--data-dir", help="local: parent directory for cluster data (system temp)")
    load = p.add_argument_group("load")
    load.add_argument("--rate", type=float, default=200.0, help="requests per second (200)")
    load.add_argument("--duration", type=seconds, default=30.0, help="how long to send (30s)")
    load.add_argument(
        "--arrivals", choices=ARRIVALS, default="poisson", help="arrival process (poisson)"
    )
    load.add_argument("--timeout", type=seconds, default=2.0, help="per-request deadline (2s)")
    load.add_argument("--warmup", type=seconds, default=1.0, help="warm-up before measuring (1s)")
    load.add_argument("--seed", type=int, default=0)
    load.add_argument("--k", type=int, default=10, help="results per search (10)")
    mix = p.add_argument_group("request mix")
    mix.add_argument(
        "--mix",
        help="NAME=WEIGHT,...; kinds: search, search_filtered, batch_get and --request names "
        "(local default search=70,search_filtered=20,batch_get=10)",
    )
    mix.add_argument(
        "--keys-per-lookup", type=int, default=100, help="keys per BatchGetEmbeddings (100)"
    )
    mix.add_argument(
        "--request",
        action="append",
        default=[],
        metavar="NAME=RPC:FILE.json",
        help="add a kind: any RetrievalService RPC from a proto-JSON request (or list)",
    )
    fm = p.add_argument_group("highest sustainable rate")
    fm.add_argument(
        "--find-max-rate", action="store_true", help="step the rate up until p99 or errors break"
    )
    fm.add_argument("--p99-bound-ms", type=float, default=5.0, help="p99 bound (5)")
    fm.add_argument("--start-rate", type=float, default=100.0, help="first step's rate (100)")
    fm.add_argument("--step-factor", type=float, default=1.5, help="rate multiplier per step (1.5)")
    fm.add_argument("--step-duration", type=seconds, default=5.0, help="seconds per step (5s)")
    fm.add_argument("--max-rate", type=float, default=100_000.0, help="stop stepping here")
    fm.add_argument(
        "--refine", type=int, default=2, help="bisection steps after the first failure (2)"
    )
    fm.add_argument(
        "--no-half-rate-check",
        action="store_true",
        help="skip the run at half the highest rate (its p99 is a target)",
    )
    fault = p.add_argument_group("fault injection (with --local)")
    fault.add_argument(
        "--kill-shard", metavar="SHARD_ID", help="SIGKILL this shard mid-run, e.g. shard-1"
    )
    fault.add_argument("--kill-at", type=seconds, default=5.0, help="when, from the start (5s)")
    fault.add_argument("--restart-after", type=seconds, help="restart it this long after the kill")
    out = p.add_argument_group("output")
    out.add_argument("--out-dir", default=str(RESULTS_DIR), help="where JSON and PNG go")
    out.add_argument("--name", default="loadtest", help="file name stem (loadtest)")
    out.add_argument("--quiet", action="store_true", help="no live progress line")
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.kill_shard and not args.local:
        raise SystemExit(
            "--kill-shard needs --local: the harness can only kill processes it started"
        )
    if args.kill_shard and args.find_max_rate:
        raise SystemExit("--kill-shard and --find-max-rate do not combine; run them separately")
    for name in ("rate", "duration", "timeout", "p99_bound_ms", "step_duration"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be > 0")
    for name in ("shards", "n", "dim", "k", "keys_per_lookup"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    for item in args.cluster_env:
        if "=" not in item:
            raise SystemExit(f"--cluster-env {item!r}: expected KEY=VALUE")


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_args(args)
    meta = machine()
    with open_target(args, say) as target:
        try:
            mix = build_mix(parse_mix(args.mix or target.default_mix), target.kinds)
        except ValueError as exc:
            raise SystemExit(f"--mix: {exc}") from None
        say(f"target {target.address}; mix {dict(zip(mix.names, mix.weights, strict=True))}")
        result = asyncio.run(drive(args, target, mix))
    payload = {
        "tool": "vecshard loadtest",
        "machine": meta,
        "load_average_at_end": list(os.getloadavg()),
        "target": target.description,
        "mix": dict(zip(mix.names, mix.weights, strict=True)),
        "argv": sys.argv[1:],
        **result,
    }
    for path in write_outputs(args, payload):
        say(f"wrote {path}")
    return payload


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    payload = run(args)
    print_result(payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
