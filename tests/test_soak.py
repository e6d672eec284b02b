"""A short chaos soak (issue 14, item 8): a mixed workload over a cluster
whose shards, a coordinator and etcd are killed and restarted, with every
answer checked against the model of acknowledged operations — reads sent
alone and reads the SDK coalesced into shared calls alike, and feature rows
written out of order and read back."""

from __future__ import annotations

import pytest

from benchmarks.soak import run_soak

pytestmark = pytest.mark.integration


def test_a_short_soak_finds_no_violation(tmp_path_factory: pytest.TempPathFactory) -> None:
    report = run_soak(duration=40, seed=3, data_dir=tmp_path_factory.mktemp("soak"), log=print)
    assert report.ok, (report.violations, report.examples)
    assert len(report.faults) >= 3, f"too few kinds of fault injected: {report.faults}"
    ops = report.ops
    for op in (
        "upsert_ok",
        "delete_ok",
        "lookup_ok",
        "lookup_columns_ok",
        "search_ok",
        "feature_put_ok",
        "feature_get_ok",
    ):
        assert ops.get(op, 0) > 0, (op, ops)
    assert ops.get("route_switch_ok", 0) > 0, ops
    # The shared clients' reads went out in shared calls, some carrying
    # several callers' reads, and were checked like the others.
    shared = sum(ops.get(f"{k}_shared_calls", 0) for k in ("search", "lookup"))
    carried = sum(ops.get(f"{k}_in_shared_calls", 0) for k in ("search", "lookup"))
    assert carried > shared > 0, ops
    assert report.final_keys_checked == 300
    assert report.final_feature_rows_checked == 300
