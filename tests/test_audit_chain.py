"""The audit trail's files (core.audit_chain), its writer thread
(coordinator.audit) and what a record may hold (coordinator.audit_records):
tampering of any one record is found, rotation keeps the chain, a torn tail
is recovered, records never carry raw vectors or ids."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from coordinator.audit import AuditTrail
from coordinator.audit_records import Hasher, describe
from core.audit_archive import archive_closed
from core.audit_chain import (
    ChainWriter,
    derive_keys,
    read_records,
    segment_files,
    verify_chain,
)
from core.errors import FailedPrecondition, Unavailable
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb

SECRET = b"0123456789abcdef0123456789abcdef"
KEY, SALT = derive_keys(SECRET)
VECSHARD = str(Path(sys.executable).parent / "vecshard")


def write(directory: Path, n: int, rotate: int = 64 << 20) -> None:
    w = ChainWriter(directory, KEY, rotate)
    w.append([{"rpc": "Search", "i": i, "principal": f"p{i % 3}"} for i in range(n)])
    w.close()


def lines(directory: Path) -> list[tuple[Path, list[bytes]]]:
    return [(p, p.read_bytes().splitlines(keepends=True)) for p in segment_files(directory)]


def test_an_untouched_chain_verifies_across_rotated_files(tmp_path: Path) -> None:
    write(tmp_path, 300, rotate=4096)
    v = verify_chain(tmp_path, KEY)
    assert v.ok, v.problems
    assert (v.records, v.first_seq, v.last_seq) == (300, 1, 300)
    assert v.files > 3  # rotated, and the chain runs on across files
    w = ChainWriter(tmp_path, KEY, 4096)  # a restart continues the chain
    w.append([{"rpc": "Upsert"}])
    w.close()
    assert verify_chain(tmp_path, KEY).last_seq == 301


def _tamper(directory: Path, how: str, rng: np.random.Generator) -> None:
    files = lines(directory)
    path, rows = files[int(rng.integers(len(files)))]
    i = int(rng.integers(len(rows)))
    if how == "edit":
        record = json.loads(rows[i])
        record["principal"] = "someone-else"
        rows[i] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    elif how == "delete":
        del rows[i]
    elif how == "swap":
        j = i + 1 if i + 1 < len(rows) else i - 1
        rows[i], rows[j] = rows[j], rows[i]
    elif how == "drop-file":
        path.unlink()
        return
    path.write_bytes(b"".join(rows))


@pytest.mark.parametrize("how", ["edit", "delete", "swap", "drop-file"])
@pytest.mark.parametrize("seed", range(4))
def test_any_single_tampering_is_detected(tmp_path: Path, how: str, seed: int) -> None:
    write(tmp_path, 120, rotate=4096)
    head = verify_chain(tmp_path, KEY)
    _tamper(tmp_path, how, np.random.default_rng(seed))
    # Against the head the coordinator anchored in etcd: a cut at the end too.
    v = verify_chain(tmp_path, KEY, anchor=(head.last_seq, head.last_hash))
    assert not v.ok, (how, seed)
    if how != "drop-file":  # inside the chain, the files alone show it
        assert not verify_chain(tmp_path, KEY).ok or _cut_at_end(tmp_path, head.last_seq)


def _cut_at_end(directory: Path, last_seq: int) -> bool:
    """Only the newest record went: the chain is consistent but shorter."""
    return verify_chain(directory, KEY).last_seq == last_seq - 1


def test_a_forger_without_the_key_cannot_rechain(tmp_path: Path) -> None:
    """Recomputing every later hash does not help without the audit key."""
    write(tmp_path, 20)
    wrong_key, _ = derive_keys(b"f" * 32)
    (path, rows) = lines(tmp_path)[0]
    forged = ChainWriter(tmp_path / "forged", wrong_key)
    records = [json.loads(r) for r in rows]
    for r in records:
        for k in ("seq", "prev", "hash"):
            r.pop(k)
    records[5]["principal"] = "forged"
    forged.append(records)
    forged.close()
    assert not verify_chain(tmp_path / "forged", KEY).ok


def test_a_torn_tail_from_a_crash_is_cut_and_the_chain_goes_on(tmp_path: Path) -> None:
    write(tmp_path, 10)
    path = segment_files(tmp_path)[-1]
    with open(path, "ab") as f:
        f.write(b'{"rpc":"Search","half')  # the crash hit mid-line
    w = ChainWriter(tmp_path, KEY)
    assert w.torn_bytes > 0
    w.append([{"rpc": "after"}])
    w.close()
    v = verify_chain(tmp_path, KEY)
    assert v.ok and v.last_seq == 11


def test_one_writer_per_chain(tmp_path: Path) -> None:
    w = ChainWriter(tmp_path, KEY)
    with pytest.raises(RuntimeError, match="held by another"):
        ChainWriter(tmp_path, KEY)
    w.close()


def test_the_trail_fsyncs_mutations_before_returning_and_reads_in_batches(tmp_path: Path) -> None:
    trail = AuditTrail(ChainWriter(tmp_path, KEY), flush_interval=0.05)

    async def scenario() -> None:
        for i in range(50):
            trail.record({"rpc": "Search", "i": i})
        await trail.record_durable({"rpc": "Upsert"})
        # The durable record is on disk now, with every read queued before it.
        found = [r["rpc"] for r in read_records(tmp_path)]
        assert found.count("Search") == 50 and found[-1] == "Upsert"

    asyncio.run(scenario())
    assert trail.batches < 51  # group commit, not one fsync per record
    trail.close()
    assert verify_chain(tmp_path, KEY).records == 51


def test_the_trail_fails_closed_when_it_cannot_write(tmp_path: Path) -> None:
    writer = ChainWriter(tmp_path, KEY)
    trail = AuditTrail(writer, flush_interval=0.05)

    def broken(records: object) -> None:
        raise OSError("disk full")

    writer.append = broken  # type: ignore[method-assign]  # a failing disk, for this test

    async def scenario() -> None:
        with pytest.raises(Unavailable, match="disk full"):
            await trail.record_durable({"rpc": "Upsert"})
        with pytest.raises(Unavailable, match="refusing requests"):
            trail.ready()

    asyncio.run(scenario())
    trail.close()


def test_a_failing_trail_says_so_once(tmp_path: Path) -> None:
    """The coordinator turns this into NOT_SERVING on its health service:
    it refuses every request from here on, so probes must see it."""
    writer = ChainWriter(tmp_path, KEY)
    failures: list[BaseException] = []
    trail = AuditTrail(writer, flush_interval=0.05, on_failure=failures.append)

    def broken(records: object) -> None:
        raise OSError(28, "No space left on device")

    assert trail.failure is None
    writer.append = broken  # type: ignore[method-assign]  # a full disk, for this test

    async def scenario() -> None:
        for _ in range(2):
            with pytest.raises(Unavailable, match="No space left"):
                await trail.record_durable({"rpc": "Upsert"})

    asyncio.run(scenario())
    assert [str(e) for e in failures] == ["[Errno 28] No space left on device"]
    assert trail.failure is failures[0]
    trail.close()


ids = st.text(st.characters(codec="utf-8", categories=("L", "N")), min_size=8, max_size=24)


HEX = re.compile(r"[0-9a-f]{32}")


def _strings(value: object) -> list[str]:
    """Every string value in a record, nested ones too (not its field names)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


