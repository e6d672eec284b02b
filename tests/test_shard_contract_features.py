"""The `Shard` contract's feature methods (coordinator/shard.py:
`get_feature_columns`, `put_features`), run against the in-memory shard and
a real shard process like the rest of the suite (tests/test_shard_contract_*.py,
with the fixtures of tests/shard_contract_support.py): precedence of writes,
every missing reason with its fill, staleness, privacy, several groups in one
call, and bad requests refused whole."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import pytest

from coordinator.model import GroupFetch
from coordinator.shard import Shard
from core.column_wire import resolved_from_pb
from core.domain import EntityKey, VersionRef
from core.errors import InvalidArgument, NotFound
from core.feature_columns import from_values
from core.wire import resolved_value_from_pb, resolved_value_to_pb
from protos.vecshard.v1.common_pb2 import ResolvedFeatureColumns
from registry.feature_batches import RowBatch, rows_to_batch
from registry.feature_values import resolved_values
from registry.features import GroupRow, GroupSchema
from registry.watcher import SnapshotCache
from tests import shard_contract_support as support
from tests.shard_contract_support import T0, TIMEOUT, Names, S, run

pytestmark = pytest.mark.integration

# The suite's fixtures, bound by name (tests/shard_contract_support.py says why).
cluster, registry = support.cluster, support.registry
make_shard, names = support.make_shard, support.names


def test_features_put_and_get_with_precedence_and_missing_reasons(
    make_shard: Callable[[], Shard], names: Names, registry: SnapshotCache
) -> None:
    label, ctr, clicks, quality = (f"{f}{names.tag}" for f in ("label", "ctr", "clicks", "quality"))
    u1, u2 = (EntityKey("t", "user", u) for u in ("u1", "u2"))

    async def get_many(shard: Shard, fetches: list[GroupFetch], personalized: bool = True
                       ) -> list[list[list[tuple[object, ...]]]]:  # fmt: skip
        """Per fetch, per entity, the resolved values as plain tuples."""
        answers = await shard.get_feature_columns("t", fetches, T0 + 60 * S, personalized, TIMEOUT)
        assert len(answers) == len(fetches)
        return [
            [[resolved_value_from_pb(resolved_value_to_pb(v)) for v in row]
             for row in resolved_values(resolved_from_pb(cast(ResolvedFeatureColumns, a)))]
            for a in answers
        ]  # fmt: skip

    async def get(shard: Shard, group: VersionRef, feats: list[str], ids: list[str],
                  personalized: bool = True) -> list[list[tuple[object, ...]]]:  # fmt: skip
        (one,) = await get_many(shard, [GroupFetch(group, tuple(feats), ids)], personalized)
        return one

    async def put(shard: Shard, group: VersionRef, rows: list[GroupRow]) -> tuple[int, int]:
        return await shard.put_features(group, rows_to_batch(schema(group), rows), TIMEOUT)

    async def body(shard: Shard) -> None:
        rows = [
            GroupRow(u1, T0, T0, {label: "gold", ctr: 0.25}),
            GroupRow(u2, T0 - 2 * 3600 * S, T0, {label: None, ctr: 0.5}),
        ]
        assert await put(shard, names.group, rows) == (2, 0)
        assert await get(shard, names.group, [ctr, label], ["u1", "u2", "u9"]) == [
            [(0.25, None, None, 60 * S, T0), ("gold", None, None, 60 * S, T0)],
            [(0.5, "stale", None, 7260 * S, T0 - 7200 * S),  # a stale value is still served
             ("none", "no_history", "feature_default", 7260 * S, T0 - 7200 * S)],
            [(0.0, "entity_not_found", "feature_default", None, None),
             ("none", "entity_not_found", "feature_default", None, None)],
        ]  # fmt: skip
        older = GroupRow(u1, T0 - S, T0 + S, {label: "old"})
        same_event_earlier_run = GroupRow(u1, T0, T0 - S, {label: "early"})
        assert await put(shard, names.group, [older, same_event_earlier_run]) == (0, 2)
        rerun = GroupRow(u1, T0, T0 + S, {label: "rerun", ctr: 0.3})
        assert await put(shard, names.group, [rerun]) == (1, 0)
        assert await put(shard, names.group, [rerun]) == (1, 0)  # equal replaces
        (u1_now,) = await get(shard, names.group, [label], ["u1"])
        assert u1_now == [("rerun", None, None, 60 * S, T0)]
        # A behavioural group is not served to a non-personalized request.
        await put(shard, names.private, [GroupRow(u1, T0, T0, {clicks: 4})])
        assert await get(shard, names.private, [clicks], ["u1"]) == [[(4, None, None, 60 * S, T0)]]
        assert await get(shard, names.private, [clicks], ["u1"], personalized=False) == [
            [(0, "privacy_disabled", "feature_default", None, None)]
        ]
        # A group this shard never stored anything for: not computed. Several
        # groups in one call, each answered in its own entity order.
        both = await get_many(
            shard,
            [GroupFetch(names.unwritten, (quality,), ["i1", "i2"]),
             GroupFetch(names.group, (label,), ["u2", "u1"])],
        )  # fmt: skip
        assert both == [
            [[(0.5, "not_computed", "feature_default", None, None)]] * 2,
            [[("none", "no_history", "feature_default", 7260 * S, T0 - 7200 * S)],
             [("rerun", None, None, 60 * S, T0)]],
        ]  # fmt: skip
        # Two groups of one type asked for the same entities share the ids.
        ids = ["u1", "u9"]
        shared = await get_many(
            shard,
            [GroupFetch(names.group, (label,), ids), GroupFetch(names.private, (clicks,), ids)],
        )
        assert shared == [
            [[("rerun", None, None, 60 * S, T0)],
             [("none", "entity_not_found", "feature_default", None, None)]],
            [[(4, None, None, 60 * S, T0)], [(0, "entity_not_found", "feature_default", None, None)]],
        ]  # fmt: skip
        with pytest.raises(InvalidArgument):
            await get(shard, names.group, ["nosuchfeature"], ["u1"])
        with pytest.raises(NotFound):
            await get(shard, VersionRef("nosuchgroup", "v1"), [label], ["u1"])
        # A bad row refuses the whole batch: nothing is written.
        bad = RowBatch(
            [EntityKey("t", "user", "u7"), EntityKey("t", "user", "u8")],
            np.array([T0, T0]),
            np.array([T0, T0]),
            {ctr: from_values("float_list", [(1.0,), (2.0,)])},
        )
        with pytest.raises(InvalidArgument, match=ctr):
            await shard.put_features(names.group, bad, TIMEOUT)
        assert (await get(shard, names.group, [ctr], ["u7"]))[0][0][1] == "entity_not_found"
        # So does a time out of range (nanoseconds here); and a read's own time.
        late = RowBatch([EntityKey("t", "user", "u7")], np.array([T0 * 1000]), np.array([T0]), {})
        with pytest.raises(InvalidArgument, match="feature_timestamp .* nanoseconds"):
            await shard.put_features(names.group, late, TIMEOUT)
        assert (await get(shard, names.group, [ctr], ["u7"]))[0][0][1] == "entity_not_found"
        fetch = GroupFetch(names.group, (ctr,), ["u1"])
        with pytest.raises(InvalidArgument, match="request_time_us -1; expected"):
            await shard.get_feature_columns("t", [fetch], -1, True, TIMEOUT)

    def schema(group: VersionRef) -> GroupSchema:
        return registry.snapshot.feature_catalog.schema(group)

    run(make_shard, body)
