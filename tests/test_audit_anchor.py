"""The audit chain against the head anchored in etcd across restarts
(coordinator.audit, coordinator.audit_anchor, core.audit_chain.reconcile):
records cut while the coordinator is down are written down as a gap that
every later verification reports, and the anchor never moves back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from coordinator.audit import AnchorConflict, AuditTrail
from coordinator.audit_anchor import EtcdHeadAnchor
from core.audit_archive import archive_closed
from core.audit_chain import ChainWriter, derive_keys, read_records, segment_files, verify_chain
from registry.keys import Keys
from registry.store import EtcdStore

KEY, _ = derive_keys(b"0123456789abcdef0123456789abcdef")


def run(directory: Path, anchor: EtcdHeadAnchor, calls: int, rotate: int = 64 << 20) -> None:
    """A coordinator's life: start, serve `calls` deletes, stop."""
    trail = AuditTrail(ChainWriter(directory, KEY, rotate), anchor=anchor)
    for i in range(calls):
        trail.record({"coordinator": directory.name, "rpc": "Delete", "i": i})
    trail.close()


def anchored(store: EtcdStore, key: str) -> tuple[int, str]:
    entry = store.get(key)
    assert entry is not None
    doc = json.loads(entry.value)
    return int(doc["seq"]), str(doc["hash"])


def gaps(reason: str) -> float:
    return REGISTRY.get_sample_value("vecshard_audit_gaps_total", {"reason": reason}) or 0.0


@pytest.fixture
def head_key(prefix: str) -> str:
    return Keys(prefix).audit_head("c1")


def test_a_tail_cut_while_down_is_reported_after_a_restart(
    tmp_path: Path, store: EtcdStore, head_key: str
) -> None:
    run(tmp_path, EtcdHeadAnchor(store, head_key), 20)
    assert anchored(store, head_key)[0] == 20
    path = segment_files(tmp_path)[-1]
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:10]))
    before = gaps("behind")

    run(tmp_path, EtcdHeadAnchor(store, head_key), 1)

    assert gaps("behind") == before + 1
    head = anchored(store, head_key)
    assert head[0] == 22  # numbered on from the anchored head: never moved back
    v = verify_chain(tmp_path, KEY, anchor=head)
    assert not v.ok and not v.problems  # the chain is intact around the gap ...
    assert len(v.gaps) == 1 and "records 11..20 were removed" in v.gaps[0], v.gaps
    gap = next(r for r in read_records(tmp_path) if r.get("event") == "gap")
    assert (gap["seq"], gap["head_seq"], gap["anchored_seq"]) == (21, 10, 20)
    # ... and cutting the gap record too is found like any cut: at the next start.
    run(tmp_path, EtcdHeadAnchor(store, head_key), 0)
    assert not verify_chain(tmp_path, KEY, anchor=anchored(store, head_key)).ok


def test_a_restart_of_an_untouched_chain_writes_no_gap(
    tmp_path: Path, store: EtcdStore, head_key: str
) -> None:
    run(tmp_path, EtcdHeadAnchor(store, head_key), 5)
    run(tmp_path, EtcdHeadAnchor(store, head_key), 5)
    v = verify_chain(tmp_path, KEY, anchor=anchored(store, head_key))
    assert v.ok and v.last_seq == 10, v.problems + v.gaps


def test_a_lost_volume_starts_past_the_anchor_with_a_gap(
    tmp_path: Path, store: EtcdStore, head_key: str
) -> None:
    run(tmp_path / "c1", EtcdHeadAnchor(store, head_key), 7)
    shutil.rmtree(tmp_path / "c1")  # a pod's emptyDir gone, or the whole chain removed
    run(tmp_path / "c1", EtcdHeadAnchor(store, head_key), 2)
    v = verify_chain(tmp_path / "c1", KEY, anchor=anchored(store, head_key))
    assert (v.first_seq, v.last_seq, v.problems) == (8, 10, [])
    assert "records 1..7 were removed" in v.gaps[0]


def test_another_chain_put_in_its_place_is_a_gap(
    tmp_path: Path, store: EtcdStore, head_key: str, prefix: str
) -> None:
    run(tmp_path / "c1", EtcdHeadAnchor(store, head_key), 3)
    run(tmp_path / "c2", EtcdHeadAnchor(store, Keys(prefix).audit_head("c2")), 6)
    shutil.rmtree(tmp_path / "c1")
    shutil.copytree(tmp_path / "c2", tmp_path / "c1")  # longer, and sealed with the same key
    run(tmp_path / "c1", EtcdHeadAnchor(store, head_key), 1)
    v = verify_chain(tmp_path / "c1", KEY, anchor=anchored(store, head_key))
    assert not v.problems and len(v.gaps) == 1 and "replaced" in v.gaps[0], v.gaps


def test_a_chain_whose_anchor_was_removed_records_that_it_could_not_check(
    tmp_path: Path, store: EtcdStore, head_key: str
) -> None:
    run(tmp_path, EtcdHeadAnchor(store, head_key), 4)
    store.delete(head_key)
    run(tmp_path, EtcdHeadAnchor(store, head_key), 1)
    v = verify_chain(tmp_path, KEY, anchor=anchored(store, head_key))
    assert len(v.gaps) == 1 and "no head was anchored" in v.gaps[0], v.gaps


def test_the_anchor_is_never_moved_back_over_a_head_it_did_not_write(
    store: EtcdStore, head_key: str
) -> None:
    mine = EtcdHeadAnchor(store, head_key)
    mine.advance(5, "a" * 64)
    other = EtcdHeadAnchor(store, head_key)  # a second writer under the same name
    other.advance(9, "b" * 64)
    with pytest.raises(AnchorConflict, match="seq 9"):
        mine.advance(6, "c" * 64)
    assert anchored(store, head_key) == (9, "b" * 64)
    mine.advance(10, "d" * 64)  # past it: the anchor moves forward again
    assert anchored(store, head_key) == (10, "d" * 64)


def test_closed_files_are_archived_past_a_gap_which_the_archive_keeps(
    tmp_path: Path, store: EtcdStore, head_key: str
) -> None:
    chain = tmp_path / "c1"
    run(chain, EtcdHeadAnchor(store, head_key), 30, rotate=4096)
    newest = segment_files(chain)[-1]
    newest.unlink()  # the newest file removed while down
    run(chain, EtcdHeadAnchor(store, head_key), 40, rotate=4096)
    done = archive_closed(chain, tmp_path / "archive", KEY)
    assert done.files > 0  # a gap does not block the archive (the volume would fill)
    there = verify_chain(tmp_path / "archive", KEY)
    assert not there.problems and len(there.gaps) == 1
