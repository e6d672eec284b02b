"""A shard's lease-bound registration in `cluster/shards/{id}`.

The key disappears when the lease expires, so a SIGKILLed shard stops being
routed to within the TTL. A keep-alive thread refreshes the lease and, if it
was lost (etcd restarted, a pause longer than the TTL: GC, SIGSTOP, a
partition from etcd), registers again under a new one — as DRAINING, not as
what it was: while it was away, peers acknowledged writes and deletes without
it (a write quorum below the replica count) and repair may have given up, so
it catches up before it answers queries again, as at start-up.
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


def _nothing() -> None:
    pass


class ShardRegistration:
    def __init__(
        self, store: RegistryStore, keys: Keys, member: ShardMember, ttl: int = 10
    ) -> None:
        self.store = store
        self.keys = keys
        self.member = member
        self.ttl = ttl
        self._lease: Lease | None = None
        # After a lost lease, in this order: `on_lease_lost` (the shard stops
        # answering reads), registered again as DRAINING, `catch_up` (in a
        # thread of its own: the keep-alive goes on refreshing the new lease
        # meanwhile; it returns once every bucket is caught up), then — if no
        # newer loss or `close` came in between — `on_serving` and SERVING.
        self.on_lease_lost: Callable[[], None] = _nothing
        self.catch_up: Callable[[], None] = _nothing
        self.on_serving: Callable[[], None] = _nothing
        # Every register and put checks `_closed` under this lock, and `close`
        # sets it under it: a keep-alive inside a slow etcd call cannot
        # register a stopping shard again after `close` revoked its lease.
        self._lock = threading.Lock()
        self._closed = False
        self._rejoining = False  # a catch-up after a lost lease is running
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def register(self) -> None:
        """Puts the member under a new lease (replacing a previous process's
        key of this shard: its lease no longer keeps it)."""
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

    @property
    def lease(self) -> Lease | None:
        return self._lease

    def start(self) -> None:
        """Registers (unless registered already) and starts the keep-alive,
        once: a shard that registered early (a previous process's key to
        replace) starts it then, so a long segment load cannot let the new
        lease expire and read as a lost one."""
        if self._thread is not None:
            return
        if self._lease is None:
            self.register()
        self._thread = threading.Thread(target=self._keepalive, name="shard-lease", daemon=True)
        self._thread.start()

    def serve(self, since: Lease | None) -> bool:
        """`on_serving` and SERVING — unless the lease changed since `since`
        (the lease the caller's catch-up began under) or a lost lease's
        catch-up is running: that one serves when it has caught up. Start-up
        opened the gate and went SERVING on a catch-up that began before the
        loss (found in review)."""
        with self._lock:
            if self._closed or self._rejoining or self._lease is not since:
                return False
            self.on_serving()
            self.member = dataclasses.replace(self.member, state=ShardState.SERVING)
            self._put()
            return True

    def _holds_key(self) -> bool:
        """The key is there and attached to this registration's lease (a key
        under another lease is some other process's, kept alive by it)."""
        entry = self.store.get(self.keys.shard(self.member.shard_id))
        return (
            entry is not None and self._lease is not None and entry.lease in (None, self._lease.id)
        )

    def _keepalive(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                assert self._lease is not None
                self._lease.refresh()
                if not self._holds_key():
                    self._rejoin()
            except Exception as exc:  # noqa: BLE001 - retry until etcd answers again
                log.warning("lease refresh failed, will retry: %s", exc)

    def _rejoin(self) -> None:
        """The lease expired while the shard was away: register again as
        DRAINING (coordinators send it writes, no queries) and catch up."""
        if self._closed:
            return
        log.warning(
            "shard %s lost its registration (lease expired): draining until caught up",
            self.member.shard_id,
        )
        self.on_lease_lost()
        with self._lock:
            self.member = dataclasses.replace(self.member, state=ShardState.DRAINING)
            self._register()
            if self._rejoining:
                return  # the running catch-up sees the new lease and goes again
            self._rejoining = True
        threading.Thread(
            target=self._serve_when_caught_up, name="shard-rejoin", daemon=True
        ).start()

    def _serve_when_caught_up(self) -> None:
        """Catches up, and again if the lease was lost again meanwhile (what
        was missed then may not be in what was copied); then SERVING."""
        wait = 0.5
        while True:
            lease = self._lease
            try:
                self.catch_up()
            except Exception:  # noqa: BLE001 - stays DRAINING meanwhile: safe, logged loudly
                # Right after a lost lease etcd may still be flapping: once
                # failed, the shard refused reads for good (found in review).
                log.exception("catch-up after a lost lease failed: draining, trying again")
                if self._stop.wait(wait):
                    with self._lock:
                        self._rejoining = False
                    return
                wait = min(wait * 2, 10.0)
                continue
            with self._lock:
                if self._closed:
                    self._rejoining = False
                    return
                if self._lease is lease:
                    self.on_serving()
                    self.member = dataclasses.replace(self.member, state=ShardState.SERVING)
                    self._put()
                    self._rejoining = False
                    break
        log.info("shard %s caught up after its lost lease: serving", self.member.shard_id)

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
