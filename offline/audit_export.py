"""The audit trail as Parquet, for the warehouse and for auditors' queries.

Every chain under an audit root becomes rows of one table: the fields every
record has as columns (`chain`, `seq`, `ts`, `rpc`, `principal`, `tenant`,
`purpose`, `code`, ...), the hashed ids as a list column, and everything else
in `details` (JSON). `hash` and `prev` are kept, so the export can be
re-verified against the files it came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.audit_chain import chains, read_records

_STRING: tuple[str, ...] = (
    *("rpc", "principal", "tenant", "purpose", "code", "coordinator", "route", "bundle"),
    *("index", "embedding", "event", "error", "hash", "prev"),
)
_LISTS = ("result_ids", "ids")

SCHEMA = pa.schema(
    [
        ("chain", pa.string()),
        ("seq", pa.int64()),
        ("ts", pa.float64()),
        *((name, pa.string()) for name in _STRING),
        ("results", pa.int64()),
        *((name, pa.list_(pa.string())) for name in _LISTS),
        ("details", pa.string()),
    ]
)


def _row(chain: str, record: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "chain": chain,
        "seq": int(record.pop("seq")),
        "ts": record.pop("ts", None),
    }
    for name in _STRING:
        value = record.pop(name, None)
        row[name] = None if value is None else str(value)
    results = record.pop("results", None)
    row["results"] = int(results) if isinstance(results, int | float) else None
    for name in _LISTS:
        value = record.pop(name, None)
        row[name] = [str(v) for v in value] if isinstance(value, list) else None
    row["details"] = json.dumps(record, sort_keys=True) if record else None
    return row


def export_parquet(root: Path, out: Path) -> int:
    """Writes every record under `root` to `out`; returns how many."""
    rows = [
        _row(directory.name, record)
        for directory in chains(root)
        for record in read_records(directory)
    ]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return len(rows)
