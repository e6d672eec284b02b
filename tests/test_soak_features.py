"""The soak's feature checks on fabricated answers: how a GetFeatures column
reads as (status, version, intact), and that each rule fires on the feature
answer it forbids and stays quiet on the ones the rules allow."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.soak_features import FeatureTraffic, read_answers, timestamp_of
from benchmarks.soak_workload import Tally, WorkloadSettings
from client.retrieval_client import RetrievalClient

V = (3 << 20) | 9  # a version as the soak draws them


@dataclass
class Column:
    """The parts of a `client.feature_results.FeatureArray` the check reads."""

    values: np.ndarray
    stored: np.ndarray
    feature_timestamp_us: np.ndarray
    reasons_: list[str | None]

    def reasons(self) -> list[str | None]:
        return self.reasons_


def column(*rows: tuple[float, bool, int, str | None]) -> Column:
    return Column(
        np.array([r[0] for r in rows], dtype=np.float64),
        np.array([r[1] for r in rows], dtype=np.bool_),
        np.array([r[2] for r in rows], dtype=np.int64),
        [r[3] for r in rows],
    )


def test_a_column_reads_as_found_missing_unread_or_unexpected() -> None:
    c = column(
        (float(V), True, timestamp_of(V), None),  # the row version V wrote
        (float(V), True, timestamp_of(V) + 1, None),  # V's value, another row's timestamp
        (0.0, False, 0, "entity_not_found"),
        (0.0, False, 0, "not_computed"),
        (0.0, False, 0, "unavailable"),
        (0.0, False, 0, "timeout"),
        (0.0, False, 0, "stale"),
        (float("nan"), True, timestamp_of(V), None),  # corrupt: no version wrote it
        (V + 0.5, True, timestamp_of(V), None),
    )
    assert read_answers(c.values, c.stored, c.feature_timestamp_us, c.reasons()) == [
        ("found", V, True),
        ("found", V, False),
        ("missing", 0, True),
        ("missing", 0, True),
        None,
        None,
        ("unexpected:stale", 0, True),
        ("found", V, False),
        ("found", V, False),
    ]


def traffic_after_acknowledged(version: int) -> tuple[FeatureTraffic, Tally]:
    """A checker whose model saw `version` of (t1, e00001) acknowledged at 2
    and a newer write still in flight."""

    def no_client(tenant: str) -> RetrievalClient:
        raise AssertionError("the check reads no cluster")

    tally = Tally()
    t = FeatureTraffic(no_client, WorkloadSettings(), tally, seed=1)
    t.model.end(t.model.issue(("t1", "e00001"), "upsert", version, 1.0), True, 2.0)
    t.model.issue(("t1", "e00001"), "upsert", version + 1, 3.0)
    return t, tally


def rules_for(col: Column) -> list[str]:
    t, tally = traffic_after_acknowledged(V)
    t.check("t1", ["e00001"], col, start=4.0, end=5.0)
    return sorted(v.rule for v in tally.violations)


def test_each_feature_rule_fires_on_what_it_forbids() -> None:
    older = V - 1
    assert rules_for(column((float(V), True, timestamp_of(V), None))) == []
    # The in-flight write may or may not be visible yet.
    assert rules_for(column((float(V + 1), True, timestamp_of(V + 1), None))) == []
    assert rules_for(column((0.0, False, 0, "unavailable"))) == []
    assert rules_for(column((0.0, False, 0, "entity_not_found"))) == ["features_lost_write"]
    assert rules_for(column((float(older), True, timestamp_of(older), None))) == [
        "features_lost_write",
        "features_phantom",
    ]
    assert rules_for(column((float(V), True, timestamp_of(V) + 5, None))) == ["features_corrupt"]
    assert rules_for(column((float(V + 7), True, timestamp_of(V + 7), None))) == [
        "features_phantom"
    ]
    assert rules_for(column((0.0, False, 0, "privacy_disabled"))) == ["features_reason"]
    assert rules_for(column((float("nan"), True, timestamp_of(V), None))) == ["features_corrupt"]
