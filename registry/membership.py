"""A shard's lease-bound registration in `cluster/shards/{id}`.

The key disappears when the lease expires, so a SIGKILLed shard stops being
routed to within the TTL. A keep-alive thread refreshes the lease and, if it
was lost (etcd restarted, long pause), registers again under a new one.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

from registry import codec
from registry.keys import Keys
from registry.model import ShardMember, ShardState
from registry.store import Lease, RegistryStore

log = logging.getLogger(__name__)


class ShardRegistration:
    def __init__(
        self, store: RegistryStore, keys: Keys, member: ShardMember, ttl: int = 10
    ) -> None:
        self.store = store
        self.keys = keys
        self.member = member
        self.ttl = ttl
        self._lease: Lease | None = None
        # Called when the lease had expired and the shard registered again.
        self.on_lease_lost: Callable[[], None] = lambda: None
        # Every register and put checks `_closed` under this lock, and `close`
        # sets it under it: a keep-alive inside a slow etcd call cannot
        # register a stopping shard again after `close` revoked its lease.
        self._lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def register(self) -> None:
        with self._lock:
            self._register()

    def _register(self) -> None:
        if self._closed:
            return
        self._lease = self.store.lease(self.ttl)
        self._put()

    def _put(self) -> None:
        self.store.put(
            self.keys.shard(self.member.shard_id), codec.encode(self.member), lease=self._lease
        )

    def set_state(self, state: ShardState) -> None:
        with self._lock:
            self.member = dataclasses.replace(self.member, state=state)
            if not self._closed:
                self._put()

    def start(self) -> None:
        if self._lease is None:  # registered already, ahead of the keep-alive
            self.register()
        self._thread = threading.Thread(target=self._keepalive, name="shard-lease", daemon=True)
        self._thread.start()

    def _keepalive(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                assert self._lease is not None
                self._lease.refresh()
                if self.store.get(self.keys.shard(self.member.shard_id)) is None:
                    if self._closed:
                        return  # `close` revoked it; `register` would refuse anyway
                    self.on_lease_lost()
                    self.register()  # lease expired while etcd was away: come back
            except Exception as exc:  # noqa: BLE001 - retry until etcd answers again
                log.warning("lease refresh failed, will retry: %s", exc)

    def close(self) -> None:
        """Releases the lease so coordinators stop routing here at once."""
        self._stop.set()
        with self._lock:
            self._closed = True
            lease = self._lease
        if self._thread:
            self._thread.join(timeout=5)
        if lease is not None:
            try:
                lease.revoke()
            except Exception as exc:  # noqa: BLE001 - the lease expires on its own anyway
                log.warning("could not revoke lease: %s", exc)
