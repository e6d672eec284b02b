"""`vecshard rollout shards`: roll a shard StatefulSet to a new image, one shard at a time."""

from __future__ import annotations

import argparse
import os
import shlex
import sys


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ro = sub.add_parser(
        "rollout",
        help="roll shard servers to a new image, one shard at a time (Kubernetes)",
    )
    ro_sub = ro.add_subparsers(dest="rollout_command", metavar="WHAT", required=True)
    rs = ro_sub.add_parser(
        "shards",
        help="drain → wait idle → lower the StatefulSet partition → wait Ready → serve, per ordinal",
    )
    rs.add_argument(
        "--image", required=True, help="new image, e.g. registry.example/vecshard:1.4.2"
    )
    rs.add_argument(
        "--coordinator", help="coordinator address for registry drains (e.g. a port-forward)"
    )
    rs.add_argument("--namespace", default="vecshard", help="Kubernetes namespace (vecshard)")
    rs.add_argument(
        "--statefulset", default="vecshard-shard", help="shard StatefulSet (vecshard-shard)"
    )
    rs.add_argument("--container", default="shard", help="container to update (shard)")
    rs.add_argument(
        "--kubectl", default="kubectl", help="kubectl binary (default: kubectl on PATH)"
    )
    rs.add_argument(
        "--drain-timeout", type=float, default=120.0, help="seconds to wait for in-flight = 0"
    )
    rs.add_argument(
        "--ready-timeout", type=float, default=600.0, help="seconds to wait for a new pod"
    )
    rs.add_argument("--who", help="recorded as the actor (default: $USER)")
    rs.add_argument(
        "--metrics-url",
        help="a coordinator's Prometheus URL (e.g. a port-forward of :9100/metrics); a rise in "
        "its failed requests while a shard restarts rolls that shard back and stops (writes "
        "refused UNAVAILABLE do not count: with every replica needed, those to the restarting "
        "shard's buckets wait for it)",
    )
    rs.add_argument(
        "--max-new-errors", type=float, default=0.0, help="failed requests tolerated per shard"
    )
    rs.add_argument(
        "--dry-run",
        action="store_true",
        help="print the kubectl commands, change nothing (reads the StatefulSet's replica count)",
    )
    rs.set_defaults(func=cmd_rollout_shards)


def cmd_rollout_shards(args: argparse.Namespace) -> int:
    from cli.rollout import KubectlFleet, Rollout, RolloutFailed, coordinator_errors
    from client.registry_client import RegistryClient

    if not args.dry_run and not args.metrics_url:
        print("warning: no --metrics-url given: the error-rate check is off", file=sys.stderr)
    fleet = KubectlFleet(
        args.image,
        args.namespace,
        args.statefulset,
        args.container,
        args.kubectl,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        try:  # reads the StatefulSet's replica count, so kubectl must reach it
            plan = [shlex.join(cmd) for cmd in fleet.prepare()] + Rollout(None, fleet).dry_run()
        except RolloutFailed as exc:
            print(f"dry run failed: {exc}", file=sys.stderr)
            return 1
        print("\n".join(plan))
        return 0
    with RegistryClient(args.coordinator, who=args.who or os.environ.get("USER", "rollout")) as reg:
        try:
            fleet.prepare()
            Rollout(
                reg,
                fleet,
                drain_timeout=args.drain_timeout,
                ready_timeout=args.ready_timeout,
                error_count=coordinator_errors(args.metrics_url) if args.metrics_url else None,
                max_new_errors=args.max_new_errors,
            ).run()
        except RolloutFailed as exc:
            print(f"rollout stopped: {exc}", file=sys.stderr)
            return 1
    print(f"all shards of statefulset/{args.statefulset} run {args.image}")
    return 0
