"""`offline.erasure` on real Parquet files: a key part a file holds only as a
hive partition directory is read from the path. Found in review: a file
under `entity_type=item/` was matched on (tenant, id) alone, so erasing user
42 deleted item 42's rows; a file under `tenant_id=acme/` was skipped, and
`find_offline` then verified an erasure that never happened."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.domain import EntityKey
from offline.erasure import erase_offline, find_offline

SUBJECT = EntityKey("acme", "user", "42")


def _write(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _ids(root: Path, under: str) -> list[str]:
    return [
        i
        for p in sorted((root / under).glob("*.parquet"))
        for i in pq.read_table(p, partitioning=None).column("entity_id").to_pylist()
    ]


def test_another_entity_type_partition_keeps_its_rows(tmp_path: Path) -> None:
    table = pa.table({"tenant_id": ["acme", "acme"], "entity_id": ["42", "7"], "x": [1.0, 2.0]})
    _write(tmp_path / "entity_type=item" / "part-0.parquet", table)
    _write(tmp_path / "entity_type=user" / "part-0.parquet", table)

    report = erase_offline(tmp_path, SUBJECT)

    assert _ids(tmp_path, "entity_type=item") == ["42", "7"]
    assert _ids(tmp_path, "entity_type=user") == ["7"]
    assert (report.files_rewritten, report.rows_removed) == (1, 1)
    assert find_offline(tmp_path, SUBJECT) == []


def test_a_tenant_partition_is_matched_by_its_directory(tmp_path: Path) -> None:
    table = pa.table({"entity_type": ["user", "user"], "entity_id": ["42", "7"]})
    _write(tmp_path / "exports" / "tenant_id=acme" / "day=1" / "part-0.parquet", table)
    _write(tmp_path / "exports" / "tenant_id=other" / "day=1" / "part-0.parquet", table)
    assert find_offline(tmp_path, SUBJECT) == ["exports/tenant_id=acme/day=1/part-0.parquet"]

    report = erase_offline(tmp_path, SUBJECT)

    assert _ids(tmp_path, "exports/tenant_id=acme/day=1") == ["7"]
    assert _ids(tmp_path, "exports/tenant_id=other/day=1") == ["42", "7"]
    assert report.rows_removed == 1 and find_offline(tmp_path, SUBJECT) == []


def test_a_file_naming_the_subject_only_in_part_is_reported_not_widened(tmp_path: Path) -> None:
    # No tenant anywhere: its "42" may be any tenant's user 42.
    _write(
        tmp_path / "exports" / "part-0.parquet",
        pa.table({"entity_type": ["user"], "entity_id": ["42"]}),
    )
    # No entity_id: no row of it is a subject's; nothing to report.
    _write(tmp_path / "stats" / "part-0.parquet", pa.table({"tenant_id": ["acme"], "n": [3]}))

    report = erase_offline(tmp_path, SUBJECT)

    assert _ids(tmp_path, "exports") == ["42"] and report.rows_removed == 0
    assert report.files_unresolved == ("exports/part-0.parquet",)
    (left,) = find_offline(tmp_path, SUBJECT)
    assert left.startswith("exports/part-0.parquet ") and "tenant_id" in left


def test_rows_with_a_null_key_are_kept(tmp_path: Path) -> None:
    table = pa.table(
        {
            "tenant_id": ["acme", None, "acme"],
            "entity_type": ["user", "user", "user"],
            "entity_id": ["42", "42", None],
        }
    )
    _write(tmp_path / "part-0.parquet", table)

    erase_offline(tmp_path, SUBJECT)

    (path,) = tmp_path.glob("*.parquet")
    assert pq.read_table(path).column("tenant_id").to_pylist() == [None, "acme"]


def test_a_rewrite_takes_a_new_name_and_a_killed_one_is_finished_by_a_rerun(
    tmp_path: Path,
) -> None:
    """The new name keeps the original's up to its first dot, so read order
    (the tie-break of equal rows) is unchanged; checkpoints see a new file."""
    table = pa.table(
        {"tenant_id": ["acme"] * 2, "entity_type": ["user"] * 2, "entity_id": ["42", "7"]}
    )
    original = _write(tmp_path / "part-0001.parquet", table)
    saved = original.read_bytes()

    erase_offline(tmp_path, SUBJECT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-0001.e1.parquet"]
    # Killed between the new file's rename and the old one's removal.
    original.write_bytes(saved)
    report = erase_offline(tmp_path, SUBJECT)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-0001.e1.parquet"]
    assert report.rows_removed == 1 and _ids(tmp_path, ".") == ["7"]
    erase_offline(tmp_path, EntityKey("acme", "user", "7"))
    assert not list(tmp_path.iterdir())
