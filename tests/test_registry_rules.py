"""Table-driven tests of the registry's pure rules: the version state machine,
every compatibility rule, and canary assignment."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from core.domain import Metric, VersionRef
from core.errors import FailedPrecondition
from registry.compat import BundleParts, check_bundle
from registry.lifecycle import check_transition
from registry.model import Bundle, EmbeddingFamily, EmbeddingVersion, IndexVersion, Status
from registry.snapshot import in_canary

S = Status
LEGAL = {
    (S.BUILDING, S.VALIDATING),
    (S.BUILDING, S.FAILED),
    (S.VALIDATING, S.READY),
    (S.VALIDATING, S.FAILED),
    (S.READY, S.PRODUCTION),
    (S.READY, S.DEPRECATED),
    (S.PRODUCTION, S.DEPRECATED),
    (S.DEPRECATED, S.PRODUCTION),  # rollback re-promotes
    (S.DEPRECATED, S.ARCHIVED),  # rollback retention ended
}


@pytest.mark.parametrize(
    ("current", "target"), list(itertools.product(Status, Status)), ids=lambda s: s.value
)
def test_every_status_move(current: Status, target: Status) -> None:
    if current == target or (current, target) in LEGAL:
        check_transition("v", current, target)
    else:
        with pytest.raises(
            FailedPrecondition, match=f"cannot move from {current.value} to {target.value}"
        ):
            check_transition("v", current, target)


Q = EmbeddingFamily("users", "user", 8, Metric.COSINE, normalize=True)
ITEM = EmbeddingFamily(
    "items", "item", 8, Metric.COSINE, normalize=True, compatible_query_families=("users",)
)
QV = EmbeddingVersion("users", "v1")
IV = EmbeddingVersion("items", "v1", compatible_query_versions=(VersionRef("users", "v1"),))
IX = IndexVersion("items-ix", "v1", VersionRef("items", "v1"))
BASE = BundleParts(Bundle("b", QV.ref, IV.ref, IX.ref), Q, QV, ITEM, IV, IX)


def with_(**changes: Any) -> BundleParts:
    return dataclasses.replace(BASE, **changes)


CASES = [
    ("compatible", BASE, None),
    (
        "same family and version",
        with_(query_family=ITEM, query_version=EmbeddingVersion("items", "v1")),
        None,
    ),
    (
        "family not declared",
        with_(item_family=dataclasses.replace(ITEM, compatible_query_families=())),
        "query family 'users' is not declared compatible with item family 'items'",
    ),
    (
        "version not declared",
        with_(item_version=dataclasses.replace(IV, compatible_query_versions=())),
        "query embedding version users@v1 is not declared compatible with item embedding version items@v1",
    ),
    (
        "other version declared",
        with_(query_version=EmbeddingVersion("users", "v2")),
        "users@v2 is not declared compatible",
    ),
    (
        "dimension",
        with_(query_family=dataclasses.replace(Q, dimension=16)),
        "dimension differs: query family 'users' has dimension=16, item family 'items' has dimension=8",
    ),
    (
        "metric",
        with_(query_family=dataclasses.replace(Q, metric=Metric.INNER_PRODUCT)),
        "metric differs",
    ),
    (
        "normalization",
        with_(query_family=dataclasses.replace(Q, normalize=False)),
        "normalize differs",
    ),
    (
        "index on another version",
        with_(index=dataclasses.replace(IX, embedding=VersionRef("items", "v0"))),
        "index items-ix@v1 is built on items@v0, but the bundle's item embedding is items@v1",
    ),
    (
        "query version building",
        with_(query_version=dataclasses.replace(QV, status=S.BUILDING)),
        "query embedding version users@v1 is building",
    ),
    (
        "item version deprecated",
        with_(item_version=dataclasses.replace(IV, status=S.DEPRECATED)),
        "item embedding version items@v1 is deprecated",
    ),
    (
        "index failed",
        with_(index=dataclasses.replace(IX, status=S.FAILED)),
        "index version items-ix@v1 is failed",
    ),
    ("production is servable", with_(index=dataclasses.replace(IX, status=S.PRODUCTION)), None),
]


@pytest.mark.parametrize(("name", "parts", "error"), CASES, ids=[c[0] for c in CASES])
def test_compatibility_rules(name: str, parts: BundleParts, error: str | None) -> None:
    if error is None:
        check_bundle(parts)
    else:
        with pytest.raises(FailedPrecondition, match=error.replace("(", r"\(").replace(")", r"\)")):
            check_bundle(parts)


def test_canary_is_stable_per_subject_and_respects_the_share() -> None:
    subjects = [f"user-{i}" for i in range(20_000)]
    assert not any(in_canary("r", s, 0.0) for s in subjects)
    assert all(in_canary("r", s, 1.0) for s in subjects)
    arms = [in_canary("r", s, 0.3) for s in subjects]
    assert arms == [in_canary("r", s, 0.3) for s in subjects]  # same subject, same arm
    assert 0.28 < sum(arms) / len(arms) < 0.32
    # growing the share only moves subjects into the canary, never out
    assert all(in_canary("r", s, 0.5) for s, a in zip(subjects, arms, strict=True) if a)
