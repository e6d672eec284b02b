"""`vecshard audit verify`, `archive` and `export`: the audit trail's checks and upkeep.

`verify` reads every chain under an audit root (one per coordinator) and
checks each record's keyed hash, sequence and link (`core.audit_chain`):
an edited, removed or reordered record is reported with its file and line,
and the command exits 1. It needs the audit key — without it nobody can
recompute the chain, which is also what keeps a forger from doing so. With
`--etcd`, each chain must also reach the head its coordinator anchored in
etcd, so records cut from the end of the newest file are found too.
`archive` moves each chain's closed files to an archive directory while the
coordinators run, checking that archive and volume still form one chain
(`core.audit_archive`); `verify --archived` then checks what stayed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.extras import require_extra


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="verify, archive or export the coordinators' audit trail")
    verbs = audit.add_subparsers(dest="verb", metavar="VERB", required=True)

    v = verbs.add_parser(
        "verify", help="detect altered, removed or reordered audit records (exit 1 if any)"
    )
    v.add_argument("--dir", required=True, type=Path, help="audit root (or one chain's dir)")
    v.add_argument("--key-file", required=True, type=Path, help="the audit key")
    v.add_argument(
        "--archived",
        action="store_true",
        help="older files were archived: start at the first record found, not at seq 1",
    )
    v.add_argument("--etcd", help="etcd HOST:PORT holding the anchored heads (server extra)")
    v.add_argument("--etcd-prefix", default="/vecshard/v1/", help="registry prefix")
    v.add_argument("--etcd-ca-file", type=Path, help="CA of etcd's certificate")
    v.add_argument("--etcd-cert-file", type=Path, help="client certificate for etcd")
    v.add_argument("--etcd-key-file", type=Path, help="its private key")
    v.set_defaults(func=cmd_verify)

    a = verbs.add_parser(
        "archive",
        help="move closed chain files to an archive directory (safe while coordinators run)",
    )
    a.add_argument("--dir", required=True, type=Path, help="audit root (or one chain's dir)")
    a.add_argument("--to", required=True, type=Path, help="archive root (one dir per chain)")
    a.add_argument("--key-file", required=True, type=Path, help="the audit key")
    a.set_defaults(func=cmd_archive)

    e = verbs.add_parser("export", help="write the audit trail to Parquet (offline extra)")
    e.add_argument("--dir", required=True, type=Path, help="audit root (or one chain's dir)")
    e.add_argument("--out", required=True, type=Path, help="Parquet file to write")
    e.set_defaults(func=cmd_export)


def _chains(args: argparse.Namespace) -> tuple[bytes, list[Path]]:
    """The chain key and every chain under --dir; exits 1 when there is none."""
    from core.audit_chain import chains, derive_keys, read_secret

    key, _salt = derive_keys(read_secret(args.key_file))
    found = chains(args.dir) if args.dir.is_dir() else []
    if not found:
        print(f"no audit chain under {args.dir}")
        raise SystemExit(1)
    return key, found


def cmd_verify(args: argparse.Namespace) -> int:
    from core.audit_chain import verify_chain

    key, found = _chains(args)
    heads = _anchored_heads(args, [d.name for d in found]) if args.etcd else {}
    bad = 0
    for directory in found:
        anchor = heads.get(directory.name)
        if args.etcd and anchor is None:
            print(f"{directory.name}: no head anchored in etcd")
        v = verify_chain(directory, key, from_genesis=not args.archived, anchor=anchor)
        span = f"seq {v.first_seq}..{v.last_seq}" if v.records else "empty"
        status = "OK" if v.ok else "TAMPERED"
        print(f"{directory.name}: {v.records} records in {v.files} file(s), {span}: {status}")
        for problem in v.problems:
            print(f"  {problem}")
        for gap in v.gaps:  # found and written down by the coordinator at a restart
            print(f"  gap: {gap}")
        bad += not v.ok
    return 1 if bad else 0


def cmd_archive(args: argparse.Namespace) -> int:
    from core.audit_archive import archive_closed

    key, found = _chains(args)
    for directory in found:
        done = archive_closed(directory, args.to / directory.name, key)
        if not done.files:
            print(f"{directory.name}: no closed file to move (the newest is being written)")
            continue
        print(
            f"{directory.name}: moved {done.files} file(s), {done.bytes:,} bytes, to "
            f"{args.to / directory.name}; the volume keeps seq {done.first_seq} on"
        )
    return 0


def _anchored_heads(args: argparse.Namespace, names: list[str]) -> dict[str, tuple[int, str]]:
    require_extra("vecshard audit verify --etcd", "server")
    import json

    from core.tls import TlsFiles
    from registry.keys import Keys
    from registry.store import EtcdStore

    tls = None
    if args.etcd_ca_file:
        if not (args.etcd_cert_file and args.etcd_key_file):
            raise SystemExit("--etcd-ca-file needs --etcd-cert-file and --etcd-key-file")
        tls = TlsFiles(args.etcd_ca_file, args.etcd_cert_file, args.etcd_key_file).read()
    store = EtcdStore(args.etcd, tls=tls)
    keys = Keys(args.etcd_prefix)
    heads = {}
    try:
        for name in names:
            entry = store.get(keys.audit_head(name))
            if entry is not None:
                doc = json.loads(entry.value)
                heads[name] = (int(doc["seq"]), str(doc["hash"]))
    finally:
        store.close()
    return heads


def cmd_export(args: argparse.Namespace) -> int:
    require_extra("vecshard audit export", "offline")
    from offline.audit_export import export_parquet

    n = export_parquet(args.dir, args.out)
    print(f"exported {n} audit records to {args.out}")
    return 0
