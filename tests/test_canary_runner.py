"""The canary runner measures recall@k of the route's primary bundle
(`vecshard_canary_recall{route}`, beside the primary index version's
baseline). It resolved the route with an empty subject, which hashes into
the canary arm like any other once `canary_share` exceeds its hash (0.3 for
route "r"): the metric then measured the canary bundle (found in review)."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import numpy as np
import pytest

import coordinator.canary_runner as runner_module
from core.domain import Metric, VersionRef
from registry.change_writes import put_canary_set
from registry.memory_store import InMemoryStore
from registry.model import Bundle, EmbeddingFamily, EmbeddingVersion, IndexVersion, Route
from registry.quality import CanaryQuery, CanaryQuerySet, encode_vector
from registry.registry import Registry
from registry.snapshot import in_canary, resolve_route

V1, V2 = VersionRef("items", "v1"), VersionRef("items", "v2")


def _two_versions() -> tuple[Registry, str]:
    """A registry with items@v1 and @v2, an index and a bundle (b1, b2) of
    each, and a query vector."""
    reg = Registry(InMemoryStore(), "/t/")
    reg.put_family(EmbeddingFamily("items", "item", 4, Metric.L2))
    for v in ("v1", "v2"):
        reg.put_embedding_version(EmbeddingVersion("items", v))
        reg.create_index(IndexVersion("ix", v, VersionRef("items", v), num_buckets=2), ["s0"])
        reg.put_bundle(
            Bundle(f"b{v[1]}", VersionRef("items", v), VersionRef("items", v), VersionRef("ix", v))
        )
    return reg, encode_vector(np.ones(4, np.float32))


def test_the_canary_runner_measures_the_primary_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    reg, vec = _two_versions()
    for label, ref in (("c1", V1), ("c2", V2)):
        put_canary_set(reg, CanaryQuerySet(label, "v1", ref, (CanaryQuery("t", vec, ("a",)),)))
    reg.put_route(Route("r", "b1", canary_bundle="b2", canary_share=0.5))
    snap = reg.snapshot()
    assert in_canary("r", "", 0.5)  # what an empty subject draws
    assert resolve_route(snap, "r").bundle.name == "b2"
    assert resolve_route(snap, "r", primary=True).bundle.name == "b1"
    measured: list[str] = []

    async def searched(*args: Any) -> Any:
        measured.append(args[3].bundle.name)  # the resolved route it searched
        return types.SimpleNamespace(hits=[])

    monkeypatch.setattr(runner_module, "run_search", searched)
    view = types.SimpleNamespace(snapshot=snap)
    runner = runner_module.CanaryRunner(view, executor=None, interval=60)  # type: ignore[arg-type]
    asyncio.run(runner.run_once())
    assert measured and set(measured) == {"b1"}


def test_a_route_switched_to_a_version_without_a_baseline_drops_the_old_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The baseline gauge kept the previous index version's value after a
    switch to one with none, and the alert compared the new recall with it."""
    import dataclasses

    from prometheus_client import REGISTRY

    from registry.quality import IndexEvaluation

    reg = Registry(InMemoryStore(), "/t/")
    reg.put_family(EmbeddingFamily("items", "item", 4, Metric.L2))
    reg.put_embedding_version(EmbeddingVersion("items", "v1"))
    reg.create_index(IndexVersion("ix", "v1", V1, num_buckets=2), ["s0"])
    reg.put_bundle(Bundle("b1", V1, V1, VersionRef("ix", "v1")))
    vec = encode_vector(np.ones(4, np.float32))
    put_canary_set(reg, CanaryQuerySet("c1", "v1", V1, (CanaryQuery("t", vec, ("a",)),)))
    reg.put_route(Route("rb", "b1"))
    snap = reg.snapshot()
    evaluated = IndexEvaluation(
        VersionRef("ix", "v1"),
        "2026-01-01T00:00:00+00:00",
        10,
        canary_set="c1@v1",
        canary_recall=0.9,
    )
    with_baseline = dataclasses.replace(snap, evaluations={evaluated.index: evaluated})

    async def searched(*args: Any) -> Any:
        return types.SimpleNamespace(hits=[])

    monkeypatch.setattr(runner_module, "run_search", searched)
    labels = {"route": "rb"}
    for view, want in ((with_baseline, 0.9), (snap, None)):
        runner = runner_module.CanaryRunner(
            types.SimpleNamespace(snapshot=view),  # type: ignore[arg-type]  # a snapshot is all it reads
            executor=None,  # type: ignore[arg-type]  # run_search is stood in
            interval=60,
        )
        asyncio.run(runner.run_once())
        assert REGISTRY.get_sample_value("vecshard_canary_recall_baseline", labels) == want


def test_a_route_no_canary_set_measures_any_more_exports_no_canary_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Switched to a bundle whose query embedding has no canary set, or
    deleted, a route kept its last recall and baseline for good: the drop
    alert kept firing on a route that serves something else."""
    import dataclasses

    from prometheus_client import REGISTRY

    from registry.quality import IndexEvaluation

    reg, vec = _two_versions()
    put_canary_set(reg, CanaryQuerySet("c1", "v1", V1, (CanaryQuery("t", vec, ("a",)),)))
    evaluated = IndexEvaluation(
        VersionRef("ix", "v1"), "2026-01-01T00:00:00+00:00", 10, canary_set="c1@v1",
        canary_recall=0.9,
    )  # fmt: skip

    async def searched(*args: Any) -> Any:
        return types.SimpleNamespace(hits=[])  # recall 0: the drop alert fires for v1

    monkeypatch.setattr(runner_module, "run_search", searched)

    def exported(route: str) -> tuple[float | None, float | None]:
        return tuple(  # type: ignore[return-value]
            REGISTRY.get_sample_value(name, {"route": route})
            for name in ("vecshard_canary_recall", "vecshard_canary_recall_baseline")
        )

    def run(routes: dict[str, str]) -> None:
        for name, bundle in routes.items():
            reg.put_route(Route(name, bundle))
        snap = dataclasses.replace(reg.snapshot(), evaluations={evaluated.index: evaluated})
        snap = dataclasses.replace(snap, routes={n: snap.routes[n] for n in routes})
        runner = runner_module.CanaryRunner(
            types.SimpleNamespace(snapshot=snap),  # type: ignore[arg-type]  # all it reads
            executor=None,  # type: ignore[arg-type]  # run_search is stood in
            interval=60,
        )
        asyncio.run(runner.run_once())

    run({"switched": "b1", "deleted": "b1"})
    assert exported("switched") == exported("deleted") == (0.0, 0.9)
    run({"switched": "b2"})  # ix@v2 has no canary set; "deleted" is gone
    assert exported("switched") == exported("deleted") == (None, None)
