"""The `vecshard` command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from protos.errors import VecshardError

# Commands that run as their own module in a fresh interpreter: the servers
# (client must not import server code, DESIGN §1) and the benchmark tools
# (benchmarks build on client, not the other way round).
SERVER_ROLES = {
    "shard": "shard_server",
    "coordinator": "coordinator",
    "bench": "benchmarks.search_bench",
    "loadtest": "benchmarks.loadtest",
}


def _exec_server(module: str, argv: list[str]) -> int:
    # The client package must not import server code (DESIGN §1), so server
    # roles run as their own modules in a fresh interpreter.
    os.execv(sys.executable, [sys.executable, "-m", module, *argv])
    return 1  # not reached


def _split_ref(text: str) -> tuple[str, str]:
    name, sep, version = text.partition("@")
    if not sep or not name or not version:
        raise SystemExit(f"--embedding {text!r}: expected NAME@VERSION, e.g. demo_items@v1")
    return name, version


def cmd_up(args: argparse.Namespace) -> int:
    from client.local_cluster import LocalCluster
    from registry.registry import Registry
    from registry.store import EtcdStore

    cluster = LocalCluster(Path(args.data_dir).resolve(), num_shards=args.shards)
    if args.fresh:
        cluster.remove_data()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        f"starting etcd, {args.shards} shard(s) and a coordinator (data in {cluster.data_dir}) ...",
        flush=True,
    )
    try:
        cluster.start()
        assert cluster.etcd is not None and cluster.coordinator is not None
        print("vecshard local cluster is up:")
        print(f"  {'etcd':<12} {cluster.endpoint:<22} pid {cluster.etcd.child.pid}")
        for sid, child in cluster.shards.items():
            r = child.ready or {}
            print(
                f"  {sid:<12} {r.get('grpc', '?'):<22} pid {child.pid}  metrics http://127.0.0.1:{r.get('metrics')}/metrics"
            )
        r = cluster.coordinator.ready or {}
        print(
            f"  {'coordinator':<12} {cluster.coordinator_address:<22} pid {cluster.coordinator.pid}  "
            f"metrics http://127.0.0.1:{r.get('metrics')}/metrics"
        )
        print(f"  logs in {cluster.logs}", flush=True)
        if args.demo:
            from client.demo import EMBEDDING, PURPOSE, ROUTE, run_demo

            store = EtcdStore(cluster.endpoint)
            try:
                run_demo(
                    Registry(store, cluster.etcd_prefix),
                    cluster.coordinator_address,
                    cluster.shard_ids(),
                )
            finally:
                store.close()
            print(
                "\nQuery it from another terminal, e.g.:\n"
                f"  vecshard search --coordinator {cluster.coordinator_address} --route {ROUTE} "
                f"--tenant acme --purpose {PURPOSE} --like item-00042 --embedding {EMBEDDING[0]}@{EMBEDDING[1]}\n"
                f"  vecshard get --coordinator {cluster.coordinator_address} --tenant acme --purpose {PURPOSE} "
                f"--embedding {EMBEDDING[0]}@{EMBEDDING[1]} item-00001 item-00002",
                flush=True,
            )
        if not args.once:
            print("\nServing. Press Ctrl-C to stop.", flush=True)
            stop.wait()
    finally:
        print("stopping the local cluster ...", flush=True)
        cluster.stop()
        print("stopped.", flush=True)
    return 0


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from client.retrieval_client import RetrievalClient

    return RetrievalClient(
        args.coordinator, tenant_id=args.tenant, purpose=args.purpose, timeout=args.timeout
    )


def cmd_search(args: argparse.Namespace) -> int:
    from client import filter_syntax

    flt = filter_syntax.parse(args.filter) if args.filter else None
    with _client(args) as c:
        if args.like:
            if not args.embedding:
                raise SystemExit("--like needs --embedding NAME@VERSION to look the item up")
            (lk,) = c.batch_get(*_split_ref(args.embedding), [args.like])
            if lk.status != "found" or lk.vector is None:
                raise SystemExit(f"item {args.like!r} is {lk.status}; cannot search by it")
            vector = lk.vector
        elif args.vector:
            vector = np.array([float(x) for x in args.vector.split(",")], dtype=np.float32)
        else:
            raise SystemExit(
                "give --vector 0.1,0.2,... or --like ENTITY_ID --embedding NAME@VERSION"
            )
        res = c.search(args.route, vector, args.k, filter=flt)
    print(f"route {res.route} → bundle {res.bundle}, index {res.index}, {res.metric}")
    for h in res.hits:
        print(
            f"{h.rank:>4}  {h.key.entity_type}/{h.key.entity_id:<20} {h.score:>10.5f}  {h.shard_id}"
        )
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _client(args) as c:
        for lk in c.batch_get(*_split_ref(args.embedding), args.ids, include_vectors=args.vectors):
            line = f"{lk.key.entity_id:<20} {lk.status:<8}"
            if lk.status == "found":
                line += f" norm={lk.norm:.4f} source_version={lk.source_version} attributes={dict(lk.attributes)}"
                if args.vectors and lk.vector is not None:
                    line += f" vector={np.array2string(lk.vector[:8], precision=3)}..."
            print(line)
    return 0


def cmd_describe_route(args: argparse.Namespace) -> int:
    with _client(args) as c:
        info = c.describe_route(args.route)
    for field_name, value in vars(info).items():
        print(f"{field_name:<16} {dict(value) if field_name == 'attributes' else value}")
    return 0


def cmd_registry_apply(args: argparse.Namespace) -> int:
    from client.spec import apply, load_documents
    from registry.registry import Registry
    from registry.store import EtcdStore

    store = EtcdStore(args.etcd)
    try:
        registry = Registry(store, args.etcd_prefix)
        shard_ids = args.shards.split(",") if args.shards else sorted(registry.snapshot().shards)
        for path in args.file:
            for line in apply(registry, load_documents(Path(path)), shard_ids):
                print(line)
    finally:
        store.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vecshard",
        description="vecshard: sharded vector retrieval and feature serving over gRPC.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser("up", help="run a local cluster (etcd, shards, coordinator) on loopback")
    up.add_argument("--shards", type=int, default=3, help="number of shard servers (default 3)")
    up.add_argument("--data-dir", default=".vecshard/local", help="where all data and logs go")
    up.add_argument(
        "--demo", action="store_true", help="load a demo data set and run example queries"
    )
    up.add_argument(
        "--once", action="store_true", help="stop everything after start-up (and the demo)"
    )
    up.add_argument("--fresh", action="store_true", help="delete the data directory first")
    up.set_defaults(func=cmd_up)

    for role, module in SERVER_ROLES.items():
        sp = sub.add_parser(
            role, help=f"run a {role} server (see `vecshard {role} --help`)", add_help=False
        )
        sp.set_defaults(module=module)

    def client_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--coordinator", required=True, help="coordinator address HOST:PORT")
        sp.add_argument("--tenant", required=True, help="tenant id the request is scoped to")
        sp.add_argument(
            "--purpose", required=True, help="why the data is read, e.g. recommendation"
        )
        sp.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")

    s = sub.add_parser("search", help="top-k search through a route")
    client_args(s)
    s.add_argument("--route", required=True)
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--vector", help="comma-separated floats")
    s.add_argument("--like", metavar="ENTITY_ID", help="use a stored item's embedding as the query")
    s.add_argument("--embedding", metavar="NAME@VERSION", help="embedding version for --like")
    s.add_argument("--filter", help='JSON filter, e.g. \'{"eq": {"category": "books"}}\'')
    s.set_defaults(func=cmd_search)

    g = sub.add_parser("get", help="BatchGetEmbeddings by entity id")
    client_args(g)
    g.add_argument("--embedding", required=True, metavar="NAME@VERSION")
    g.add_argument("--vectors", action="store_true", help="print the first values of each vector")
    g.add_argument("ids", nargs="+")
    g.set_defaults(func=cmd_get)

    d = sub.add_parser("describe-route", help="what a route resolves to")
    client_args(d)
    d.add_argument("route")
    d.set_defaults(func=cmd_describe_route)

    reg = sub.add_parser("registry", help="registry administration")
    reg_sub = reg.add_subparsers(dest="registry_command", metavar="VERB", required=True)
    ap = reg_sub.add_parser("apply", help="apply YAML specs (kind + spec documents)")
    ap.add_argument("-f", "--file", action="append", required=True, help="spec file (repeatable)")
    ap.add_argument("--etcd", default="127.0.0.1:2379", help="etcd endpoint HOST:PORT")
    ap.add_argument("--etcd-prefix", default="/vecshard/v1/")
    ap.add_argument(
        "--shards", help="comma-separated shard ids for new index versions (default: registered)"
    )
    ap.set_defaults(func=cmd_registry_apply)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SERVER_ROLES:
        return _exec_server(SERVER_ROLES[argv[0]], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except VecshardError as exc:
        print(f"error ({exc.code.name}): {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
