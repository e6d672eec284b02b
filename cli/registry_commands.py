"""`vecshard registry VERB`: registry administration through a coordinator's RegistryService."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cli.refs import split_ref

if TYPE_CHECKING:
    from client.registry_client import RegistryClient

Verb = Callable[[argparse.Namespace], int]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reg = sub.add_parser(
        "registry",
        help="registry administration through a coordinator (apply, promote, switch, ...)",
    )
    verbs = reg.add_subparsers(dest="registry_command", metavar="VERB", required=True)

    def verb(name: str, text: str, func: Verb) -> argparse.ArgumentParser:
        sp = verbs.add_parser(name, help=text)
        sp.add_argument("--coordinator", required=True, help="coordinator address HOST:PORT")
        sp.add_argument("--who", help="recorded in route history (default: $USER)")
        sp.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
        sp.set_defaults(func=func)
        return sp

    ap = verb("apply", "apply YAML specs (kind + spec documents); prints the diff", cmd_apply)
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
    g = verb("get", "one object as JSON", cmd_get)
    g.add_argument(
        "kind", help="EmbeddingFamily, EmbeddingVersion, IndexVersion, Bundle, Route, Tenant, ..."
    )
    g.add_argument("name", help="object name")
    g.add_argument("version", nargs="?", help="version, for versioned kinds")
    ls = verb("list", "objects of one kind", cmd_list)
    ls.add_argument("kind", help="EmbeddingFamily, IndexVersion, Route, Shard, ...")
    pr = verb("promote", "move a version along its status state machine", cmd_promote)
    pr.add_argument("kind", choices=["EmbeddingVersion", "IndexVersion"])
    pr.add_argument("name", help="family or index name")
    pr.add_argument("version", help="version to move")
    pr.add_argument("status", help="validating | ready | production | deprecated | failed")
    sw = verb("switch", "point a route at a bundle (checked for compatibility)", cmd_switch)
    sw.add_argument("route", help="route name")
    sw.add_argument("bundle", help="bundle name")
    sw.add_argument("--canary-bundle", help="bundle for a share of subjects")
    sw.add_argument(
        "--canary-share", type=float, default=0.0, help="share of subjects in the canary, 0..1"
    )
    sw.add_argument("--shadow-bundle", help="bundle searched in the background, only measured")
    sw.add_argument(
        "--expected-revision",
        type=int,
        default=0,
        help="fail if the route moved since this revision (`registry get Route NAME` "
        "and each switch print it)",
    )
    sw.add_argument("--why", default="", help="reason, recorded in route history")
    rb = verb("rollback", "point a route back at its previous bundles", cmd_rollback)
    rb.add_argument("route", help="route name")
    rb.add_argument("--why", default="", help="reason, recorded in route history")
    hi = verb("history", "who changed a route, when, from, to, why", cmd_history)
    hi.add_argument("route", help="route name")
    cc = verb(
        "check-compat", "can a query embedding version query an index version?", cmd_check_compat
    )
    cc.add_argument("query_version", help="NAME@VERSION")
    cc.add_argument("index_version", help="NAME@VERSION")
    for name, text in (
        ("drain", "stop new queries to a shard"),
        ("undrain", "let a shard serve again"),
    ):
        d = verb(name, text, cmd_set_shard_state)
        d.add_argument("shard_id", help="e.g. shard-1")
        d.add_argument("--why", default="", help="reason, recorded with the change")
    rt = verb(
        "retire",
        "take a feature group or set version out of service for good (shards drop a "
        "group's rows; refused while a feature set or route uses it)",
        cmd_retire,
    )
    rt.add_argument("kind", choices=["FeatureGroup", "FeatureSet"])
    rt.add_argument("version", metavar="NAME@VERSION", help="e.g. item_stats@v1")
    rt.add_argument("--why", default="", help="reason, recorded with the retirement")
    rt.add_argument("--dry-run", action="store_true", help="check and show the effects only")
    verb("status", "the registry as the coordinator sees it", cmd_status)
    tp = verb(
        "train-placement", "train centroid placement from sample vectors", cmd_train_placement
    )
    tp.add_argument("index", help="NAME@VERSION of an index version with placement: centroid")
    tp.add_argument("--sample", required=True, help=".npy (n × d float32) or .fvecs file")
    tp.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")


def _registry(args: argparse.Namespace) -> RegistryClient:
    from client.registry_client import RegistryClient

    return RegistryClient(
        args.coordinator, who=args.who or os.environ.get("USER", "cli"), timeout=args.timeout
    )


def cmd_apply(args: argparse.Namespace) -> int:
    text = "\n---\n".join(Path(f).read_text() if f != "-" else sys.stdin.read() for f in args.file)
    with _registry(args) as reg:
        for line in reg.apply(text, dry_run=args.dry_run, why=args.why):
            print(line)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        obj = reg.get(args.kind, args.name, args.version or "")
    print(
        json.dumps({"kind": obj.kind, "mod_revision": obj.mod_revision, "spec": obj.spec}, indent=2)
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        for obj in reg.list(args.kind):
            name = obj.spec.get("name") or obj.spec.get("tenant_id") or obj.spec.get("shard_id", "")
            version = obj.spec.get("version", "")
            status = obj.spec.get("status", obj.spec.get("state", ""))
            if obj.kind == "Retirement":  # which kind, when and by whom
                status = f"{obj.spec['kind']} at {obj.spec['when']} by {obj.spec['who']}"
            print(f"{name:<28} {version:<12} {status:<12} rev {obj.mod_revision}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        obj = reg.promote(args.kind, args.name, args.version, args.status)
    print(f"{obj.kind} {args.name}@{args.version} is now {obj.spec['status']}")
    return 0


def cmd_retire(args: argparse.Namespace) -> int:
    name, _, version = args.version.partition("@")  # the coordinator refuses an empty part
    with _registry(args) as reg:
        record, effects = reg.retire(args.kind, name, version, why=args.why, dry_run=args.dry_run)
    for line in effects:
        print(line)
    if not args.dry_run:
        print(f"retired at {record.spec['when']} by {record.spec['who']}")
    return 0


def cmd_switch(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        obj = reg.switch_route(
            args.route,
            args.bundle,
            canary_bundle=args.canary_bundle or "",
            canary_share=args.canary_share,
            shadow_bundle=args.shadow_bundle or "",
            expected_revision=args.expected_revision,
            why=args.why,
        )
    print(f"route {args.route} → {args.bundle} (rev {obj.mod_revision})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        obj = reg.rollback(args.route, why=args.why)
    print(f"route {args.route} rolled back to bundle {obj.spec['bundle']} (rev {obj.mod_revision})")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        for c in reg.history(args.route):
            before = (c.before or {}).get("bundle", "-")
            after = (c.after or {}).get("bundle", "-")
            print(f"{c.when}  rev {c.revision:<6} {c.who:<14} {before} → {after}  {c.why}")
    return 0


def cmd_check_compat(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        ok, reason = reg.check_compat(args.query_version, args.index_version)
    print("compatible" if ok else f"incompatible: {reason}")
    return 0 if ok else 3


def cmd_set_shard_state(args: argparse.Namespace) -> int:
    state = "draining" if args.registry_command == "drain" else "serving"
    with _registry(args) as reg:
        reg.set_shard_state(args.shard_id, state, args.why)
    print(f"shard {args.shard_id} is now {state}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        st = reg.status()
    print(f"revision {st.revision}, snapshot staleness {st.staleness_seconds:.1f}s")
    for sh in st.shards:
        print(f"  {sh.shard_id:<12} {sh.address:<22} {sh.state}")
    print(f"  routes: {', '.join(st.routes) or 'none'}")
    return 0


def cmd_train_placement(args: argparse.Namespace) -> int:
    name, version = split_ref(args.index, "index")
    sample = _read_sample(Path(args.sample))
    with _registry(args) as reg:
        buckets = reg.train_placement(name, version, sample, seed=args.seed)
    print(f"trained {buckets} centroids for {args.index} from {len(sample)} vectors")
    return 0


def _read_sample(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        sample: np.ndarray = np.load(path)  # np.load is typed Any: it may hold several arrays
        return sample
    from core.vectors import from_bytes

    # .fvecs: per row an int32 dimension, then the float32 values.
    raw = path.read_bytes()
    dim = int(np.frombuffer(raw[:4], dtype="<i4")[0])
    return from_bytes(raw).reshape(-1, dim + 1)[:, 1:]
