"""The profile benchmark's summaries: py-spy's folded stacks by function, and
perf's samples by where they ran (library, the kernel's scheduling apart)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.profile_search import (
    folded_summary,
    missing,
    perf,
    perf_report,
    perf_summary,
    profiled,
)
from tests import fake_perf
from tests.polling import poll

PERF_LINES = """
# To display the perf.data header info, please use --header/--header-only options.
    13.75%  [kernel.kallsyms]                         [k] finish_task_switch.isra.0
    13.02%  libpython3.11.so.1.0                      [.] _PyEval_EvalFrameDefault
     8.66%  rocksdict.cpython-311-x86_64-linux-gnu.so [.] rocksdb::(anonymous namespace)::SkipListRep::Iterator::Seek
     5.43%  [kernel.kallsyms]                         [k] _raw_spin_unlock_irqrestore
     4.00%  /venv/lib/python3.11/site-packages/hnswlib.cpython-311-x86_64-linux-gnu.so  [.] hnswlib::L2SqrSIMD16ExtAVX512
     2.50%  cygrpc.cpython-311-x86_64-linux-gnu.so    [.] 0x00000000001f2a10
     1.84%  [kernel.kallsyms]                         [k] tcp_sendmsg
     1.20%  libc.so.6                                 [.] malloc
     0.60%  _multiarray_umath.cpython-311-x86_64-linux-gnu.so [.] DOUBLE_add
     0.40%  libmystery.so                             [.] f
not a sample line
""".splitlines()


def test_perf_samples_are_grouped_by_where_they_ran() -> None:
    groups, symbols = perf_summary(PERF_LINES, top=3)
    assert groups == pytest.approx(
        {
            "kernel: scheduling": 13.75 + 5.43,
            "python interpreter": 13.02,
            "RocksDB": 8.66,
            "hnswlib": 4.00,
            "gRPC core": 2.50,
            "kernel: other": 1.84,
            "libc": 1.20,
            "numpy": 0.60,
            "other": 0.40,
        }
    )
    assert list(groups) == sorted(groups, key=lambda g: -groups[g])  # largest first
    assert symbols == [
        (13.75, "[kernel.kallsyms]", "finish_task_switch.isra.0"),
        (13.02, "libpython3.11.so.1.0", "_PyEval_EvalFrameDefault"),
        (
            8.66,
            "rocksdict.cpython-311-x86_64-linux-gnu.so",
            "rocksdb::(anonymous namespace)::SkipListRep::Iterator::Seek",
        ),
    ]


def test_folded_stacks_count_inclusive_and_self_samples() -> None:
    lines = [
        "main (app.py:1);serve (server.py:9);search (index.py:3) 5",
        "main (app.py:1);serve (server.py:9) 2",
        "main (app.py:2);idle (loop.py:4) 3",
        "garbage",
    ]
    total, ranked = folded_summary(lines, top=3)
    assert total == 10
    assert ranked == [
        ("main (app.py)", 10, 0),
        ("serve (server.py)", 7, 2),
        ("search (index.py)", 5, 5),
    ]


def test_a_recording_runs_until_the_block_ends_and_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = fake_perf.install(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert missing("perf") is None
    out = tmp_path / "rec"
    out.mkdir()
    with profiled("perf", {"me": os.getpid(), "also": os.getpid()}, out, "t") as where:
        # Both recorders are listening for the interrupt that ends the block.
        ready = [out / "t-me.perf.data.ready", out / "t-also.perf.data.ready"]
        assert poll(lambda: all(r.exists() for r in ready), bool, timeout=10, interval=0.01)
        assert where == {}
    assert sorted(p.name for p in out.glob("*.perf.data")) == [
        "t-also.perf.data",
        "t-me.perf.data",
    ]
    assert set(where) == {"me", "also"}
    assert where["me"]["groups_pct"] == pytest.approx(
        {"python interpreter": 40.0, "kernel: scheduling": 25.0, "gRPC core": 20.0, "libc": 15.0}
    )
    with profiled(None, {"me": os.getpid()}, out, "none") as nothing:
        pass
    assert nothing == {}


def test_a_missing_profiler_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    assert missing("perf") == "perf is not installed (linux-perf / linux-tools)"


def _perf_works(tmp: Path) -> bool:
    if perf() is None:
        return False
    done = subprocess.run(
        ["perf", "record", "-o", str(tmp / "probe.data"), "--", "true"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def test_a_real_recording_reads_back_as_python_time(tmp_path: Path) -> None:
    # Only where perf may sample (root or perf_event_paranoid ≤ 1); the
    # summaries above are what this checks end to end.
    if not _perf_works(tmp_path):
        pytest.skip("perf is not installed or may not sample here")
    data = tmp_path / "busy.data"
    busy = "s = 0\nfor i in range(3_000_000):\n    s += i * i\n"
    subprocess.run(
        ["perf", "record", "-F", "999", "-o", str(data), "--", sys.executable, "-c", busy],
        capture_output=True,
        check=True,
    )
    groups, symbols = perf_summary(perf_report(data))
    assert max(groups, key=lambda g: groups[g]) == "python interpreter", groups
    assert symbols and sum(groups.values()) > 90
