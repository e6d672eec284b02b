"""What `vecshard loadtest` sends, and where: a running coordinator (``--coordinator``,
queries from a file or random, lookups of given ids) or a local cluster it starts with a
synthetic data set (``--local``), each with its request kinds and default mix."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_cluster import PURPOSE, TENANT, BenchCluster, IndexPlan, row_ids
from benchmarks.index_kinds import KINDS, configure, default_sweeps
from benchmarks.request_mix import (
    RequestKind,
    access_context,
    batch_get_requests,
    json_request_kind,
    search_requests,
)
from benchmarks.run_record import scratch_directory
from benchmarks.synthetic_data import CATEGORIES, gaussian_mixture
from benchmarks.vecs_files import read_vecs
from cli import filter_syntax
from client.retrieval_client import RetrievalClient
from core.domain import AttrType
from core.filters import And, Eq, Filter, Range

LOCAL_ATTRIBUTES = {"category": AttrType.STRING, "price": AttrType.FLOAT, "year": AttrType.INT}
Say = Callable[[str], None]


@dataclass
class Target:
    address: str
    kinds: dict[str, RequestKind]
    default_mix: str
    description: dict[str, Any] = field(default_factory=dict)
    cluster: BenchCluster | None = None


def local_filters() -> list[Filter]:
    """Filters of varied selectivity over the synthetic attributes (1/8 to ~1/30 of rows)."""
    out: list[Filter] = [Eq("category", c) for c in CATEGORIES]
    out += [Range("price", lt=10.0), And((Eq("category", "books"), Range("year", gte=2015)))]
    return out


def json_kinds(args: argparse.Namespace) -> dict[str, RequestKind]:
    """``--request NAME=RPC:FILE.json``: any RPC, one request or a list of them per file."""
    out = {}
    access = access_context(args.tenant or TENANT, args.purpose or PURPOSE)
    for item in args.request:
        name, sep, rest = item.partition("=")
        rpc, colon, path = rest.partition(":")
        if not (sep and colon and name and rpc and path):
            raise SystemExit(f"--request {item!r}: expected NAME=RPC:FILE.json")
        body = json.loads(Path(path).read_text())
        try:
            out[name] = json_request_kind(
                name, rpc, body if isinstance(body, list) else [body], access
            )
        except (LookupError, ValueError) as exc:
            raise SystemExit(f"--request {item!r}: {exc}") from None
    return out


@contextlib.contextmanager
def local_target(args: argparse.Namespace, say: Say) -> Iterator[Target]:
    sweeps = configure(default_sweeps(args.n, args.dim), args.param, [])
    if args.kind not in sweeps:
        raise SystemExit(f"--kind {args.kind!r}: expected one of {list(KINDS)}")
    data = gaussian_mixture(args.n, args.dim, max(8, args.n // 1000), 1000, args.seed)
    attrs = {name: data.attributes[name] for name in LOCAL_ATTRIBUTES}
    plan = IndexPlan(f"loadtest_{args.kind}", args.kind, sweeps[args.kind].params)
    with scratch_directory("vecshard-loadtest-", args.data_dir) as tmp:
        say(f"starting a local cluster: etcd, {args.shards} shard(s), a coordinator")
        cluster = BenchCluster.local(
            Path(tmp),
            args.shards,
            env=dict(item.split("=", 1) for item in args.cluster_env),
            dim=args.dim,
            metric="l2",
            attributes=LOCAL_ATTRIBUTES,
        )
        with cluster:
            cluster.add_index(plan)
            took = cluster.ingest(data.base, attrs)
            build = cluster.build_index(plan.name, settle_timeout=600)
            served = build["rows_by_segment_kind"]
            say(
                f"ingested {args.n}×{args.dim} in {took:.1f} s, built in {build['seconds']:.1f} s; "
                f"rows by segment kind {served}; coordinator {cluster.address}"
            )
            if {kind for kind, rows in served.items() if rows} != {args.kind}:
                say(f"note: this {args.kind} index version is served by {served} (this build)")
            access = access_context(TENANT, PURPOSE)
            kinds = {
                "search": RequestKind(
                    "search", "Search", search_requests(plan.route, access, data.queries, args.k)
                ),
                "search_filtered": RequestKind(
                    "search_filtered",
                    "Search",
                    search_requests(plan.route, access, data.queries, args.k, local_filters()),
                ),
                "batch_get": RequestKind(
                    "batch_get",
                    "BatchGetEmbeddings",
                    batch_get_requests(
                        access,
                        ("bench_items", "v1"),
                        row_ids(args.n),
                        args.keys_per_lookup,
                        500,
                        args.seed,
                    ),
                ),
                **json_kinds(args),
            }
            yield Target(
                cluster.address,
                kinds,
                "search=70,search_filtered=20,batch_get=10",
                {
                    "mode": "local",
                    "shards": args.shards,
                    "n": args.n,
                    "dim": args.dim,
                    "index_kind": args.kind,
                    "index_params": dict(plan.params),
                    "rows_by_segment_kind": served,
                    "ingest_seconds": took,
                },
                cluster,
            )


@contextlib.contextmanager
def remote_target(args: argparse.Namespace) -> Iterator[Target]:
    missing = [f"--{n}" for n in ("route", "tenant", "purpose") if not getattr(args, n)]
    if missing:
        raise SystemExit(f"--coordinator needs {' '.join(missing)}")
    with RetrievalClient(args.coordinator, tenant_id=args.tenant, purpose=args.purpose) as c:
        info = c.describe_route(args.route)
    if args.queries_file:
        queries = read_vecs(args.queries_file).astype(np.float32)
        if queries.shape[1] != info.dimension:
            raise SystemExit(
                f"--queries-file has dimension {queries.shape[1]}, route {args.route!r} expects "
                f"{info.dimension}"
            )
    else:
        rng = np.random.default_rng(args.seed)
        queries = rng.normal(size=(1000, info.dimension)).astype(np.float32)
    access = access_context(args.tenant, args.purpose)
    kinds = {
        "search": RequestKind(
            "search", "Search", search_requests(args.route, access, queries, args.k)
        )
    }
    weights = ["search=70"]
    if args.filter:
        filters = [filter_syntax.parse(f) for f in args.filter]
        kinds["search_filtered"] = RequestKind(
            "search_filtered",
            "Search",
            search_requests(args.route, access, queries, args.k, filters),
        )
        weights.append("search_filtered=20")
    if args.embedding:
        name, _, version = args.embedding.partition("@")
        if args.lookup_ids:
            ids = [
                line.strip()
                for line in Path(args.lookup_ids).read_text().splitlines()
                if line.strip()
            ]
        else:
            ids = [args.lookup_id_template.format(i) for i in range(args.lookup_id_count)]
        kinds["batch_get"] = RequestKind(
            "batch_get",
            "BatchGetEmbeddings",
            batch_get_requests(access, (name, version), ids, args.keys_per_lookup, 500, args.seed),
        )
        weights.append("batch_get=10")
    extra = json_kinds(args)
    kinds.update(extra)
    weights += [f"{n}=10" for n in extra]
    yield Target(
        args.coordinator,
        kinds,
        ",".join(weights),
        {"mode": "remote", "route": args.route, "index": info.index, "dimension": info.dimension},
    )


def open_target(args: argparse.Namespace, say: Say) -> contextlib.AbstractContextManager[Target]:
    if args.local == bool(args.coordinator):
        raise SystemExit("give exactly one of --local or --coordinator HOST:PORT")
    return local_target(args, say) if args.local else remote_target(args)
