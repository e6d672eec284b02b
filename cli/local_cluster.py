"""`vecshard up`: etcd, N shard servers and a coordinator as child processes on
loopback, with all data under one directory. Tests use the same class, so what
they exercise is what a user runs.

Secured like a deployment (DESIGN §10): a throw-away local CA and certificates
(`cli.pki`), mutual TLS between every component and to etcd, coordinators that
authenticate every call by token and keep an audit trail under
`<data-dir>/audit`. The cluster registers one principal, `admin` (role admin,
every tenant and purpose), and hands out ready-made credentials for it (or any
other principal): `credentials()`, `client_env()`, `channel()`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cli.etcd_process import EtcdProcess
from cli.pki import LocalPki
from cli.processes import ChildProcess, python_module
from core.identity import ComponentRole

if TYPE_CHECKING:
    import grpc
    import grpc.aio

    from client.credentials import Credentials
    from registry.store import EtcdStore

ADMIN = "admin"


@dataclass
class LocalCluster:
    data_dir: Path
    num_shards: int = 3
    # Coordinators on the same registry (production runs several; tests use 2).
    num_coordinators: int = 1
    etcd_prefix: str = "/vecshard/v1/"
    # An etcd already running (tests share one per session); None starts our own.
    etcd_endpoint: str | None = None
    lease_ttl: int = 10
    extra_env: dict[str, str] = field(default_factory=dict)
    # Per-shard environment, e.g. {"shard-1": {"VECSHARD_FAULTS": "Search=delay:2"}}.
    shard_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # The PKI (tests share one per session with their etcd); None: made
    # under <data_dir>/pki.
    pki: LocalPki | None = None
    etcd: EtcdProcess | None = None
    shards: dict[str, ChildProcess] = field(default_factory=dict)
    coordinator: ChildProcess | None = None
    extra_coordinators: list[ChildProcess] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    @property
    def endpoint(self) -> str:
        if self.etcd_endpoint:
            return self.etcd_endpoint
        assert self.etcd is not None
        return self.etcd.endpoint

    @property
    def coordinator_address(self) -> str:
        """The first coordinator (for callers that need exactly one)."""
        assert self.coordinator is not None and self.coordinator.ready is not None
        return str(self.coordinator.ready["grpc"])

    @property
    def coordinators(self) -> list[ChildProcess]:
        return [c for c in (self.coordinator, *self.extra_coordinators) if c is not None]

    @property
    def coordinator_addresses(self) -> list[str]:
        return [str(c.ready["grpc"]) for c in self.coordinators if c.ready is not None]

    @property
    def coordinator_target(self) -> str:
        """Every coordinator, as the SDK takes them ("host:port,host:port")."""
        return ",".join(self.coordinator_addresses)

    def shard_ids(self) -> list[str]:
        return [f"shard-{i}" for i in range(self.num_shards)]

    # -- security ----------------------------------------------------------------

    @property
    def certs(self) -> LocalPki:
        if self.pki is None:
            self.pki = LocalPki.ensure(self.data_dir / "pki")
        return self.pki

    @property
    def audit_dir(self) -> Path:
        return self.data_dir / "audit"

    def token_file(self, principal: str = ADMIN) -> Path:
        return self.certs.ensure_token(principal)

    def credentials(self, principal: str = ADMIN) -> Credentials:
        """SDK credentials of `principal` (register its grant first)."""
        from client.credentials import Credentials

        return Credentials(
            self.token_file(principal).read_text().strip(), self.certs.ca_file.read_bytes()
        )

    def client_env(self, principal: str = ADMIN) -> dict[str, str]:
        """What the SDK and CLI read: the CA and the principal's token file."""
        return {
            "VECSHARD_CA_FILE": str(self.certs.ca_file),
            "VECSHARD_TOKEN_FILE": str(self.token_file(principal)),
        }

    def channel(self, address: str | None = None, principal: str = ADMIN) -> grpc.Channel:
        """A raw channel to a coordinator (default: the first), as `principal`."""
        import grpc

        creds = self.credentials(principal)
        return grpc.secure_channel(
            address or self.coordinator_address, creds.composite_credentials()
        )

    def aio_channel(self, address: str | None = None, principal: str = ADMIN) -> grpc.aio.Channel:
        import grpc.aio

        creds = self.credentials(principal)
        return grpc.aio.secure_channel(
            address or self.coordinator_address, creds.composite_credentials()
        )

    def peer_credentials(
        self, role: ComponentRole = ComponentRole.COORDINATOR
    ) -> grpc.ChannelCredentials:
        """Mutual-TLS credentials of a cluster component (to call shards directly)."""
        return self.certs.component(role).read().channel_credentials()

    def shard_channel(
        self, address: str, *, principal: str = ADMIN, purpose: str = "test"
    ) -> grpc.Channel:
        """A channel to a shard as a coordinator would call it (cli.peer_channel)."""
        from cli.peer_channel import shard_channel

        return shard_channel(address, self.peer_credentials(), principal=principal, purpose=purpose)

    def etcd_store(self, timeout: float = 5.0) -> EtcdStore:
        from registry.store import EtcdStore

        return EtcdStore(self.endpoint, tls=self.certs.etcd.read(), timeout=timeout)

    def _tls_env(self, role: ComponentRole) -> dict[str, str]:
        files = self.certs.component(role)
        etcd = self.certs.etcd
        return {
            "VECSHARD__TLS__CA_FILE": str(files.ca_file),
            "VECSHARD__TLS__CERT_FILE": str(files.cert_file),
            "VECSHARD__TLS__KEY_FILE": str(files.key_file),
            "VECSHARD__TLS__ETCD_CERT_FILE": str(etcd.cert_file),
            "VECSHARD__TLS__ETCD_KEY_FILE": str(etcd.key_file),
        }

    def _coordinator_env(self) -> dict[str, str]:
        return {
            **self._tls_env(ComponentRole.COORDINATOR),
            "VECSHARD__AUTH__JWKS_FILE": str(self.certs.jwks_file),
            # Not the cluster CA: etcd and shards trust that one (LocalPki).
            "VECSHARD__AUTH__CLIENT_CA_FILE": str(self.certs.principals_ca_file),
            "VECSHARD__AUDIT__DIR": str(self.audit_dir),
            "VECSHARD__AUDIT__KEY_FILE": str(self.certs.audit_key_file),
        }

    def register_admin(self) -> None:
        """The bootstrap grant, written straight to etcd: the first admin cannot
        be created through the API, which already needs one."""
        from registry.access_policy import ANY, Principal, Role
        from registry.registry import Registry

        store = self.etcd_store()
        try:
            Registry(store, self.etcd_prefix).put_principal(
                Principal(
                    ADMIN,
                    Role.ADMIN,
                    (ANY,),
                    (ANY,),
                    (ANY,),
                    description="local cluster bootstrap admin",
                )
            )
        finally:
            store.close()

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.etcd_endpoint is None:
                self.etcd = EtcdProcess(
                    self.data_dir / "etcd", self.logs / "etcd.log", self.certs.etcd
                )
                self.etcd.start(timeout)
            self.register_admin()
            self.token_file(ADMIN)
            for shard_id in self.shard_ids():
                self.shards[shard_id] = self._shard_process(shard_id)
                self.shards[shard_id].start()
            self.coordinator = self._coordinator_process("coordinator")
            self.coordinator.start()
            for n in range(1, self.num_coordinators):
                child = self._coordinator_process(f"coordinator-{n}")
                self.extra_coordinators.append(child)
                child.start()
            for child in [*self.shards.values(), *self.coordinators]:
                child.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _shard_process(self, shard_id: str) -> ChildProcess:
        return ChildProcess(
            shard_id,
            python_module(
                "shard_server",
                "--shard-id",
                shard_id,
                "--data-dir",
                str(self.data_dir / shard_id),
                "--etcd",
                self.endpoint,
                "--etcd-prefix",
                self.etcd_prefix,
                "--lease-ttl",
                str(self.lease_ttl),
            ),
            self.logs / f"{shard_id}.log",
            {
                **self._tls_env(ComponentRole.SHARD),
                **self.extra_env,
                **self.shard_env.get(shard_id, {}),
            },
        )

    def _coordinator_process(self, name: str) -> ChildProcess:
        # Port 0: the coordinator binds a free port itself, and a restarted
        # coordinator comes back on that address (`ChildProcess` keeps it),
        # as one behind a Kubernetes Service does, so clients given every
        # coordinator's address keep reaching it.
        return ChildProcess(
            name,
            python_module(
                "coordinator",
                "--etcd",
                self.endpoint,
                "--etcd-prefix",
                self.etcd_prefix,
                "--listen",
                "127.0.0.1:0",
                "--name",
                name,
            ),
            self.logs / f"{name}.log",
            {**self._coordinator_env(), **self.extra_env},
        )

    def add_coordinator(self, timeout: float = 60.0) -> str:
        """Starts one more coordinator on the same registry; returns its address."""
        child = self._coordinator_process(f"coordinator-{len(self.extra_coordinators) + 1}")
        self.extra_coordinators.append(child)
        child.start()
        return str(child.wait_ready(timeout)["grpc"])

    def kill_coordinator(self, n: int) -> None:
        """SIGKILLs the n-th coordinator (0 = the first)."""
        self.coordinators[n].kill()

    def restart_coordinator(self, n: int, timeout: float = 60.0) -> str:
        child = self.coordinators[n]
        if child.alive():
            child.stop()
        child.start()
        return str(child.wait_ready(timeout)["grpc"])

    def kill_shard(self, shard_id: str) -> None:
        self.shards[shard_id].kill()

    def restart_shard(self, shard_id: str, timeout: float = 60.0) -> dict[str, object]:
        """Starts a (stopped or killed) shard again on the same data directory."""
        child = self.shards[shard_id]
        if child.alive():
            child.stop()
        child.start()
        return child.wait_ready(timeout)

    def pids(self) -> list[int]:
        children = [
            *self.shards.values(),
            self.coordinator,
            *self.extra_coordinators,
            self.etcd.child if self.etcd else None,
        ]
        return [c.pid for c in children if c is not None and c.pid is not None]

    def stop(self) -> None:
        """Coordinator first (no new requests), then shards, then etcd."""
        for child in [*self.extra_coordinators, self.coordinator]:
            if child is not None:
                child.stop()
        for child in self.shards.values():
            child.stop()
        if self.etcd is not None:
            self.etcd.stop()

    def remove_data(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
