"""`vecshard search`, `get` and `describe-route`: the public retrieval API through the SDK."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import numpy as np

from cli.refs import split_ref

if TYPE_CHECKING:
    from client.retrieval_client import RetrievalClient

# Not 1 (an error: no answer) nor 2 (usage): hits were printed, but they are
# the best of the buckets that answered, so a script must not take them for
# the top k.
EXIT_PARTIAL = 3


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "search",
        help="top-k search through a route, by a vector or by a stored item",
        epilog="An answer from only some buckets is printed with a 'partial answer' line "
        f"on stderr and exits {EXIT_PARTIAL}; --require-complete makes it an error instead.",
    )
    _client_args(s)
    s.add_argument("--route", required=True, help="route name, e.g. home_feed")
    s.add_argument("--k", type=int, default=10, help="results to return (default 10)")
    s.add_argument("--vector", help="query vector as comma-separated floats")
    s.add_argument("--like", metavar="ENTITY_ID", help="use a stored item's embedding as the query")
    s.add_argument("--embedding", metavar="NAME@VERSION", help="embedding version for --like")
    s.add_argument("--filter", help='JSON filter, e.g. \'{"eq": {"category": "books"}}\'')
    s.add_argument(
        "--require-complete",
        action="store_true",
        help="fail (UNAVAILABLE or DEADLINE_EXCEEDED) rather than answer from part of the buckets",
    )
    s.set_defaults(func=cmd_search)

    g = sub.add_parser("get", help="fetch stored embeddings by entity id (BatchGetEmbeddings)")
    _client_args(g)
    g.add_argument("--embedding", required=True, metavar="NAME@VERSION", help="embedding version")
    g.add_argument("--vectors", action="store_true", help="print the first values of each vector")
    g.add_argument("ids", nargs="+", help="entity ids")
    g.set_defaults(func=cmd_get)

    d = sub.add_parser(
        "describe-route",
        help="show what a route resolves to (bundle, index, dimension, metric)",
    )
    _client_args(d)
    d.add_argument("route", help="route name")
    d.set_defaults(func=cmd_describe_route)


def _client_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--coordinator", required=True, help="coordinator address HOST:PORT")
    sp.add_argument("--tenant", required=True, help="tenant id the request is scoped to")
    sp.add_argument("--purpose", required=True, help="why the data is read, e.g. recommendation")
    sp.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")


def _client(args: argparse.Namespace) -> RetrievalClient:
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
            (lk,) = c.batch_get(*split_ref(args.embedding), [args.like])
            if lk.status != "found" or lk.vector is None:
                raise SystemExit(f"item {args.like!r} is {lk.status}; cannot search by it")
            vector = lk.vector
        elif args.vector:
            try:
                vector = np.array([float(x) for x in args.vector.split(",")], dtype=np.float32)
            except ValueError:
                raise SystemExit(
                    f"--vector {args.vector!r}: expected numbers separated by commas, "
                    "e.g. 0.1,0.2,0.3"
                ) from None
        else:
            raise SystemExit(
                "give --vector 0.1,0.2,... or --like ENTITY_ID --embedding NAME@VERSION"
            )
        res = c.search(
            args.route, vector, args.k, filter=flt, require_complete=args.require_complete
        )
    print(f"route {res.route} → bundle {res.bundle}, index {res.index}, {res.metric}")
    for h in res.hits:
        print(
            f"{h.rank:>4}  {h.key.entity_type}/{h.key.entity_id:<20} {h.score:>10.5f}  {h.shard_id}"
        )
    if res.partial:
        missing = ", ".join(map(str, res.missing_buckets)) or "not reported"
        print(
            f"partial answer: completeness {res.completeness:.2f}, missing buckets {missing}; "
            "the hits are the best of the buckets that answered",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _client(args) as c:
        for lk in c.batch_get(*split_ref(args.embedding), args.ids, include_vectors=args.vectors):
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
