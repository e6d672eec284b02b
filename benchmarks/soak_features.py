"""The soak's feature traffic (issue 13's path under chaos): PutFeatures of
rows arriving out of order and GetFeatures reads, from each tenant, checked
against their own model of acknowledged writes by the rules lookups answer to
(`benchmarks.soak_model.Model.check_read`).

A row's version is its feature timestamp (`timestamp_of`): the shards keep
the newest, so an older row sent late must be ignored, exactly as an older
embedding version is. Its one feature's value is the version itself (exact in
float64), so a read names the write it came from, and a value that does not
match its row's timestamp is corruption. The feature group has two replicas
per bucket, like the index: a write is acknowledged once both have it on
disk and must survive either's SIGKILL; a read goes on while one replica is
down (`feature_key_unavailable` counts the values that could not be read).
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.soak_model import Key, Model, Violation
from benchmarks.soak_workload import (
    Tally,
    Threads,
    Versions,
    WorkloadSettings,
    entity,
    finish,
    ids_to_write,
    preload,
    tenant_loop,
)
from client.retrieval_client import RetrievalClient
from core.errors import VecshardError

GROUP = ("soak_stats", "v1")
FEATURE_SET = ("soak_features", "v1")
FEATURE = "soak_score"
ENTITY_TYPE = "item"
# Versions count up from 1 << 20; on top of this (2017) every timestamp is in
# the past, so no read treats a row as not yet valid.
BASE_US = 1_500_000_000 * 1_000_000
# Reasons that say the row could not be read now: they claim nothing.
UNREAD = frozenset({"unavailable", "timeout"})
# Reasons that say there is no row.
ABSENT = frozenset({"entity_not_found", "no_history", "not_computed"})


def feature_spec() -> list[dict[str, Any]]:
    group, version = GROUP
    return [
        {
            "kind": "FeatureDefinition",
            "spec": {"name": FEATURE, "version": "v1", "entity_type": ENTITY_TYPE,
                     "dtype": "float64", "privacy_class": "public", "owner": "soak"},
        },
        {
            "kind": "FeatureGroup",
            "replicas": 2,
            "spec": {"name": group, "version": version, "entity_type": ENTITY_TYPE,
                     "features": [{"name": FEATURE, "version": "v1"}]},
        },
        {
            "kind": "FeatureSet",
            "spec": {"name": FEATURE_SET[0], "version": FEATURE_SET[1],
                     "features": [{"group": group, "group_version": version,
                                   "feature": FEATURE, "alias": FEATURE}]},
        },
    ]  # fmt: skip


def timestamp_of(version: int) -> int:
    return BASE_US + version


def read_answers(
    values: np.ndarray, stored: np.ndarray, timestamps: np.ndarray, reasons: Sequence[str | None]
) -> list[tuple[str, int, bool] | None]:
    """Per entity of a GetFeatures answer, (status, version, intact) for
    `Model.check_read`, or None where the answer claims nothing (the shard
    could not be read). A reason outside those the soak's feature can give
    reads as ("unexpected:<reason>", 0, True)."""
    out: list[tuple[str, int, bool] | None] = []
    for value, has_row, ts, reason in zip(
        values.tolist(), stored.tolist(), timestamps.tolist(), reasons, strict=True
    ):
        if reason in UNREAD:
            out.append(None)
        elif reason is None and has_row:
            if math.isfinite(value) and value == int(value):
                version = int(value)
                out.append(("found", version, ts == timestamp_of(version)))
            else:  # no version wrote it (NaN, a fraction): the row's timestamp names it
                out.append(("found", ts - BASE_US, False))
        elif reason in ABSENT and not has_row:
            out.append(("missing", 0, True))
        else:
            out.append((f"unexpected:{reason}", 0, True))
    return out


class FeatureTraffic:
    """A writer and a reader thread per tenant, on the soak's feature group."""

    def __init__(
        self,
        client: Callable[[str], RetrievalClient],
        settings: WorkloadSettings,
        tally: Tally,
        seed: int,
    ) -> None:
        self.client, self.s, self.tally, self.seed = client, settings, tally, seed
        self.model = Model()
        self.versions = Versions(seed + 7, settings.max_lag)
        self.threads = Threads()
        self.stop = self.threads.stop

    def put(self, c: RetrievalClient, tenant: str, ids: Sequence[str]) -> None:
        versions = [self.versions.next() for _ in ids]
        now = time.monotonic()
        ops = [
            self.model.issue((tenant, eid), "upsert", v, now)
            for eid, v in zip(ids, versions, strict=True)
        ]
        rows = [
            ((ENTITY_TYPE, eid), timestamp_of(v), {FEATURE: float(v)})
            for eid, v in zip(ids, versions, strict=True)
        ]
        finish(self.tally, ops, "feature_put", lambda: c.put_features(*GROUP, rows))

    def get(self, c: RetrievalClient, tenant: str, ids: Sequence[str]) -> None:
        start = time.monotonic()
        try:
            res = c.get_features(*FEATURE_SET, {ENTITY_TYPE: list(ids)})
        except VecshardError as exc:
            self.tally.count(f"feature_get_failed:{exc.code.name}")
            return
        end = time.monotonic()
        self.check(tenant, ids, res.column(ENTITY_TYPE, FEATURE), start, end)
        self.tally.count("feature_get_ok")

    def check(self, tenant: str, ids: Sequence[str], col: Any, start: float, end: float) -> None:
        answers = read_answers(col.values, col.stored, col.feature_timestamp_us, col.reasons())
        for eid, answer in zip(ids, answers, strict=True):
            key: Key = (tenant, eid)
            if answer is None:
                self.tally.count("feature_key_unavailable")
            elif answer[0].startswith("unexpected:"):
                self.tally.flag([Violation("features_reason", key, answer[0])])
            else:
                found = self.model.check_read(key, start, end, *answer)
                self.tally.flag([Violation(f"features_{v.rule}", key, v.detail) for v in found])

    def preload(self) -> None:
        preload(self.client, self.s, self.put)

    def _writer(self, n: int) -> None:
        tenant_loop(self.client, self.s, self.stop, n, self.seed * 5000 + n, self._write)

    def _write(self, c: RetrievalClient, tenant: str, rng: random.Random) -> None:
        self.put(c, tenant, ids_to_write(rng, self.s))

    def _reader(self, n: int) -> None:
        tenant_loop(self.client, self.s, self.stop, n, self.seed * 6000 + n, self._read)

    def _read(self, c: RetrievalClient, tenant: str, rng: random.Random) -> None:
        picks = (rng.randrange(self.s.keys_per_tenant + 20) for _ in range(8))
        self.get(c, tenant, list(dict.fromkeys(entity(p) for p in picks)))

    def start(self) -> None:
        loops = (self._writer, self._reader)  # a writer and a reader per tenant
        tenants = range(len(self.s.tenants))
        self.threads.start([functools.partial(fn, n) for n in tenants for fn in loops])

    def join(self) -> None:
        self.threads.join()

    def final_check(self, clients: Sequence[Callable[[str], RetrievalClient]]) -> int:
        """Every key's row through each coordinator once the faults stopped
        (every write has ended: the newest acknowledged one must be there)."""
        now = time.monotonic()
        ids = [entity(n) for n in range(self.s.keys_per_tenant)]
        for client in clients:
            for tenant in self.s.tenants:
                with client(tenant) as c:
                    for i in range(0, len(ids), 100):
                        chunk = ids[i : i + 100]
                        res = c.get_features(*FEATURE_SET, {ENTITY_TYPE: chunk})
                        self.check(tenant, chunk, res.column(ENTITY_TYPE, FEATURE), now, now)
        return len(ids) * len(self.s.tenants)