@settings(max_examples=40)
@given(
    eids=st.lists(ids, min_size=1, max_size=5, unique=True),
    vector=st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=4, max_size=4),
)
@example(eids=["embeddin"], vector=[0.0] * 4)  # found by hypothesis: a field's name, not a leak
def test_records_hold_hashes_never_raw_ids_or_vectors(eids: list[str], vector: list[float]) -> None:
    h = Hasher(SALT)
    raw = np.asarray(vector, dtype="<f4").tobytes()
    keys = [cpb.EntityKey(tenant_id="acme", entity_type="user", entity_id=e) for e in eids]
    calls = [
        (
            "/vecshard.v1.RetrievalService/Search",
            pb.SearchRequest(route="r", query_vector=raw, k=3),
            pb.SearchResponse(hits=[pb.Hit(key=k) for k in keys]),
        ),
        (
            "/vecshard.v1.RetrievalService/Upsert",
            pb.UpsertRequest(records=[cpb.EmbeddingRecord(key=k, vector=raw) for k in keys]),
            pb.UpsertResponse(written=len(keys)),
        ),
        ("/vecshard.v1.RetrievalService/Delete", pb.DeleteRequest(keys=keys), None),
        (
            "/vecshard.v1.RetrievalService/BatchGetEmbeddings",
            pb.BatchGetEmbeddingsRequest(keys=keys),
            pb.BatchGetEmbeddingsResponse(
                records=[
                    cpb.EmbeddingLookup(
                        key=k, status=cpb.FOUND, record=cpb.EmbeddingRecord(key=k, vector=raw)
                    )
                    for k in keys
                ]
            ),
        ),
    ]
    for method, req, resp in calls:
        record = describe(h, method, req, resp)
        text = json.dumps(record, ensure_ascii=False)
        # In no value (an id may spell a field's name: "embeddin" is in "embedding").
        values = [v for v in _strings(record) if not HEX.fullmatch(v)]
        assert not any(e in v for v in values for e in eids), (method, text)
        assert raw.hex() not in text
        hashed = [h.key(k) for k in keys]
        assert any(x in text for x in hashed)  # still matchable by whoever holds the salt


