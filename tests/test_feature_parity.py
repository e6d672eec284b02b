"""Offline/online parity (DESIGN §7): a data set is written to the offline
store, materialized day by day into a real RocksDB feature store, served
through the online read path, and joined offline at the same timestamps; every
value, missing reason, default and staleness must be equal.

The online path here is the flow GetFeatures follows on a shard: decide the
readable groups first (behavioural groups are never read for a
non-personalized request — the storage below records every read), read each
group's columns, resolve them with `resolve_columns`; the offline join picks
each event's as-of row and resolves it with the same function.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from core.domain import EntityKey
from offline.materialize import MaterializeJob, materialize
from offline.parquet_store import OfflineStore
from offline.pit_join import load_group_tables, point_in_time_values
from registry.feature_batches import StoredRows
from registry.feature_catalog import readable, readable_groups
from registry.feature_values import FeatureValue, resolve_columns, resolved_values
from registry.features import MissingReason
from shard_server.feature_store import FeatureShardStore, FeatureStore, entity_key
from tests.feature_catalog import (
    ACTIVITY,
    CATALOG,
    DAY,
    HOUR,
    ITEM,
    MINUTE,
    PROFILE,
    RANKER,
    SESSION,
    T0,
    item,
    row,
    user,
)

MIDNIGHT = (T0 // DAY + 1) * DAY  # 2023-11-15T00:00Z
DAYS = ("2023-11-15", "2023-11-16", "2023-11-17")
WRITTEN = (PROFILE, ACTIVITY, SESSION, ITEM)  # item_quality is never written: not_computed


class RecordingStorage(FeatureShardStore):
    """The real shard storage, remembering which column families were read."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads: list[str] = []

    def multi_get(self, cf: str, keys: Sequence[bytes]) -> list[bytes | None]:
        self.reads.append(cf)
        return super().multi_get(cf, keys)


