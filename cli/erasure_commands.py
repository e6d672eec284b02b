"""`vecshard delete-subject`: verified deletion of a user or an item (DESIGN §10).

Runs `cli.erasure_job` against the coordinators' ErasureService as an admin
granted the subject's tenant (credentials as for every client command:
VECSHARD_TOKEN_FILE / VECSHARD_CA_FILE). Prints progress per step and a JSON
report; exits 0 when verification found zero matches, 3 when it found some.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.extras import require_extra


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "delete-subject",
        help="erase a user or item everywhere (embeddings, indexes, features, offline) and verify",
        description="Tombstones the subject in every embedding family and version of its entity "
        "type, every index version and every online feature group (nothing is served once that "
        "step returns), purges it physically (segment and RocksDB compaction on every shard, "
        "offline Parquet rewrite), then verifies: searches with its own vectors, lookups, "
        "feature reads and a scan of every shard's files. Resumable: run it again after any "
        "interruption. Needs an admin granted the tenant.",
    )
    d.add_argument("--coordinator", required=True, help="coordinator address(es) HOST:PORT[,...]")
    d.add_argument("--tenant", required=True, help="the subject's tenant")
    d.add_argument("--entity-type", required=True, help="e.g. user or item")
    d.add_argument("--entity-id", required=True, help="the subject's id")
    d.add_argument(
        "--offline",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="an offline store root to rewrite too (repeatable; needs the offline extra)",
    )
    d.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".vecshard/erasures"),
        help="where the job's resumable state lives (default .vecshard/erasures)",
    )
    d.add_argument("--why", default="", help="the reason, recorded in the audit trail")
    d.add_argument(
        "--no-purge",
        action="store_true",
        help="stop after the tombstones, unverified (exit 3); the same command without it "
        "purges and verifies later",
    )
    d.add_argument(
        "--no-scan",
        action="store_true",
        help="skip the shards' file scan (then unverified: exit 3)",
    )
    d.add_argument("--timeout", type=float, default=600.0, help="seconds per step (default 600)")
    d.set_defaults(func=cmd_delete_subject)


def cmd_delete_subject(args: argparse.Namespace) -> int:
    if args.offline:
        require_extra("vecshard delete-subject --offline", "offline")
    from cli.erasure_job import run_job
    from client.erasure_client import ErasureClient
    from core.domain import EntityKey

    subject = EntityKey(args.tenant, args.entity_type, args.entity_id)
    with ErasureClient(args.coordinator, timeout=args.timeout) as client:
        report = run_job(
            client,
            subject,
            args.state_dir,
            offline_roots=args.offline,
            purge=not args.no_purge,
            scan_files=not args.no_scan,
            why=args.why,
            say=lambda line: print(line, flush=True),
        )
    print(json.dumps(report, indent=1, sort_keys=True))
    return 0 if report["verified"] else 3
