"""The `vecshard` command line: assembles the parser from the command groups and
dispatches. Each group lives in its own module and imports what it needs (server,
offline or benchmark code) only inside its commands, so `vecshard --help` and the
SDK commands work with the bare `pip install vecshard`."""

from __future__ import annotations

import argparse
import sys

from cli import (
    audit_commands,
    auth_commands,
    capacity_commands,
    cluster_commands,
    embedding_commands,
    erasure_commands,
    feature_commands,
    query_commands,
    registry_commands,
    role_commands,
    rollout_commands,
)
from core.errors import VecshardError

# In the order `vecshard --help` lists them: run, query, administer, measure.
COMMAND_GROUPS = (
    cluster_commands.add_commands,
    role_commands.add_server_commands,
    query_commands.add_commands,
    registry_commands.add_commands,
    erasure_commands.add_commands,
    auth_commands.add_commands,
    audit_commands.add_commands,
    feature_commands.add_commands,
    embedding_commands.add_commands,
    rollout_commands.add_commands,
    role_commands.add_benchmark_commands,
    capacity_commands.add_commands,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vecshard",
        description="vecshard: sharded vector retrieval and feature serving over gRPC.",
        epilog="`vecshard COMMAND --help` shows a command's options. search, get, "
        "describe-route, registry, delete-subject, audit verify, capacity and rollout need only "
        "`pip install vecshard` (the SDK; credentials from VECSHARD_TOKEN_FILE and "
        "VECSHARD_CA_FILE); up, shard, coordinator and auth need the server extra, features, "
        "embeddings and audit export the offline extra, bench, loadtest and soak the bench extra "
        "(pip install 'vecshard[server]', ...).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for add_commands in COMMAND_GROUPS:
        add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in role_commands.ROLES:
        return role_commands.run_role(argv[0], argv[1:])
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
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        # A path the command was given (a spec, a sample, a token, a state
        # file): what was wrong with it, not a traceback.
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