def data_set(rng: random.Random) -> dict:
    """Rows of every written group over three days: out of order, recomputed
    (same time, later generation), nulls, two tenants, some entities absent."""
    users = [user(f"u{i}") for i in range(25)] + [user("u0", "other")]
    items = [item(f"i{i}") for i in range(15)]

    def at(day: int) -> int:
        return MIDNIGHT + day * DAY + rng.randrange(DAY // MINUTE) * MINUTE

    def maybe(value: object) -> object:
        return None if rng.random() < 0.15 else value

    out: dict = {g: [] for g in WRITTEN}
    for day in range(3):
        for k in rng.sample(users, 15):
            out[PROFILE].append(row(k, at(day), age_bucket=maybe(rng.choice(["18-24", "25-34"])),
                                    account_days=maybe(rng.randrange(900)), premium=maybe(rng.random() < 0.3)))  # fmt: skip
        for _ in range(40):
            k, ts = rng.choice(users[:20]), at(day)
            gen = ts + rng.randrange(3) * MINUTE
            out[ACTIVITY].append(row(k, ts, gen=gen, ctr_7d=maybe(round(rng.random(), 3)),
                                     taste=maybe([rng.random(), rng.random()])))  # fmt: skip
        for r in rng.sample(out[ACTIVITY][-40:], 12):  # recomputed later, other value
            out[ACTIVITY].append(row(r.entity, r.feature_timestamp, gen=r.generated_at + HOUR,
                                     ctr_7d=maybe(0.5), taste=None))  # fmt: skip
        for _ in range(30):
            out[SESSION].append(
                row(rng.choice(users[:20]), at(day), session_clicks=maybe(rng.randrange(9)))
            )
        for k in rng.sample(items, 10):
            out[ITEM].append(
                row(k, at(day), popularity=maybe(rng.random()), category=maybe("books"))
            )
    for rows in out.values():
        rng.shuffle(rows)
    return out


def events_at(t: int, rng: random.Random) -> pa.Table:
    pairs = [(f"u{rng.randrange(27)}", f"i{rng.randrange(17)}") for _ in range(40)]  # some unknown
    return pa.table(
        {
            "tenant_id": ["acme"] * 39 + ["other"],
            "user_id": [u for u, _ in pairs],
            "item_id": [i for _, i in pairs],
            "event_time": pa.array([t] * len(pairs), pa.int64()),
        }
    )


def online_values(fs: FeatureStore, events: pa.Table, t: int, personalized: bool) -> dict:
    """Values for every event as a shard serves them at time `t`: read the
    group's columns, resolve them with `resolve_columns`."""
    tenants = events.column("tenant_id").to_pylist()
    out: dict[str, list[FeatureValue]] = {}
    fetched = {r.schema.ref for r in readable_groups(RANKER, CATALOG, personalized)}
    for read in CATALOG.plan(RANKER):
        et = read.schema.group.entity_type
        keys = [
            entity_key(EntityKey(tn, et, e))
            for tn, e in zip(tenants, events.column(f"{et}_id").to_pylist(), strict=True)
        ]
        stored: StoredRows | MissingReason
        if read.schema.ref not in fetched:
            assert not readable(read.schema, personalized)
            stored = MissingReason.PRIVACY_DISABLED
        elif not fs.has_group(read.schema.ref):
            stored = MissingReason.NOT_COMPUTED
        else:
            stored = fs.read(read.schema, keys)
        resolved = resolve_columns(read, stored, t, personalized, rows=len(keys))
        per_event = resolved_values(resolved)
        for j, name in enumerate(read.outputs):
            out[name] = [v[j] for v in per_event]
    return out


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[RecordingStorage]:
    s = RecordingStorage(tmp_path / "shard")
    yield s
    s.close()


def test_online_and_offline_agree_value_by_value(tmp_path: Path, storage: RecordingStorage) -> None:
    rng = random.Random(11)
    offline = OfflineStore(tmp_path / "offline")
    for group, rows in data_set(rng).items():
        offline.write_features(CATALOG.schema(group), rows)
    fs = FeatureStore(storage)
    seen: Counter = Counter()
    compared = 0
    for d, day in enumerate(DAYS):
        for group in WRITTEN:
            job = MaterializeJob(CATALOG.schema(group), start_date=day, end_date=day, batch_size=17)
            materialize(job, offline, fs, tmp_path / f"ck-{group.name}-{day}.json", progress=None)
        end_of_day = MIDNIGHT + (d + 1) * DAY
        # At the day's end, just past the session TTL, past the SLAs, days later.
        for t in (
            end_of_day,
            end_of_day + 5 * MINUTE,
            end_of_day + 31 * MINUTE,
            end_of_day + 2 * HOUR,
            end_of_day + 3 * DAY,
        ):
            ev = events_at(t, rng)
            for personalized in (True, False):
                storage.reads.clear()
                online = online_values(fs, ev, t, personalized)
                if not personalized:
                    assert not any(
                        cf.startswith(("features:user_activity", "features:session"))
                        for cf in storage.reads
                    )
                tables = load_group_tables(
                    ev, RANKER, CATALOG, offline, personalized=personalized, end_date=day
                )
                offline_vals = point_in_time_values(
                    ev, RANKER, CATALOG, tables, personalized=personalized
                )
                assert list(online) == list(offline_vals)
                for name in online:
                    for i, (a, b) in enumerate(zip(online[name], offline_vals[name], strict=True)):
                        assert a == b, (
                            f"{name}, event {i} at {t} (personalized={personalized}): online {a} offline {b}"
                        )
                        seen[a.missing_reason] += 1
                        compared += 1
    assert compared == 3 * 5 * 2 * 40 * len(RANKER.features)
    # The comparison exercised every reason the offline side can produce.
    online_only = {MissingReason.TIMEOUT, MissingReason.UNAVAILABLE}
    assert set(seen) == {None, *MissingReason} - online_only
