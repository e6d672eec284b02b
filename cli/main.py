"""The `vecshard` command line."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from core.errors import VecshardError

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
    from cli.local_cluster import LocalCluster

    cluster = LocalCluster(Path(args.data_dir).resolve(), num_shards=args.shards)
    if args.fresh:
        cluster.remove_data()
    stop = threading.Event()
    roll = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # SIGHUP: restart every shard in turn with the rollout protocol (drain →
    # idle → restart → serve), as `vecshard rollout shards` does on Kubernetes.
    signal.signal(signal.SIGHUP, lambda *_: (roll.set(), stop.set()))
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
            from cli.demo import EMBEDDING, PURPOSE, ROUTE, run_demo

            run_demo(cluster.coordinator_address)
            print(
                "\nQuery it from another terminal, e.g.:\n"
                f"  vecshard search --coordinator {cluster.coordinator_address} --route {ROUTE} "
                f"--tenant acme --purpose {PURPOSE} --like item-00042 --embedding {EMBEDDING[0]}@{EMBEDDING[1]}\n"
                f"  vecshard get --coordinator {cluster.coordinator_address} --tenant acme --purpose {PURPOSE} "
                f"--embedding {EMBEDDING[0]}@{EMBEDDING[1]} item-00001 item-00002",
                flush=True,
            )
        if not args.once:
            print(
                "\nServing. Press Ctrl-C to stop (kill -HUP for a rolling restart of the shards).",
                flush=True,
            )
            while True:
                stop.wait()
                if not roll.is_set():
                    break
                roll.clear()
                stop.clear()
                _rolling_restart(cluster)
    finally:
        print("stopping the local cluster ...", flush=True)
        cluster.stop()
        print("stopped.", flush=True)
    return 0


def _rolling_restart(cluster) -> None:  # type: ignore[no-untyped-def]
    from cli.rollout import LocalFleet, Rollout, RolloutFailed
    from client.registry_client import RegistryClient

    print("SIGHUP: rolling restart of every shard", flush=True)
    with RegistryClient(cluster.coordinator_address, who="vecshard up") as reg:
        try:
            Rollout(reg, LocalFleet(cluster), say=lambda m: print(m, flush=True)).run()
            print("rolling restart done", flush=True)
        except RolloutFailed as exc:
            print(f"rolling restart stopped: {exc}", flush=True)


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from client.retrieval_client import RetrievalClient

    return RetrievalClient(
        args.coordinator, tenant_id=args.tenant, purpose=args.purpose, timeout=args.timeout
    )


def cmd_search(args: argparse.Namespace) -> int:
    from cli import filter_syntax

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


def cmd_rollout(args: argparse.Namespace) -> int:
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
        for cmd in fleet.prepare():
            print(shlex.join(cmd))
        for line in Rollout(None, fleet).dry_run():
            print(line)
        return 0
    with RegistryClient(args.coordinator, who=args.who or os.environ.get("USER", "rollout")) as reg:
        fleet.prepare()
        try:
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


def cmd_features(args: argparse.Namespace) -> int:
    from client.registry_client import RegistryClient
    from offline.materialize import GrpcFeatureSink, MaterializeJob, materialize
    from offline.parquet_store import OfflineStore
    from registry import codec
    from registry.feature_catalog import FeatureCatalog

    with RegistryClient(args.coordinator) as reg:
        objs = [
            codec.from_dict(codec.KINDS[kind], o.spec)
            for kind in ("FeatureDefinition", "FeatureGroup", "FeatureSet")
            for o in reg.list(kind)
        ]
    catalog = FeatureCatalog.build(objs)  # type: ignore[arg-type]
    name, version = _split_ref(args.group)
    from core.domain import VersionRef

    schema = catalog.schema(VersionRef(name, version))
    job = MaterializeJob(schema, args.start, args.end, args.batch_size)
    checkpoint = Path(args.checkpoint or f".vecshard/materialize-{name}-{version}.json")
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    sink = GrpcFeatureSink(args.coordinator)
    try:
        report = materialize(job, OfflineStore(Path(args.offline)), sink, checkpoint)
    finally:
        sink.close()
    print(
        f"materialized {report.rows} rows of {args.group} from {report.files} file(s): "
        f"{report.written} written, {report.ignored_older} older than stored; "
        f"{report.skipped_batches} batch(es) were done by an earlier run (checkpoint {checkpoint})"
    )
    return 0


def _registry(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from client.registry_client import RegistryClient

    return RegistryClient(
        args.coordinator, who=args.who or os.environ.get("USER", "cli"), timeout=args.timeout
    )


def cmd_registry(args: argparse.Namespace) -> int:
    import json

    verb = args.registry_command
    with _registry(args) as reg:
        if verb == "apply":
            text = "\n---\n".join(
                Path(f).read_text() if f != "-" else sys.stdin.read() for f in args.file
            )
            for line in reg.apply(text, dry_run=args.dry_run, why=args.why):
                print(line)
        elif verb == "get":
            obj = reg.get(args.kind, args.name, args.version or "")
            print(
                json.dumps(
                    {"kind": obj.kind, "mod_revision": obj.mod_revision, "spec": obj.spec}, indent=2
                )
            )
        elif verb == "list":
            for obj in reg.list(args.kind):
                name = (
                    obj.spec.get("name")
                    or obj.spec.get("tenant_id")
                    or obj.spec.get("shard_id", "")
                )
                version = obj.spec.get("version", "")
                status = obj.spec.get("status", obj.spec.get("state", ""))
                print(f"{name:<28} {version:<12} {status:<12} rev {obj.mod_revision}")
        elif verb == "promote":
            obj = reg.promote(args.kind, args.name, args.version, args.status)
            print(f"{obj.kind} {args.name}@{args.version} is now {obj.spec['status']}")
        elif verb == "switch":
            reg.switch_route(
                args.route,
                args.bundle,
                canary_bundle=args.canary_bundle or "",
                canary_share=args.canary_share,
                shadow_bundle=args.shadow_bundle or "",
                expected_revision=args.expected_revision,
                why=args.why,
            )
            print(f"route {args.route} → {args.bundle}")
        elif verb == "rollback":
            obj = reg.rollback(args.route, why=args.why)
            print(f"route {args.route} rolled back to bundle {obj.spec['bundle']}")
        elif verb == "history":
            for c in reg.history(args.route):
                before = (c.before or {}).get("bundle", "-")
                after = (c.after or {}).get("bundle", "-")
                print(f"{c.when}  rev {c.revision:<6} {c.who:<14} {before} → {after}  {c.why}")
        elif verb == "check-compat":
            ok, reason = reg.check_compat(args.query_version, args.index_version)
            print("compatible" if ok else f"incompatible: {reason}")
            return 0 if ok else 3
        elif verb in ("drain", "undrain"):
            reg.set_shard_state(
                args.shard_id, "draining" if verb == "drain" else "serving", args.why
            )
            print(f"shard {args.shard_id} is now {'draining' if verb == 'drain' else 'serving'}")
        elif verb == "train-placement":
            import numpy as np

            name, version = _split_ref(args.index)
            path = Path(args.sample)
            if path.suffix == ".npy":
                sample = np.load(path)
            else:
                from core.vectors import from_bytes

                raw = path.read_bytes()
                dim = int(np.frombuffer(raw[:4], dtype="<i4")[0])
                sample = from_bytes(raw).reshape(-1, dim + 1)[
                    :, 1:
                ]  # .fvecs: int32 dim, then floats
            buckets = reg.train_placement(name, version, sample, seed=args.seed)
            print(f"trained {buckets} centroids for {args.index} from {len(sample)} vectors")
        elif verb == "status":
            st = reg.status()
            print(f"revision {st.revision}, snapshot staleness {st.staleness_seconds:.1f}s")
            for sh in st.shards:
                print(f"  {sh.shard_id:<12} {sh.address:<22} {sh.state}")
            print(f"  routes: {', '.join(st.routes) or 'none'}")
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

    fe = sub.add_parser("features", help="feature store jobs")
    fe_sub = fe.add_subparsers(dest="features_command", metavar="JOB", required=True)
    mat = fe_sub.add_parser(
        "materialize",
        help="copy a feature group from the offline store (Parquet) into the online store; "
        "resumable (checkpoint) and idempotent",
    )
    mat.add_argument("--group", required=True, metavar="NAME@VERSION")
    mat.add_argument("--offline", required=True, help="offline store root directory")
    mat.add_argument("--coordinator", required=True, help="coordinator address HOST:PORT")
    mat.add_argument("--start", help="first day YYYY-MM-DD (default: all)")
    mat.add_argument("--end", help="last day YYYY-MM-DD (default: all)")
    mat.add_argument("--batch-size", type=int, default=10_000)
    mat.add_argument(
        "--checkpoint", help="resume file (default .vecshard/materialize-GROUP-VERSION.json)"
    )
    mat.set_defaults(func=cmd_features)

    ro = sub.add_parser("rollout", help="roll shard servers to a new image, one shard at a time")
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
    rs.add_argument("--namespace", default="vecshard")
    rs.add_argument("--statefulset", default="vecshard-shard")
    rs.add_argument("--container", default="shard")
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
        "its failed requests while a shard restarts rolls that shard back and stops",
    )
    rs.add_argument(
        "--max-new-errors", type=float, default=0.0, help="failed requests tolerated per shard"
    )
    rs.add_argument(
        "--dry-run", action="store_true", help="print the kubectl commands, change nothing"
    )
    rs.set_defaults(func=cmd_rollout)

    reg = sub.add_parser("registry", help="registry administration through a coordinator")
    reg_sub = reg.add_subparsers(dest="registry_command", metavar="VERB", required=True)

    def reg_args(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--coordinator", required=True, help="coordinator address HOST:PORT")
        sp.add_argument("--who", help="recorded in route history (default: $USER)")
        sp.add_argument("--timeout", type=float, default=10.0)
        sp.set_defaults(func=cmd_registry)
        return sp

    ap = reg_args(
        reg_sub.add_parser(
            "apply", help="apply YAML specs (kind + spec documents); prints the diff"
        )
    )
    ap.add_argument(
        "-f",
        "--file",
        action="append",
        required=True,
        help="spec file, or - for stdin (repeatable)",
    )
    ap.add_argument(
        "--dry-run", action="store_true", help="validate and show the diff, change nothing"
    )
    ap.add_argument("--why", default="", help="reason, recorded in route history")
    g = reg_args(reg_sub.add_parser("get", help="one object as JSON"))
    g.add_argument(
        "kind", help="EmbeddingFamily, EmbeddingVersion, IndexVersion, Bundle, Route, Tenant, ..."
    )
    g.add_argument("name")
    g.add_argument("version", nargs="?")
    ls = reg_args(reg_sub.add_parser("list", help="objects of one kind"))
    ls.add_argument("kind")
    pr = reg_args(
        reg_sub.add_parser("promote", help="move a version along its status state machine")
    )
    pr.add_argument("kind", choices=["EmbeddingVersion", "IndexVersion"])
    pr.add_argument("name")
    pr.add_argument("version")
    pr.add_argument("status", help="validating | ready | production | deprecated | failed")
    sw = reg_args(
        reg_sub.add_parser("switch", help="point a route at a bundle (checked for compatibility)")
    )
    sw.add_argument("route")
    sw.add_argument("bundle")
    sw.add_argument("--canary-bundle")
    sw.add_argument(
        "--canary-share", type=float, default=0.0, help="share of subjects in the canary, 0..1"
    )
    sw.add_argument("--shadow-bundle")
    sw.add_argument(
        "--expected-revision",
        type=int,
        default=0,
        help="fail if the route moved since this revision",
    )
    sw.add_argument("--why", default="")
    rb = reg_args(reg_sub.add_parser("rollback", help="point a route back at its previous bundles"))
    rb.add_argument("route")
    rb.add_argument("--why", default="")
    hi = reg_args(reg_sub.add_parser("history", help="who changed a route, when, from, to, why"))
    hi.add_argument("route")
    cc = reg_args(
        reg_sub.add_parser(
            "check-compat", help="can a query embedding version query an index version?"
        )
    )
    cc.add_argument("query_version", help="NAME@VERSION")
    cc.add_argument("index_version", help="NAME@VERSION")
    for verb, text in (
        ("drain", "stop new queries to a shard"),
        ("undrain", "let a shard serve again"),
    ):
        d = reg_args(reg_sub.add_parser(verb, help=text))
        d.add_argument("shard_id")
        d.add_argument("--why", default="")
    reg_args(reg_sub.add_parser("status", help="the registry as the coordinator sees it"))
    tp = reg_args(
        reg_sub.add_parser("train-placement", help="train centroid placement from sample vectors")
    )
    tp.add_argument("index", help="NAME@VERSION of an index version with placement: centroid")
    tp.add_argument("--sample", required=True, help=".npy (n × d float32) or .fvecs file")
    tp.add_argument("--seed", type=int, default=0)
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
