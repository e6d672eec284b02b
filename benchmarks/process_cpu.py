"""CPU time each process of a local cluster spends per query: where the time goes.

On a 2-core machine the load generator, the coordinator and the shards compete for the same
cores, so QPS is bounded by the CPU one query costs summed over every process it touches.
Reading each process's user+system time (``/proc/<pid>/stat``) before and after a
measurement, divided by the queries answered, shows that split without a profiler; the
profiler (py-spy, see ``benchmarks/README.md``) then says what inside a process costs it.

Minor page faults per query are read beside it: on this shared machine CPU time per query
moves ±30 % between identical runs, while a page-fault count is exact, and a hot path that
maps and unmaps a large temporary on every call shows up there first (a shard's batched
rerank once cost 427 faults a call).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it are fixed.
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (None if it is gone or not Linux)."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / _TICKS


def context_switches(pid: int) -> int | None:
    """Context switches, voluntary and not, of every thread of a process so far (None if it
    is gone or not Linux). Threads that exited meanwhile drop out of the sum, so compare
    counts over spans in which the process's threads live on (a server under load)."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread exited
        for line in status.splitlines():
            if "ctxt_switches:" in line:
                total += int(line.split(":", 1)[1])
    return total


def minor_faults(pid: int) -> int | None:
    """Minor page faults of a process so far (None if it is gone or not Linux)."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[7])


class CpuMeter:
    """CPU seconds used by named processes (and this one) between ``start`` and ``stop``;
    their minor page faults and context switches over the same span beside it."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._start: dict[str, tuple[float | None, int | None, int | None]] = {}
        self._own = 0.0
        # Of each named process between start and stop (None: it is gone).
        self.faults: dict[str, int | None] = {}
        self.switches: dict[str, int | None] = {}

    @staticmethod
    def _read(pid: int) -> tuple[float | None, int | None, int | None]:
        return cpu_seconds(pid), minor_faults(pid), context_switches(pid)

    def start(self) -> CpuMeter:
        self._start = {name: self._read(pid) for name, pid in self.pids.items()}
        self._own = time.process_time()
        return self

    def stop(self) -> dict[str, float | None]:
        used: dict[str, float | None] = {"client": time.process_time() - self._own}
        for name, pid in self.pids.items():
            (cpu0, faults0, switches0), (cpu1, faults1, switches1) = (
                self._start.get(name, (None, None, None)),
                self._read(pid),
            )
            used[name] = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
            self.faults[name] = None if faults0 is None or faults1 is None else faults1 - faults0
            self.switches[name] = (
                None if switches0 is None or switches1 is None else switches1 - switches0
            )
        return used


def per_query_ms(used: Mapping[str, float | None], queries: int) -> dict[str, float | None]:
    """CPU milliseconds per answered query for each process, and their total."""
    if queries <= 0:
        return {name: None for name in [*used, "total"]}
    out = {name: None if s is None else s / queries * 1e3 for name, s in used.items()}
    known = [v for v in out.values() if v is not None]
    out["total"] = sum(known) if known else None
    return out


def per_query_faults(faults: Mapping[str, int | None], queries: int) -> dict[str, float | None]:
    """Minor page faults per answered query for each process."""
    return {name: None if n is None or queries <= 0 else n / queries for name, n in faults.items()}
