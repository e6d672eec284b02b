"""`vecshard audit verify`, `archive` and `export`: the audit trail's checks and upkeep.

`verify` reads every chain under an audit root (one per coordinator) and
checks each record's keyed hash, sequence and link (`core.audit_chain`):
an edited, removed or reordered record is reported with its file and line,
and the command exits 1. It needs the audit key — without it nobody can
recompute the chain, which is also what keeps a forger from doing so. With
`--etcd`, each chain must also reach the head its coordinator anchored in
etcd, so records cut from the end of the newest file are found too; a chain
with no anchored head fails, and so does every anchored head whose chain is
not on disk (a chain removed whole). `--chain NAME` narrows both to the
coordinators named (a volume holding only some chains).
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
    v.add_argument(
        "--chain",
        action="append",
        metavar="NAME",
        help="check only this coordinator's chain and anchor (repeatable); default: every chain "
        "under --dir and, with --etcd, every anchored head, which must each have its chain",
    )
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
    """Every chain in scope must verify; with --etcd also reach its anchored
    head, and every head anchored in scope must have its chain here."""
    from core.audit_chain import verify_chain

    key, found = _chains(args)
    scope = _scope(args, found)
    found = [d for d in found if scope is None or d.name in scope]
    heads = _anchored_heads(args) if args.etcd else {}
    if scope is not None:
        heads = {name: head for name, head in heads.items() if name in scope}
    bad = 0
    for directory in found:
        anchor = heads.get(directory.name)
        v = verify_chain(directory, key, from_genesis=not args.archived, anchor=anchor)
        if args.etcd and anchor is None:
            # Removed, or never written: either way a cut at the chain's end
            # cannot be ruled out, and that is what --etcd is asked to check.
            v.problems.append("no head anchored in etcd: a cut at its end cannot be checked")
        span = f"seq {v.first_seq}..{v.last_seq}" if v.records else "empty"
        status = "OK" if v.ok else "TAMPERED"
        print(f"{directory.name}: {v.records} records in {v.files} file(s), {span}: {status}")
        for problem in v.problems:
            print(f"  {problem}")
        for gap in v.gaps:  # found and written down by the coordinator at a restart
            print(f"  gap: {gap}")
        bad += not v.ok
    on_disk = {d.name for d in found}
    for name, (seq, _hash) in sorted(heads.items()):
        if name not in on_disk:
            print(f"{name}: anchored in etcd at seq {seq}, but no chain under {args.dir}: MISSING")
            bad += 1
    for name in sorted((scope or set()) - on_disk - set(heads)):
        print(f"{name}: no chain under {args.dir}" + (" and no head in etcd" if args.etcd else ""))
        bad += 1
    return 1 if bad else 0


def _scope(args: argparse.Namespace, found: list[Path]) -> set[str] | None:
    """The coordinators whose chains are checked: those --chain names; one
    chain's own directory given as --dir; else (None) every chain under --dir
    and every head anchored in etcd — a chain whose files are gone while its
    head is anchored is what a removal of the whole chain looks like."""
    if args.chain:
        return set(args.chain)
    if found == [args.dir]:
        return {args.dir.name}
    return None


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


def _anchored_heads(args: argparse.Namespace) -> dict[str, tuple[int, str]]:
    """Every head anchored under the prefix, by coordinator name: not only
    those of the chains found on disk, or a chain removed whole would pass."""
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
    under = Keys(args.etcd_prefix).audit_head("")
    heads = {}
    try:
        entries, _revision = store.list_prefix(under)
    finally:
        store.close()
    for entry in entries:
        doc = json.loads(entry.value)
        heads[entry.key[len(under) :]] = (int(doc["seq"]), str(doc["hash"]))
    return heads


def cmd_export(args: argparse.Namespace) -> int:
    require_extra("vecshard audit export", "offline")
    from offline.audit_export import export_parquet

    n = export_parquet(args.dir, args.out)
    print(f"exported {n} audit records to {args.out}")
    return 0
