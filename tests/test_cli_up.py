"""`vecshard up`: the demo prints real results and exits 0 with --once, and
Ctrl-C leaves no process behind."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
VECSHARD = str(Path(sys.executable).parent / "vecshard")


def test_demo_once_prints_results_and_exits_zero(tmp_path: Path) -> None:
    out = subprocess.run(
        [VECSHARD, "up", "--demo", "--once", "--shards", "2", "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "vecshard local cluster is up" in text
    assert re.search(r"upserted 3000 items for tenant 'acme'", text)
    # result tables: rank, an item id, a score in the jazz cluster, a shard
    rows = re.findall(r"^\s+\d+\s+item-\d{5}\s+0\.9\d{3}\s+jazz", text, flags=re.M)
    assert len(rows) >= 5, text
    assert re.search(r"item-99999\s+missing", text) and re.search(r"deleted\s*$", text, flags=re.M)
    assert text.rstrip().endswith("stopped.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not a running process
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [VECSHARD, "up", "--shards", "2", "--data-dir", str(tmp_path / "d")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        lines.append(line)
        if "Press Ctrl-C" in line or time.monotonic() > deadline:
            break
    pids = [int(p) for p in re.findall(r"pid (\d+)", "".join(lines))]
    assert len(pids) == 4, "".join(lines)  # etcd, 2 shards, coordinator
    assert all(_alive(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "stopped." in rest
    assert [p for p in pids if _alive(p)] == []


def test_a_second_up_on_a_data_dir_in_use_is_refused_at_once(tmp_path: Path) -> None:
    """It waited a minute on etcd's lock and ended in a traceback; with
    --fresh it would first have deleted the running cluster's data."""
    data = tmp_path / "d"
    data.mkdir()
    (data / "keep").write_text("a running cluster's data")
    with open(tmp_path / "d.lock", "w") as held:  # what the first `vecshard up` holds
        held.write("pid 4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        out = subprocess.run(
            [VECSHARD, "up", "--once", "--fresh", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert time.monotonic() - started < 20
    assert out.returncode == 1
    assert f"{data} is in use by another `vecshard up` (pid 4242)" in out.stderr
    assert "Traceback" not in out.stderr
    assert (data / "keep").exists()


def test_closing_the_terminal_stops_every_process(tmp_path: Path) -> None:
    """`make run` in a terminal that is closed: the hangup (SIGHUP, which `up`
    takes for a rolling restart) made its next print fail with EIO, and so
    did the first print of its clean-up, before it stopped anything: etcd,
    the shards and the coordinator (each in a session of its own) ran on,
    holding the data directory. Here `up` runs on a pseudo-terminal that is
    its controlling terminal, and the terminal is closed."""
    import pty

    master, slave = pty.openpty()

    def controlling_terminal() -> None:  # in the child, after setsid
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [VECSHARD, "up", "--shards", "2", "--data-dir", str(tmp_path / "d")],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=controlling_terminal,  # only an ioctl, between fork and exec
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    while b"Press Ctrl-C" not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            seen += os.read(master, 65536)
    pids = [int(p) for p in re.findall(rb"pid (\d+)", seen)]
    try:
        assert len(pids) == 4, seen.decode(errors="replace")  # etcd, 2 shards, coordinator
        os.close(master)  # the terminal hangs up
        proc.wait(timeout=60)  # stopping the cluster waits for every child
        assert [p for p in pids if _alive(p)] == []
    finally:
        for p in pids:  # what the test started, should a check above fail
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