@settings(max_examples=40)
@given(
    keys=st.lists(st.tuples(ids, ids, ids), max_size=6),
)
def test_an_id_hash_is_keyed_blake2b_of_tenant_type_and_id(
    keys: list[tuple[str, str, str]],
) -> None:
    """What someone holding the salt computes to ask "was this id returned?":
    the record's hash of a key, given as a message, as columns or alone."""
    h = Hasher(SALT)
    expected = [
        hashlib.blake2b(f"{t}\x1f{e}\x1f{i}".encode(), key=SALT[:64], digest_size=16).hexdigest()
        for t, e, i in keys
    ]
    messages = [cpb.EntityKey(tenant_id=t, entity_type=e, entity_id=i) for t, e, i in keys]
    assert h.keys(messages) == expected
    assert h.ids([t for t, _, _ in keys], [e for _, e, _ in keys], [i for _, _, i in keys]) == (
        expected
    )
    assert [h.key(m) for m in messages] == expected
    assert [h.subject(t, e, i) for t, e, i in keys] == expected


def test_cli_verify_reports_tampering_with_exit_1(tmp_path: Path) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_bytes(SECRET)
    os.chmod(key_file, 0o600)
    write(tmp_path / "audit" / "coordinator-a", 50)
    write(tmp_path / "audit" / "coordinator-b", 50)
    args = [
        VECSHARD,
        "audit",
        "verify",
        "--dir",
        str(tmp_path / "audit"),
        "--key-file",
        str(key_file),
    ]
    ok = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK") == 2
    _tamper(tmp_path / "audit" / "coordinator-b", "swap", np.random.default_rng(1))
    bad = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "coordinator-b" in bad.stdout and "TAMPERED" in bad.stdout
    assert "coordinator-a: 50 records in 1 file(s), seq 1..50: OK" in bad.stdout


