"""`vecshard features materialize`: copy a feature group from Parquet into the online store."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from cli.extras import require_extra
from cli.refs import split_ref


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fe = sub.add_parser(
        "features",
        help="feature store jobs (materialize Parquet into the online store)",
    )
    fe_sub = fe.add_subparsers(dest="features_command", metavar="JOB", required=True)
    mat = fe_sub.add_parser(
        "materialize",
        help="copy a feature group from the offline store (Parquet) into the online store; "
        "resumable (checkpoint) and idempotent",
    )
    mat.add_argument("--group", required=True, metavar="NAME@VERSION", help="feature group version")
    mat.add_argument("--offline", required=True, help="offline store root directory")
    mat.add_argument("--coordinator", required=True, help="coordinator address HOST:PORT")
    mat.add_argument(
        "--purpose",
        default="materialization",
        help="the purpose the writes are made for (default materialization): every tenant in "
        "the data must allow it, and your grant must hold it",
    )
    mat.add_argument("--start", type=_day, help="first day YYYY-MM-DD (default: all)")
    mat.add_argument("--end", type=_day, help="last day YYYY-MM-DD (default: all)")
    mat.add_argument(
        "--batch-size", type=int, default=10_000, help="rows per write (default 10000)"
    )
    mat.add_argument(
        "--checkpoint", help="resume file (default .vecshard/materialize-GROUP-VERSION.json)"
    )
    mat.set_defaults(func=cmd_materialize)


def _day(text: str) -> str:
    """A day as the offline store names its partitions (date=YYYY-MM-DD): days
    are compared as text there, so 2024-1-5 would select from 2024-10-01 on."""
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a day YYYY-MM-DD") from None


def cmd_materialize(args: argparse.Namespace) -> int:
    if args.start and args.end and args.start > args.end:
        raise SystemExit(
            f"--start {args.start} is after --end {args.end}: no day would be materialized"
        )
    require_extra("vecshard features materialize", "offline")
    from client.registry_client import RegistryClient
    from core.domain import VersionRef
    from offline.materialize import GrpcFeatureSink, MaterializeJob, materialize
    from offline.parquet_store import OfflineStore
    from registry import codec
    from registry.feature_catalog import FeatureCatalog

    name, version = split_ref(args.group, "--group")
    with RegistryClient(args.coordinator) as reg:
        objs = [
            codec.from_dict(codec.KINDS[kind], o.spec)
            for kind in ("FeatureDefinition", "FeatureGroup", "FeatureSet")
            for o in reg.list(kind)
        ]
    catalog = FeatureCatalog.build(objs)
    schema = catalog.schema(VersionRef(name, version))
    job = MaterializeJob(
        schema, args.start, args.end, args.batch_size, destination=args.coordinator
    )
    checkpoint = Path(args.checkpoint or f".vecshard/materialize-{name}-{version}.json")
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    sink = GrpcFeatureSink(args.coordinator, args.purpose)
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
