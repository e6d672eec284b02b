"""The soak's mixed workload: concurrent writers with overlapping keys and
out-of-order versions, deletes, lookups, searches and route switches, every
answer checked against the model (`benchmarks.soak_model`) as it arrives.

Versions: each operation draws a unique number from one counter and lags it
by a random amount, so writes of one key arrive out of order on purpose (the
shards must ignore the older ones). The low 20 bits carry the counter, which
keeps every version unique.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from benchmarks.soak_model import Key, Model, Op, Violation, vector_of
from client.credentials import Credentials
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.errors import VecshardError

FAMILY = ("soak", "v1")
ROUTE = "soak_route"
BUNDLES = ("soak_b1", "soak_b2")
PURPOSE = "soak"


@dataclass(frozen=True)
class WorkloadSettings:
    tenants: tuple[str, ...] = ("s1", "s2")
    keys_per_tenant: int = 150
    dim: int = 8
    writers: int = 2
    readers: int = 2  # each with its own client: one call per read
    # Threads per tenant sharing one client, as a serving tier's request
    # threads do: their concurrent searches and lookups are coalesced by the
    # SDK into SearchBatch and BatchGetEmbeddings calls (`client.call_coalescing`),
    # so each answer cut out of a shared call is checked too.
    shared_readers: int = 4
    max_lag: int = 40  # how far back (in operations) a version may be drawn
    timeout: float = 6.0


@dataclass
class Tally:
    ops: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.ops[what] += n

    def flag(self, found: Sequence[Violation]) -> None:
        if found:
            with self.lock:
                self.violations.extend(found)


class Versions:
    def __init__(self, seed: int, max_lag: int) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.max_lag = max_lag

    def next(self) -> int:
        with self._lock:
            n = next(self._counter)
            lag = self._rng.randint(0, self.max_lag)
        return (max(1, n - lag) << 20) | n


def finish(tally: Tally, ops: Sequence[Op], kind: str, call: Callable[[], object]) -> None:
    """Sends a write and records in the model how each of its ops ended
    (acknowledged, or failed: ambiguous, it may have reached some replicas)."""
    try:
        call()
        ok = True
    except VecshardError as exc:
        ok = False
        tally.count(f"{kind}_failed:{exc.code.name}")
    now = time.monotonic()
    for op in ops:
        Model.end(op, ok, now)
    if ok:
        tally.count(f"{kind}_ok", len(ops))


def entity(n: int) -> str:
    return f"e{n:05d}"


Write = Callable[[RetrievalClient, str, Sequence[str]], None]


def preload(client: Callable[[str], RetrievalClient], s: WorkloadSettings, write: Write) -> None:
    """Every key of every tenant written once, 50 to a call, before the faults."""
    for tenant in s.tenants:
        with client(tenant) as c:
            ids = [entity(n) for n in range(s.keys_per_tenant)]
            for i in range(0, len(ids), 50):
                write(c, tenant, ids[i : i + 50])


def ids_to_write(rng: random.Random, s: WorkloadSettings) -> list[str]:
    """One to four distinct keys: writers overlap on the same keys on purpose."""
    picks = (rng.randrange(s.keys_per_tenant) for _ in range(rng.randint(1, 4)))
    return list(dict.fromkeys(entity(p) for p in picks))


class Threads:
    """A soak part's daemon threads: started together, ended by one event."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, targets: Sequence[Callable[[], None]]) -> None:
        for fn in targets:
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self._threads.append(t)

    def join(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=60)


def tenant_loop(
    client: Callable[[str], RetrievalClient],
    s: WorkloadSettings,
    stop: threading.Event,
    n: int,
    seed: int,
    step: Callable[[RetrievalClient, str, random.Random], None],
) -> None:
    """Thread `n`'s body: one client of its tenant, `step` again and again
    (with the thread's own seeded random draws) until `stop`."""
    rng = random.Random(seed)
    tenant = s.tenants[n % len(s.tenants)]
    with client(tenant) as c:
        while not stop.is_set():
            step(c, tenant, rng)


