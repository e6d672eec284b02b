"""`vecshard auth`: the issuer's side of credentials (server extra).

- `auth pki --out DIR [--host NAME ...]`: a CA, certificates for the
  coordinator, shard and etcd roles (URI SAN `spiffe://vecshard/<role>`), the
  principals CA (coordinators' `auth.client_ca_file`), a token-signing key
  with its public JWKS, and the audit key — what `vecshard up` makes for
  itself, for clusters without cert-manager (load the files into the Secrets
  `deploy/k8s` mounts);
- `auth principal-cert --pki DIR --principal NAME --out PREFIX`: a client
  certificate naming the principal (`spiffe://vecshard/principal/NAME`), from
  the principals CA, for its self-signed (x5c) tokens. Never from the cluster
  CA: etcd trusts every client certificate of that one and has no RBAC, so a
  caller holding one could write itself an admin grant;
- `auth token --pki DIR --principal NAME [--ttl SECONDS]`: a bearer token for
  a principal, signed with that directory's key (the principal's grant is a
  `kind: Principal` in the registry; a token alone grants nothing);
- `auth bootstrap-admin --etcd HOST:PORT ... --name NAME`: the first admin's
  grant, written straight to etcd (with etcd's client certificate): every
  registry change through the API needs an admin already.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.extras import require_extra


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    auth = sub.add_parser("auth", help="make a cluster PKI and bearer tokens (server extra)")
    verbs = auth.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser("pki", help="CA, component certificates, token key, audit key")
    p.add_argument("--out", required=True, type=Path, help="directory to write (kept if valid)")
    p.add_argument(
        "--host",
        action="append",
        default=[],
        help="a DNS name or IP the certificates must cover (repeatable; loopback is always)",
    )
    p.set_defaults(func=cmd_pki)

    c = verbs.add_parser(
        "principal-cert", help="a principal's certificate for x5c tokens (principals CA)"
    )
    c.add_argument("--pki", required=True, type=Path, help="directory made by `auth pki`")
    c.add_argument("--principal", required=True, help="the principal it names (tokens' sub)")
    c.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="PREFIX",
        help="writes PREFIX.pem and PREFIX.key (0600)",
    )
    c.add_argument("--days", type=int, default=90, help="days until it expires (90)")
    c.set_defaults(func=cmd_principal_cert)

    t = verbs.add_parser("token", help="print a bearer token for a principal")
    t.add_argument("--pki", required=True, type=Path, help="directory made by `auth pki`")
    t.add_argument("--principal", required=True, help="the principal the token names (sub)")
    t.add_argument("--ttl", type=float, default=3600.0, help="seconds until it expires (1 h)")
    t.set_defaults(func=cmd_token)

    b = verbs.add_parser("bootstrap-admin", help="grant the first admin, straight in etcd")
    b.add_argument("--etcd", required=True, help="etcd HOST:PORT")
    b.add_argument("--etcd-prefix", default="/vecshard/v1/", help="registry prefix")
    b.add_argument("--etcd-ca-file", required=True, type=Path, help="CA of etcd's certificate")
    b.add_argument("--etcd-cert-file", required=True, type=Path, help="client certificate")
    b.add_argument("--etcd-key-file", required=True, type=Path, help="its private key")
    b.add_argument("--name", required=True, help="the admin principal (its tokens' sub)")
    b.set_defaults(func=cmd_bootstrap_admin)


def cmd_pki(args: argparse.Namespace) -> int:
    require_extra("vecshard auth pki", "server")
    from cli.pki import LOCAL_HOSTS, LocalPki

    pki = LocalPki.ensure(args.out, hosts=[*LOCAL_HOSTS, *args.host])
    print(f"CA {pki.ca_file}; certificates, token key ({pki.signing_key_file}), JWKS")
    print(f"({pki.jwks_file}) and audit key ({pki.audit_key_file}) under {args.out}")
    print(f"principals CA {pki.principals_ca_file}: coordinators' client CA, nothing else's")
    return 0


def cmd_principal_cert(args: argparse.Namespace) -> int:
    require_extra("vecshard auth principal-cert", "server")
    from cli.pki import LocalPki, write_private

    if not args.days >= 1:
        raise SystemExit(f"--days {args.days}: expected at least 1")
    cert, key = LocalPki(args.pki).issue_principal_cert(args.principal, days=args.days)
    cert_file, key_file = Path(f"{args.out}.pem"), Path(f"{args.out}.key")
    write_private(key_file, key)
    cert_file.write_bytes(cert)
    print(f"{cert_file} and {key_file}: principal {args.principal!r}, from the principals CA")
    return 0


def cmd_bootstrap_admin(args: argparse.Namespace) -> int:
    require_extra("vecshard auth bootstrap-admin", "server")
    from core.tls import TlsFiles
    from registry.access_policy import ANY, Principal, Role
    from registry.registry import Registry
    from registry.store import EtcdStore

    tls = TlsFiles(args.etcd_ca_file, args.etcd_cert_file, args.etcd_key_file).read()
    store = EtcdStore(args.etcd, tls=tls)
    try:
        Registry(store, args.etcd_prefix).put_principal(
            Principal(args.name, Role.ADMIN, (ANY,), (ANY,), description="bootstrap admin")
        )
    finally:
        store.close()
    print(f"principal {args.name!r} is an admin of every tenant and purpose")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    require_extra("vecshard auth token", "server")
    from cli.pki import LocalPki

    if not args.ttl >= 1:
        raise SystemExit(
            f"--ttl {args.ttl:g}: expected at least 1 second (a token expires in whole seconds)"
        )
    print(LocalPki(args.pki).mint(args.principal, args.ttl))
    return 0