def test_export_to_parquet_keeps_every_record_and_its_chain_fields(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from offline.audit_export import export_parquet

    for name in ("coordinator-a", "coordinator-b"):
        w = ChainWriter(tmp_path / "audit" / name, KEY)
        w.append(
            [
                {"rpc": "Search", "principal": "svc", "tenant": "acme", "code": "OK",
                 "results": 2, "result_ids": ["h1", "h2"], "k": 10},
                {"rpc": "Upsert", "principal": "svc", "code": "OK", "ids": ["h3"]},
            ]
        )  # fmt: skip
        w.close()
    assert export_parquet(tmp_path / "audit", tmp_path / "audit.parquet") == 4
    table = pq.read_table(tmp_path / "audit.parquet")
    rows = table.to_pylist()
    assert sorted({r["chain"] for r in rows}) == ["coordinator-a", "coordinator-b"]
    first = next(r for r in rows if r["chain"] == "coordinator-a" and r["seq"] == 1)
    assert first["result_ids"] == ["h1", "h2"] and first["results"] == 2
    assert json.loads(first["details"]) == {"k": 10}
    assert all(r["hash"] and r["prev"] for r in rows)


def test_the_chain_reports_the_bytes_it_holds_on_disk(tmp_path: Path) -> None:
    """Exported as vecshard_audit_chain_bytes: what fills the audit volume."""
    writer = ChainWriter(tmp_path, KEY, rotate_bytes=4096)
    assert writer.disk_bytes() == 0
    writer.append([{"rpc": "Search", "i": i, "pad": "x" * 200} for i in range(60)])
    writer.sync()
    files = segment_files(tmp_path)
    assert len(files) > 2  # rotated
    assert writer.disk_bytes() == sum(p.stat().st_size for p in files)
    files[0].unlink()  # shipped and removed
    assert writer.disk_bytes() == sum(p.stat().st_size for p in files[1:])
    writer.close()


def test_closed_files_are_archived_and_archive_and_volume_stay_one_chain(tmp_path: Path) -> None:
    """What keeps a coordinator's volume from filling (deploy/README.md):
    closed files move while it writes; the archive verifies from seq 1, the
    volume from where the archive ends, and a second run continues the seam."""
    chain, dest = tmp_path / "c0", tmp_path / "archive" / "c0"
    writer = ChainWriter(chain, KEY, rotate_bytes=4096)
    writer.append([{"rpc": "Search", "i": i, "pad": "x" * 200} for i in range(60)])
    writer.sync()
    files = segment_files(chain)
    assert len(files) > 3
    done = archive_closed(chain, dest, KEY)
    assert done.files == len(files) - 1 and segment_files(chain) == files[-1:]
    archived = verify_chain(dest, KEY)  # from genesis
    assert archived.ok and archived.records + verify_chain(chain, KEY, False).records == 60
    assert done.first_seq == archived.last_seq + 1
    writer.append([{"rpc": "Search", "i": i, "pad": "x" * 200} for i in range(60, 120)])
    writer.sync()
    again = archive_closed(chain, dest, KEY)  # the writer kept writing: the seam moves on
    assert again.files > 0 and verify_chain(dest, KEY).last_seq == again.first_seq - 1
    assert verify_chain(dest, KEY).records + verify_chain(chain, KEY, False).records == 120
    assert archive_closed(chain, dest, KEY).files == 0  # nothing closed left
    writer.close()


def test_archiving_never_reads_the_file_being_written(tmp_path: Path) -> None:
    """The newest file's last line may be half flushed (the writer buffers
    between syncs) or the file empty (just rotated): archiving refused such a
    volume as not verifying. It checks and moves the closed files only."""
    chain, dest = tmp_path / "c0", tmp_path / "archive" / "c0"
    writer = ChainWriter(chain, KEY, rotate_bytes=4096)
    writer.append([{"rpc": "Search", "i": i, "pad": "x" * 200} for i in range(60)])
    writer.close()
    files = segment_files(chain)
    with open(files[-1], "ab") as f:
        f.write(b'{"rpc": "Search", "i": 60, "pa')  # a half-flushed line
    done = archive_closed(chain, dest, KEY)
    assert done.files == len(files) - 1 and segment_files(chain) == files[-1:]
    assert verify_chain(dest, KEY).ok and done.first_seq == verify_chain(dest, KEY).last_seq + 1
    # Just rotated: the half-written file is closed now (completed), the newest empty.
    files[-1].write_bytes(files[-1].read_bytes().rsplit(b"\n", 1)[0] + b"\n")
    (chain / "audit-999999999999.jsonl").write_bytes(b"")
    assert archive_closed(chain, dest, KEY).files == 1
    assert verify_chain(dest, KEY).ok and [p.stat().st_size for p in segment_files(chain)] == [0]


def test_archiving_refuses_a_chain_that_does_not_verify_or_continue_the_archive(
    tmp_path: Path,
) -> None:
    chain, dest = tmp_path / "c0", tmp_path / "archive" / "c0"
    writer = ChainWriter(chain, KEY, rotate_bytes=4096)
    writer.append([{"rpc": "Search", "i": i, "pad": "x" * 200} for i in range(60)])
    writer.close()
    before = segment_files(chain)
    # Another chain's archive at dest: the seam does not meet.
    other = ChainWriter(tmp_path / "other", KEY, rotate_bytes=4096)
    other.append([{"rpc": "Upsert", "i": i} for i in range(3)])
    other.close()
    dest.mkdir(parents=True)
    for p in segment_files(tmp_path / "other"):
        shutil.copy(p, dest / p.name)
    with pytest.raises(FailedPrecondition, match="does not continue"):
        archive_closed(chain, dest, KEY)
    assert segment_files(chain) == before  # nothing moved
    # An altered record on the volume: refused before anything moves.
    shutil.rmtree(dest)
    line = before[1].read_bytes().replace(b'"i":', b'"j":', 1)
    before[1].write_bytes(line)
    with pytest.raises(FailedPrecondition, match="does not verify"):
        archive_closed(chain, dest, KEY)
    assert segment_files(chain) == before


def test_a_lookup_records_every_key_it_named_found_or_not_refused_or_not() -> None:
    """SECURITY.md: every id a call named or returned. Lookups recorded only
    the ids found: probing which ids exist, or a refused call, left no trace."""
    h = Hasher(SALT)
    keys = [cpb.EntityKey(tenant_id="acme", entity_type="user", entity_id=e) for e in "ab"]
    req = pb.BatchGetEmbeddingsRequest(keys=keys)
    answered = pb.BatchGetEmbeddingsResponse(
        records=[
            cpb.EmbeddingLookup(key=keys[0], status=cpb.FOUND),
            cpb.EmbeddingLookup(key=keys[1], status=cpb.MISSING),
        ]
    )
    method = "/vecshard.v1.RetrievalService/BatchGetEmbeddings"
    record = describe(h, method, req, answered)
    assert record["ids"] == [h.key(k) for k in keys]
    assert record["result_ids"] == [h.key(keys[0])]
    assert describe(h, method, req, None)["ids"] == [h.key(k) for k in keys]
