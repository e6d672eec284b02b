"""The narrow storage interface of the registry, and its etcd implementation.

Everything above this (snapshots, routing, membership) is logic over the five
verbs here: get, put, delete, list-prefix, watch, plus compare-and-swap
transactions and leases. `EtcdStore` talks to a real etcd through `pyetcd`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import pyetcd
import pyetcd.exceptions

from core.errors import Unavailable
from core.tls import TlsIdentity

log = logging.getLogger(__name__)

# How long a starting server waits for etcd: an etcd pod's restart, within
# the coordinators' and shards' liveness windows (deploy/k8s/base).
ETCD_START_WAIT_SECONDS = 60.0

R = TypeVar("R")


@dataclass(frozen=True)
class Entry:
    key: str
    value: bytes
    mod_revision: int
    # The lease the key is attached to (0 or None: none), read by `get`: a
    # registration checks the key is still its own, not another process's.
    lease: int | None = None


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int | None = None


@dataclass(frozen=True)
class Delete:
    key: str


@dataclass(frozen=True)
class ModRevisionIs:
    """Compare: the key's mod_revision equals `revision` (0 = key absent)."""

    key: str
    revision: int


class Lease(Protocol):
    id: int

    def refresh(self) -> None: ...

    def revoke(self) -> None: ...


class RegistryStore(Protocol):
    def get(self, key: str) -> Entry | None: ...

    def put(self, key: str, value: bytes, lease: Lease | None = None) -> None: ...

    def delete(self, key: str) -> bool: ...

    def list_prefix(self, prefix: str) -> tuple[list[Entry], int]:
        """Entries under `prefix` and the store revision they were read at."""
        ...

    def revision(self) -> int:
        """The store's current revision, as `list_prefix` reports it. Cheap
        (no values are read); it grows with every change anywhere in the
        store, so an unchanged revision proves a snapshot is still current."""
        ...

    def txn(self, compares: Sequence[ModRevisionIs], ops: Sequence[Put | Delete]) -> bool: ...

    def watch_prefix(
        self, prefix: str, on_event: Callable[[Exception | None], None]
    ) -> Callable[[], None]:
        """Calls `on_event(None)` on any change under prefix, `on_event(exc)` when
        the watch breaks; returns a function that cancels the watch."""
        ...

    def lease(self, ttl: int) -> Lease: ...

    def close(self) -> None: ...


def _unavailable(exc: Exception, endpoint: str) -> Unavailable:
    return Unavailable(f"etcd at {endpoint} is unreachable ({type(exc).__name__}: {exc})")


class EtcdStore:
    """RegistryStore over a real etcd 3.5 cluster.

    `tls` is required on purpose: every caller states whether it talks mutual
    TLS to etcd (servers always do; `None` is plaintext, for an etcd that
    offers nothing else)."""

    def __init__(self, endpoint: str, *, tls: TlsIdentity | None, timeout: float = 5.0) -> None:
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"etcd endpoint {endpoint!r} must be HOST:PORT")
        self.endpoint = endpoint
        # time_retry=0: pyetcd otherwise refuses to touch an endpoint for 300 s
        # after one failed call, which would turn a brief etcd restart into a
        # five-minute outage of the registry.
        endpoint_ = pyetcd.Endpoint(
            host,
            int(port),
            secure=tls is not None,
            creds=tls.channel_credentials() if tls is not None else None,
            time_retry=0.0,
        )
        self._client = pyetcd.MultiEndpointEtcd3Client(endpoints=[endpoint_], timeout=timeout)
        self._lock = threading.Lock()

    def _call(self, fn: Callable[[], R]) -> R:
        try:
            return fn()
        except (
            pyetcd.exceptions.ConnectionFailedError,
            pyetcd.exceptions.ConnectionTimeoutError,
            pyetcd.exceptions.NoServerAvailableError,
        ) as exc:
            raise _unavailable(exc, self.endpoint) from exc

    def get(self, key: str) -> Entry | None:
        value, meta = self._call(lambda: self._client.get(key))
        if value is None:
            return None
        return Entry(key, value, meta.mod_revision, meta.lease_id or None)

    def put(self, key: str, value: bytes, lease: Lease | None = None) -> None:
        self._call(lambda: self._client.put(key, value, lease=lease))

    def delete(self, key: str) -> bool:
        return bool(self._call(lambda: self._client.delete(key)))

    def wait_reachable(
        self,
        timeout: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """At a server's start: waits up to `timeout` seconds for etcd rather
        than exiting at once — a server restarted with etcd (or during an etcd
        restart) used to exit with a traceback, and an orchestrator's restart
        back-off then outlasts the outage by minutes. Raises Unavailable after."""
        deadline = clock() + timeout
        pause = 0.25
        while True:
            try:
                self.revision()
                return
            except Unavailable as exc:
                if clock() + pause > deadline:
                    raise
                log.warning("waiting for etcd: %s; retrying in %.2g s", exc, pause)
                sleep(pause)
                pause = min(pause * 2, 5.0)

    def list_prefix(self, prefix: str) -> tuple[list[Entry], int]:
        resp = self._call(lambda: self._client.get_prefix_response(prefix))
        entries = [Entry(kv.key.decode(), kv.value, kv.mod_revision) for kv in resp.kvs]
        return entries, int(resp.header.revision)

    def revision(self) -> int:
        def read() -> int:
            # A count-only range over one key: etcd answers with its header revision.
            return int(self._client.get_response("/", count_only=True).header.revision)

        return self._call(read)

    def txn(self, compares: Sequence[ModRevisionIs], ops: Sequence[Put | Delete]) -> bool:
        t = self._client.transactions
        cmp = [t.mod(c.key) == c.revision for c in compares]
        success = [
            t.put(op.key, op.value, lease=op.lease) if isinstance(op, Put) else t.delete(op.key)
            for op in ops
        ]
        ok, _ = self._call(
            lambda: self._client.transaction(compare=cmp, success=success, failure=[])
        )
        return bool(ok)

    def watch_prefix(
        self, prefix: str, on_event: Callable[[Exception | None], None]
    ) -> Callable[[], None]:
        def callback(resp: object) -> None:
            on_event(resp if isinstance(resp, Exception) else None)

        watch_id = self._call(lambda: self._client.add_watch_prefix_callback(prefix, callback))

        def cancel() -> None:
            try:
                self._client.cancel_watch(watch_id)
            except Exception:  # noqa: BLE001 - cancelling a dead watch must not fail shutdown
                log.debug("cancel_watch failed", exc_info=True)

        return cancel

    def lease(self, ttl: int) -> Lease:
        lease: Lease = self._call(lambda: self._client.lease(ttl))  # pyetcd is untyped
        return lease

    def close(self) -> None:
        self._client.close()
