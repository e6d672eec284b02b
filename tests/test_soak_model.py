"""The soak's invariant checker on fabricated histories: each rule fires on
the answer it forbids and stays quiet on every answer the rules allow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.soak import SoakReport, repeated
from benchmarks.soak import main as soak_main
from benchmarks.soak_model import Model, Violation, vector_of

K = ("t1", "k")
DIM = 8


def model_with(*ops: tuple[str, int, float, float | None, bool | None]) -> Model:
    m = Model()
    for kind, version, issued, ended, ok in ops:
        op = m.issue(K, kind, version, issued)
        if ended is not None and ok is not None:
            m.end(op, ok, ended)
    return m


def rules(violations: list[Violation]) -> list[str]:
    return sorted(v.rule for v in violations)


def test_vectors_depend_on_id_and_version_only() -> None:
    assert vector_of("k", 3, DIM).tobytes() == vector_of("k", 3, DIM).tobytes()
    assert vector_of("k", 3, DIM).tobytes() != vector_of("k", 4, DIM).tobytes()


def test_an_acknowledged_write_must_be_visible() -> None:
    m = model_with(("upsert", 5, 0, 1, True), ("upsert", 7, 2, 3, True))
    assert rules(m.check_lookup(K, 4, 5, "found", 5, vector_of("k", 5, DIM), DIM)) == ["lost_write"]
    assert m.check_lookup(K, 4, 5, "found", 7, vector_of("k", 7, DIM), DIM) == []
    assert rules(m.check_lookup(K, 4, 5, "missing", 0, None, DIM)) == ["lost_write"]


def test_a_read_racing_a_write_may_see_either_side() -> None:
    m = model_with(("upsert", 5, 0, 1, True), ("upsert", 7, 2, None, None))  # 7 in flight
    assert m.check_lookup(K, 4, 5, "found", 5, vector_of("k", 5, DIM), DIM) == []
    assert m.check_lookup(K, 4, 5, "found", 7, vector_of("k", 7, DIM), DIM) == []
    # A failed write is ambiguous too: it may have reached a replica.
    m = model_with(("upsert", 5, 0, 1, True), ("upsert", 9, 2, 3, False))
    assert m.check_lookup(K, 4, 5, "found", 9, vector_of("k", 9, DIM), DIM) == []


def test_phantoms_and_corrupt_vectors() -> None:
    m = model_with(("upsert", 5, 0, 1, True))
    assert rules(m.check_lookup(K, 4, 5, "found", 6, vector_of("k", 6, DIM), DIM)) == ["phantom"]
    wrong = np.zeros(DIM, np.float32)
    assert rules(m.check_lookup(K, 4, 5, "found", 5, wrong, DIM)) == ["corrupt"]
    # Written after the read ended: it cannot be in the answer.
    m = model_with(("upsert", 5, 6, 7, True))
    assert rules(m.check_lookup(K, 4, 5, "found", 5, vector_of("k", 5, DIM), DIM)) == ["phantom"]


def test_deletes_win_over_their_version_and_older() -> None:
    m = model_with(("upsert", 5, 0, 1, True), ("delete", 5, 2, 3, True))
    assert rules(m.check_lookup(K, 4, 5, "found", 5, vector_of("k", 5, DIM), DIM)) == [
        "resurrected"
    ]
    assert m.check_lookup(K, 4, 5, "deleted", 0, None, DIM) == []
    assert rules(m.check_search("t1", 4, 5, [K], partial=False)) == ["deleted_returned"]
    # A newer upsert was sent meanwhile: seeing the key again is allowed.
    m = model_with(
        ("upsert", 5, 0, 1, True), ("delete", 5, 2, 3, True), ("upsert", 6, 3.5, None, None)
    )
    assert m.check_search("t1", 4, 5, [K], partial=False) == []


def test_search_isolation_duplicates_and_completeness() -> None:
    m = model_with(("upsert", 5, 0, 1, True))
    m.issue(("t2", "k"), "upsert", 5, 0)
    assert rules(m.check_search("t1", 4, 5, [("t2", "k")], partial=False)) == ["cross_tenant"]
    assert rules(m.check_search("t1", 4, 5, [K, K], partial=False)) == ["duplicate"]
    assert rules(m.check_search("t1", 4, 5, [], partial=False, expected=K)) == [
        "incomplete_unflagged"
    ]
    assert m.check_search("t1", 4, 5, [], partial=True, expected=K) == []
    assert m.stable(K, 4, 5) == 5


def test_nothing_is_stable_while_a_write_is_uncertain() -> None:
    m = model_with(("upsert", 5, 0, 1, True), ("upsert", 6, 2, 3, False))
    assert m.stable(K, 4, 5) is None
    assert m.check_search("t1", 4, 5, [], partial=False, expected=K) == []


def test_repeated_soaks_keep_only_a_failing_runs_data(tmp_path: Path) -> None:
    """`vecshard soak --runs N`: consecutive seeds, each run in its own
    directory; a passing run's removed, a failing run's (its logs explain
    the violation) kept and named."""
    seen: list[tuple[int, Path]] = []

    def soak(seed: int, data_dir: Path) -> SoakReport:
        seen.append((seed, data_dir))
        (data_dir / "logs").mkdir()
        (data_dir / "logs" / "shard-0.log").write_text("applied e1@3")
        bad = {"replica_divergence": 1} if seed == 8 else {}
        return SoakReport(40.0, {"upsert_ok": 10}, {"shard_kill": 1}, bad)

    lines: list[str] = []
    results = repeated(3, 7, tmp_path, soak, log=lines.append)
    assert [s for s, _ in seen] == [7, 8, 9]
    assert len({d for _, d in seen}) == 3 and all(d.parent == tmp_path for _, d in seen)
    assert [(s, r.ok, k) for s, r, k in results] == [
        (7, True, None),
        (8, False, seen[1][1]),
        (9, True, None),
    ]
    assert [d.exists() for _, d in seen] == [False, True, False]
    assert (seen[1][1] / "logs" / "shard-0.log").read_text() == "applied e1@3"
    assert "seed 8: FAILED (logs kept in" in lines[1] and "seed 9: PASSED" in lines[2]


def test_soak_refuses_zero_runs() -> None:
    with pytest.raises(SystemExit):
        soak_main(["--runs", "0"])
