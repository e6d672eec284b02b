"""`vecshard shard`, `coordinator`, `bench` and `loadtest`: commands that run another
package's own entry point in a fresh interpreter.

The servers and the benchmark tools parse their own flags (`vecshard shard --help`
is `python -m shard_server --help`), and running them as their own module keeps
their heavy imports (hnswlib, faiss, RocksDB, etcd) out of the CLI process.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from cli.extras import require_extra


@dataclass(frozen=True)
class Role:
    module: str  # run as `python -m MODULE ARGS...`
    extra: str  # the pyproject extra it needs
    help: str


SERVER_ROLES: dict[str, Role] = {
    "shard": Role(
        "shard_server", "server", "run a shard server (segments, RocksDB, feature partitions)"
    ),
    "coordinator": Role(
        "coordinator",
        "server",
        "run a coordinator (the public retrieval, feature and registry API)",
    ),
}
BENCHMARK_ROLES: dict[str, Role] = {
    "bench": Role(
        "benchmarks.search_bench",
        "bench",
        "recall/QPS benchmark: index kinds in process vs 1/2/4-shard local clusters",
    ),
    "loadtest": Role(
        "benchmarks.loadtest",
        "bench",
        "open-loop load test of a coordinator (fixed rate, max rate, shard faults)",
    ),
    "soak": Role(
        "benchmarks.soak",
        "bench",
        "chaos soak: mixed load while processes are killed; checks every answer's invariants",
    ),
}
ROLES = {**SERVER_ROLES, **BENCHMARK_ROLES}


# Listed for `vecshard --help` only: main() hands these over before parsing.
def add_server_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, role in SERVER_ROLES.items():
        sub.add_parser(name, help=role.help, add_help=False)


def add_benchmark_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, role in BENCHMARK_ROLES.items():
        sub.add_parser(name, help=role.help, add_help=False)


def run_role(name: str, argv: list[str]) -> int:
    role = ROLES[name]
    require_extra(f"vecshard {name}", role.extra)
    os.execv(sys.executable, [sys.executable, "-m", role.module, *argv])
    return 1  # not reached
