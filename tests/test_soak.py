"""A short chaos soak (issue 14, item 8): a mixed workload over a cluster
whose shards, a coordinator and etcd are killed and restarted, with every
answer checked against the model of acknowledged operations."""

from __future__ import annotations

import pytest

from benchmarks.soak import run_soak

pytestmark = pytest.mark.integration


def test_a_short_soak_finds_no_violation(tmp_path_factory: pytest.TempPathFactory) -> None:
    report = run_soak(duration=40, seed=3, data_dir=tmp_path_factory.mktemp("soak"), log=print)
    assert report.ok, (report.violations, report.examples)
    assert len(report.faults) >= 3, f"too few kinds of fault injected: {report.faults}"
    for op in ("upsert_ok", "delete_ok", "lookup_ok", "search_ok", "route_switch_ok"):
        assert report.ops.get(op, 0) > 0, (op, report.ops)
    assert report.final_keys_checked == 300
