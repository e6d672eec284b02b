"""`vecshard up`: a local cluster (etcd, shard servers, a coordinator) on loopback."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cli.extras import require_extra
from core.signal_waiter import SignalWaiter

if TYPE_CHECKING:
    from cli.local_cluster import LocalCluster


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser(
        "up",
        help="run a local cluster (etcd, shards, coordinator) on loopback",
        description="Start etcd, N shard servers and a coordinator as child processes on "
        "loopback, with all data and logs under --data-dir. Ctrl-C (SIGINT/SIGTERM) stops "
        "every process; SIGHUP restarts the shards one at a time with the rollout protocol.",
    )
    up.add_argument("--shards", type=int, default=3, help="number of shard servers (default 3)")
    up.add_argument(
        "--data-dir",
        default=".vecshard/local",
        help="where all data and logs go (default .vecshard/local)",
    )
    up.add_argument(
        "--demo", action="store_true", help="load a demo data set and run example queries"
    )
    up.add_argument(
        "--once", action="store_true", help="stop everything after start-up (and the demo)"
    )
    up.add_argument("--fresh", action="store_true", help="delete the data directory first")
    up.set_defaults(func=cmd_up)


def _hold_data_dir(data_dir: Path) -> IO[str]:
    """An exclusive lock on `<data-dir>.lock` for as long as this process
    runs: a second `vecshard up` on the same directory waited a minute on
    etcd's own lock and ended in a traceback (and with --fresh would have
    deleted a running cluster's data). Beside the directory, not in it, so
    --fresh cannot remove it."""
    path = data_dir.with_name(data_dir.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise SystemExit(
            f"{data_dir} is in use by another `vecshard up` ({holder}); stop it first, "
            "or give another --data-dir"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}")
    lock.flush()
    return lock


def cmd_up(args: argparse.Namespace) -> int:
    require_extra("vecshard up", "server")
    from cli.local_cluster import LocalCluster

    cluster = LocalCluster(Path(args.data_dir).resolve(), num_shards=args.shards)
    lock = _hold_data_dir(cluster.data_dir)  # noqa: F841 - held until this process exits
    if args.fresh:
        cluster.remove_data()
    # SIGINT/SIGTERM stop; SIGHUP restarts every shard in turn with the rollout
    # protocol (drain → idle → restart → serve), as `vecshard rollout shards`
    # does on Kubernetes. Acted on here, not in a handler (core.signal_waiter).
    signals = SignalWaiter((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    print(
        f"starting etcd, {args.shards} shard(s) and a coordinator (data in {cluster.data_dir}) ...",
        flush=True,
    )
    try:
        cluster.start()
        _print_cluster(cluster)
        _print_credentials(cluster)
        if args.demo:
            _run_demo(cluster)
        if not args.once:
            print(
                "\nServing. Press Ctrl-C to stop (kill -HUP for a rolling restart of the shards).",
                flush=True,
            )
            while signals.wait() == signal.SIGHUP:
                _rolling_restart(cluster)
                signals.discard(signal.SIGHUP)  # asked again meanwhile: done
    finally:
        # Closing the terminal sends SIGHUP (a rolling restart) and then every
        # print to it fails with EIO: the prints here must not keep the
        # children — in sessions of their own, nothing else stops them — alive.
        _say("stopping the local cluster ...")
        cluster.stop()
        _say("stopped.")
    return 0


def _say(line: str) -> None:
    """Prints a line, unless the terminal is gone."""
    with contextlib.suppress(OSError):
        print(line, flush=True)


def _print_credentials(cluster: LocalCluster) -> None:
    env = cluster.client_env()
    print(
        "\nEvery connection is TLS (a local CA) and every call needs a token. Credentials of "
        "the cluster's admin principal, for the SDK and the CLI:"
    )
    for name, value in env.items():
        print(f"  export {name}={value}")
    print(
        f"  (the audit trail is in {cluster.audit_dir}; "
        f"`vecshard audit verify --dir {cluster.audit_dir} --key-file {cluster.certs.audit_key_file}`)",
        flush=True,
    )


def _print_cluster(cluster: LocalCluster) -> None:
    assert cluster.etcd is not None and cluster.coordinator is not None
    print("vecshard local cluster is up:")
    print(f"  {'etcd':<12} {cluster.endpoint:<22} pid {cluster.etcd.child.pid}")
    for sid, child in cluster.shards.items():
        r = child.ready or {}
        print(
            f"  {sid:<12} {r.get('grpc', '?'):<22} pid {child.pid}  metrics http://127.0.0.1:{r.get('metrics')}/metrics"
        )
    r = cluster.coordinator.ready or {}
    print(
        f"  {'coordinator':<12} {cluster.coordinator_address:<22} pid {cluster.coordinator.pid}  "
        f"metrics http://127.0.0.1:{r.get('metrics')}/metrics"
    )
    print(f"  logs in {cluster.logs}", flush=True)


def _run_demo(cluster: LocalCluster) -> None:
    from cli.demo import EMBEDDING, PURPOSE, ROUTE, run_demo

    run_demo(
        cluster.coordinator_address,
        cluster.credentials(),
        lambda principal: cluster.token_file(principal).read_text().strip(),
    )
    print(
        "\nQuery it from another terminal (after the exports above), e.g.:\n"
        f"  vecshard search --coordinator {cluster.coordinator_address} --route {ROUTE} "
        f"--tenant acme --purpose {PURPOSE} --like item-00042 --embedding {EMBEDDING[0]}@{EMBEDDING[1]}\n"
        f"  vecshard get --coordinator {cluster.coordinator_address} --tenant acme --purpose {PURPOSE} "
        f"--embedding {EMBEDDING[0]}@{EMBEDDING[1]} item-00001 item-00002",
        flush=True,
    )


def _rolling_restart(cluster: LocalCluster) -> None:
    from cli.rollout import LocalFleet, Rollout, RolloutFailed
    from client.registry_client import RegistryClient

    print("SIGHUP: rolling restart of every shard", flush=True)
    with RegistryClient(
        cluster.coordinator_address, who="vecshard up", credentials=cluster.credentials()
    ) as reg:
        try:
            Rollout(reg, LocalFleet(cluster), say=lambda m: print(m, flush=True)).run()
            print("rolling restart done", flush=True)
        except RolloutFailed as exc:
            print(f"rolling restart stopped: {exc}", flush=True)
