"""`vecshard embeddings`: model changes as jobs (DESIGN §11) — backfill a new
embedding version from Parquet, copy live writes into it while that runs
(dual-write), evaluate it before promotion, and add a filterable attribute
to the records of an index version without re-embedding them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.extras import require_extra
from cli.refs import split_ref


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    em = sub.add_parser(
        "embeddings",
        help="model changes: backfill a new embedding version, dual-write, evaluate",
    )
    em_sub = em.add_subparsers(dest="embeddings_command", metavar="JOB", required=True)

    bf = em_sub.add_parser(
        "backfill",
        help="write every vector of a Parquet dataset into an embedding version: validated, "
        "checkpointed per file (resumable, idempotent), rate-limited, with a dead-letter file",
    )
    bf.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="PARQUET_DATASET",
        help="a Parquet file or a directory of them (columns tenant_id, entity_type, "
        "entity_id, vector, source_version or created_at; optional model_version, "
        "attributes as JSON)",
    )
    bf.add_argument(
        "--to",
        dest="target",
        required=True,
        metavar="NAME@VERSION",
        help="the embedding version to write",
    )
    bf.add_argument("--coordinator", required=True, help="coordinator address(es) HOST:PORT[,...]")
    bf.add_argument(
        "--purpose",
        default="backfill",
        help="the purpose the writes are made for (default backfill): every tenant in the data "
        "must allow it, and your grant must hold it",
    )
    bf.add_argument(
        "--batch-size", type=int, default=1000, help="rows per write, at least 1 (default 1000)"
    )
    bf.add_argument(
        "--max-rows-per-s",
        type=float,
        default=0.0,
        help="rate limit in rows per second (default: none)",
    )
    bf.add_argument(
        "--checkpoint", help="resume file (default .vecshard/backfill-NAME-VERSION.json)"
    )
    bf.add_argument(
        "--dead-letter", help="directory for rejected rows (default: beside the checkpoint)"
    )
    bf.add_argument(
        "--norm-reference",
        default="self",
        metavar="self|off|PARQUET_DATASET",
        help="norm distribution rows are judged against: the dataset's own first rows "
        "(self, default), the family's history (an earlier version's dataset), or off",
    )
    bf.add_argument(
        "--max-reject-share",
        type=float,
        default=0.5,
        help="stop when a file has more rejected rows than this share (default 0.5)",
    )
    bf.set_defaults(func=cmd_backfill)

    ev = em_sub.add_parser(
        "evaluate",
        help="measure an index version (recall vs exact, canary recall, overlap with production, "
        "coverage) and store the result with it (only while it is building or validating: a "
        "ready or production version keeps the evaluation it was promoted on, and the command "
        "says 'not stored'); exit 1 when a gate fails",
    )
    ev.add_argument("index", metavar="NAME@VERSION", help="the index version")
    ev.add_argument("--coordinator", required=True, help="coordinator address(es) HOST:PORT[,...]")
    ev.add_argument("--source", help="the backfill's Parquet dataset (coverage and overlap)")
    ev.add_argument("--k", type=int, help="k (default: the gates' k, else 10)")
    ev.add_argument("--canary-set", help="NAME@VERSION (default: the gates' canary set)")
    ev.add_argument(
        "--sample",
        type=int,
        default=200,
        help="stored vectors per shard for recall (1..10,000); the gates' min_recall_sample "
        "(default 100) counts the queries of all shards together",
    )
    ev.add_argument(
        "--coverage-attribute",
        action="append",
        default=[],
        help="report coverage by this attribute's values (repeatable)",
    )
    ev.set_defaults(func=cmd_evaluate)

    dw = em_sub.add_parser(
        "dual-write",
        help="copy every upsert and delete of a family's old version also into the new one "
        "(through the coordinators) while a backfill runs; --off ends it. Refused while a "
        "centroid-placed index of the new version is untrained or one of its indexes types an "
        "attribute of the old version's otherwise",
    )
    dw.add_argument("family", help="embedding family name")
    dw.add_argument("--from", dest="from_version", required=True, help="old version")
    dw.add_argument("--to", dest="to_version", required=True, help="new version")
    dw.add_argument("--off", action="store_true", help="stop copying")
    dw.add_argument("--coordinator", required=True, help="coordinator address(es) HOST:PORT[,...]")
    dw.add_argument("--why", default="", help="reason, kept with the setting")
    dw.set_defaults(func=cmd_dual_write)

    aa = em_sub.add_parser(
        "add-attribute",
        help="add a filterable attribute to an index version and set it on the records it "
        "holds (a default or a computed column), without re-embedding",
    )
    aa.add_argument("index", metavar="NAME@VERSION", help="the index version")
    aa.add_argument("--name", required=True, help="attribute name")
    aa.add_argument("--type", required=True, choices=["string", "int", "float", "string_list"])
    aa.add_argument(
        "--keys",
        required=True,
        metavar="PARQUET_DATASET",
        help="the records to set it on (columns tenant_id, entity_type, entity_id)",
    )
    value = aa.add_mutually_exclusive_group(required=True)
    value.add_argument("--default", help="the value every record gets")
    value.add_argument("--value-column", help="a column of --keys holding each record's value")
    aa.add_argument("--coordinator", required=True, help="coordinator address(es) HOST:PORT[,...]")
    aa.set_defaults(func=cmd_add_attribute)


def cmd_backfill(args: argparse.Namespace) -> int:
    require_extra("vecshard embeddings backfill", "offline")
    from client.registry_client import RegistryClient
    from core.domain import VersionRef
    from offline.backfill import (
        BackfillJob,
        ClientVectorSink,
        backfill,
        check_limits,
        reference_from_file,
        source_files,
    )

    check_limits(args.batch_size, args.max_rows_per_s, args.max_reject_share)  # before any I/O

    name, version = split_ref(args.target, "--to")
    with RegistryClient(args.coordinator) as reg:
        family = reg.get("EmbeddingFamily", name).spec
        reg.get("EmbeddingVersion", name, version)  # NOT_FOUND before anything is read
    source = Path(args.source)
    dim = int(family["dimension"])
    reference = None
    if args.norm_reference == "self":
        reference = reference_from_file(source_files(source)[0], dim)
    elif args.norm_reference != "off":
        reference = reference_from_file(source_files(Path(args.norm_reference))[0], dim)
    job = BackfillJob(
        source,
        VersionRef(name, version),
        dim,
        str(family["entity_type"]),
        args.batch_size,
        args.max_rows_per_s,
        reference,
        args.max_reject_share,
        destination=args.coordinator,
    )
    checkpoint = Path(args.checkpoint or f".vecshard/backfill-{name}-{version}.json")
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    dead = Path(args.dead_letter or checkpoint.with_suffix("").as_posix() + "-rejected")
    sink = ClientVectorSink(args.coordinator, args.purpose)
    try:
        report = backfill(job, sink, checkpoint, dead)
    finally:
        sink.close()
    rejected = ", ".join(f"{r}={n}" for r, n in sorted(report.rejected.items())) or "none"
    print(
        f"backfilled {report.written} rows into {args.target} from {report.files} file(s) in "
        f"{report.seconds:.1f}s ({report.rows_per_second:,.0f} rows/s); "
        f"{report.ignored_stale} older than stored; rejected: {rejected} (dead letters in {dead}); "
        f"{report.skipped_batches} batch(es) done by an earlier run (checkpoint {checkpoint})"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    require_extra("vecshard embeddings evaluate", "offline")
    from core.domain import VersionRef
    from offline.evaluation import EvaluateJob, Evaluation
    from registry import codec

    name, version = split_ref(args.index, "index")
    job = EvaluateJob(
        VersionRef(name, version),
        k=args.k,
        canary_set=args.canary_set,
        source=Path(args.source) if args.source else None,
        recall_sample_per_shard=args.sample,
        coverage_attributes=tuple(args.coverage_attribute),
    )
    evaluation, failures, not_stored = Evaluation(args.coordinator, job).run()
    print(json.dumps(json.loads(codec.encode(evaluation))["spec"], indent=2, sort_keys=True))
    if not_stored:
        print(not_stored, file=sys.stderr)
    if failures:
        print(f"{args.index} fails its gates: " + "; ".join(failures), file=sys.stderr)
        return 1
    print(f"{args.index} passes its gates", file=sys.stderr)
    return 0


def cmd_add_attribute(args: argparse.Namespace) -> int:
    require_extra("vecshard embeddings add-attribute", "offline")
    from core.domain import AttrType, VersionRef
    from offline.metadata_backfill import AttributeJob, parse_value, set_attribute

    name, version = split_ref(args.index, "index")
    kind = AttrType(args.type)
    job = AttributeJob(
        VersionRef(name, version),
        args.name,
        kind,
        Path(args.keys),
        default=parse_value(args.default, kind) if args.default is not None else None,
        value_column=args.value_column or "",
    )
    r = set_attribute(args.coordinator, job)
    print(
        f"{args.index}: attribute {args.name} set on {r.updated} record(s); {r.unchanged} had it "
        f"already, {r.missing} not found, {r.no_value} without a value"
    )
    return 0


def cmd_dual_write(args: argparse.Namespace) -> int:
    from client.registry_client import RegistryClient

    doc = {
        "kind": "DualWrite",
        "spec": {
            "family": args.family,
            "from_version": args.from_version,
            "to_version": args.to_version,
            "enabled": not args.off,
            "why": args.why,
        },
    }
    with RegistryClient(args.coordinator) as reg:
        for line in reg.apply([doc], why=args.why or "dual-write"):
            print(line)
    return 0