class Workload:
    def __init__(
        self,
        target: str,
        settings: WorkloadSettings,
        model: Model,
        tally: Tally,
        seed: int,
        credentials: Credentials | None = None,
    ) -> None:
        self.target = target
        self.credentials = credentials
        self.s = settings
        self.model = model
        self.tally = tally
        self.seed = seed
        self.versions = Versions(seed, settings.max_lag)
        self.threads = Threads()
        self.stop = self.threads.stop

    def client(self, tenant: str) -> RetrievalClient:
        return RetrievalClient(
            self.target,
            tenant_id=tenant,
            purpose=PURPOSE,
            timeout=self.s.timeout,
            credentials=self.credentials,
        )

    # -- writes ------------------------------------------------------------------------

    def upsert(self, c: RetrievalClient, tenant: str, ids: Sequence[str]) -> None:
        versions = [self.versions.next() for _ in ids]
        ops = [
            self.model.issue((tenant, eid), "upsert", v, time.monotonic())
            for eid, v in zip(ids, versions, strict=True)
        ]
        records = [
            Record(eid, vector_of(eid, v, self.s.dim), source_version=v)
            for eid, v in zip(ids, versions, strict=True)
        ]
        self._finish(ops, "upsert", lambda: c.upsert(*FAMILY, records))

    def delete(self, c: RetrievalClient, tenant: str, ids: Sequence[str]) -> None:
        v = self.versions.next()
        ops = [self.model.issue((tenant, eid), "delete", v, time.monotonic()) for eid in ids]
        self._finish(ops, "delete", lambda: c.delete(*FAMILY, list(ids), source_version=v))

    def _finish(self, ops: Sequence[Op], kind: str, call: Callable[[], object]) -> None:
        finish(self.tally, ops, kind, call)

    def preload(self) -> None:
        preload(self.client, self.s, self.upsert)

    def _writer(self, n: int) -> None:
        tenant_loop(self.client, self.s, self.stop, n, self.seed * 1000 + n, self._write)

    def _write(self, c: RetrievalClient, tenant: str, rng: random.Random) -> None:
        ids = ids_to_write(rng, self.s)
        if rng.random() < 0.75:
            self.upsert(c, tenant, ids)
        else:
            self.delete(c, tenant, ids)

    # -- reads -------------------------------------------------------------------------

    def lookup(
        self, c: RetrievalClient, tenant: str, ids: Sequence[str], columnar: bool = False
    ) -> None:
        """`columnar`: through `get_embeddings`, the answer the SDK coalesces
        (a part of a shared call when other threads read too); else
        `batch_get`, one message per key."""
        start = time.monotonic()
        try:
            if columnar:
                got = c.get_embeddings(*FAMILY, list(ids))
                answers = [
                    (status, int(got.source_version[i]), got.vectors[i])
                    for i, status in enumerate(got.statuses())
                ]
            else:
                answers = [
                    (lk.status, lk.source_version, lk.vector)
                    for lk in c.batch_get(*FAMILY, list(ids))
                ]
        except VecshardError as exc:
            self.tally.count(f"lookup_failed:{exc.code.name}")
            return
        end = time.monotonic()
        for eid, (status, version, vector) in zip(ids, answers, strict=True):
            if status == "unavailable":
                self.tally.count("lookup_key_unavailable")
                continue
            self.tally.flag(
                self.model.check_lookup(
                    (tenant, eid), start, end, status, version,
                    vector if status == "found" else None, self.s.dim,
                )
            )  # fmt: skip
        self.tally.count("lookup_columns_ok" if columnar else "lookup_ok")

    def search(self, c: RetrievalClient, tenant: str, rng: random.Random) -> None:
        eid = entity(rng.randrange(self.s.keys_per_tenant))
        key: Key = (tenant, eid)
        start = time.monotonic()
        version = self.model.stable(key, start, start)
        query = (
            vector_of(eid, version, self.s.dim)
            if version is not None
            else np.random.default_rng(rng.randrange(1 << 30)).normal(size=self.s.dim)
        )
        try:
            res = c.search(ROUTE, query, 10)
        except VecshardError as exc:
            self.tally.count(f"search_failed:{exc.code.name}")
            return
        end = time.monotonic()
        hits = [(h.key.tenant_id, h.key.entity_id) for h in res.hits]
        self.tally.flag(
            self.model.check_search(
                tenant, start, end, hits, res.partial, key if version is not None else None
            )
        )
        self.tally.count("search_partial" if res.partial else "search_ok")

    def _reads(self, c: RetrievalClient, tenant: str, n: int, columnar: bool) -> None:
        rng = random.Random(self.seed * (3000 if columnar else 2000) + n)
        while not self.stop.is_set():
            if rng.random() < 0.5:
                ids = [entity(rng.randrange(self.s.keys_per_tenant + 20)) for _ in range(8)]
                self.lookup(c, tenant, list(dict.fromkeys(ids)), columnar)
            else:
                self.search(c, tenant, rng)

    def _reader(self, n: int) -> None:
        tenant = self.s.tenants[n % len(self.s.tenants)]
        with self.client(tenant) as c:
            self._reads(c, tenant, n, columnar=False)

    def _shared_readers(self, tenant: str, first: int) -> None:
        """`shared_readers` threads on one client; counts how many of their
        reads went out in shared calls when they stop."""
        with self.client(tenant) as c:
            threads = [
                threading.Thread(target=self._reads, args=(c, tenant, first + i, True))
                for i in range(self.s.shared_readers)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for kind, coalescer in (("search", c.searches), ("lookup", c.lookups)):
                if coalescer is not None:
                    self.tally.count(f"{kind}_in_shared_calls", coalescer.stats.batched_queries)
                    self.tally.count(f"{kind}_shared_calls", coalescer.stats.batches)
                    self.tally.count(f"{kind}_resent_alone", coalescer.stats.resent)

    # -- registry ----------------------------------------------------------------------

    def _switcher(self) -> None:
        """Switches the route between two bundles of the same index: searches
        must keep answering through every switch."""
        with RegistryClient(
            self.target, who="soak", timeout=self.s.timeout, credentials=self.credentials
        ) as reg:
            n = 0
            while not self.stop.wait(2.0):
                n += 1
                try:
                    reg.switch_route(ROUTE, BUNDLES[n % 2], why=f"soak switch {n}")
                    self.tally.count("route_switch_ok")
                except VecshardError as exc:
                    self.tally.count(f"route_switch_failed:{exc.code.name}")

    def start(self) -> None:
        targets: list[Callable[[], None]] = [
            *(lambda n=n: self._writer(n) for n in range(self.s.writers)),
            *(lambda n=n: self._reader(n) for n in range(self.s.readers)),
            *(
                lambda i=i, t=t: self._shared_readers(t, i * self.s.shared_readers)
                for i, t in enumerate(self.s.tenants)
                if self.s.shared_readers
            ),
            self._switcher,
        ]
        self.threads.start(targets)

    def join(self) -> None:
        self.threads.join()
