"""Fault injection during a load test, and what the clients saw around it.

``shard_kill`` is a side task for ``open_loop.run_open_loop``: at ``kill_at`` seconds it
SIGKILLs one shard process of a local cluster (as a crash would: no cleanup), and
``restart_after`` seconds later starts it again on the same data directory, logging
``kill``, ``restart`` and ``ready`` on the run's clock. ``fault_report`` then reads the
per-request outcomes around those events: how soon errors began, how long they lasted
after the shard was back, and what each phase's status codes and tail latency were.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.load_report import code_counts
from benchmarks.open_loop import Clock, EventLog, LoadRun, SideTask
from cli.local_cluster import LocalCluster


@dataclass(frozen=True)
class FaultPlan:
    shard_id: str
    kill_at: float
    restart_after: float | None = None

    def __post_init__(self) -> None:
        if self.kill_at < 0 or (self.restart_after is not None and self.restart_after < 0):
            raise ValueError("--kill-at and --restart-after must be >= 0 seconds")


def shard_kill(plan: FaultPlan, cluster: LocalCluster) -> SideTask:
    if plan.shard_id not in cluster.shards:
        raise ValueError(
            f"--kill-shard {plan.shard_id!r}: no such shard; this cluster has {sorted(cluster.shards)}"
        )

    async def run(clock: Clock, log: EventLog) -> None:
        await clock.sleep_until(plan.kill_at)
        kill = log.note("kill", plan.shard_id)
        # Blocking process calls go to a thread so the sender keeps its schedule.
        await asyncio.to_thread(cluster.kill_shard, plan.shard_id)
        if plan.restart_after is None:
            return
        await clock.sleep_until(kill.at + plan.restart_after)
        log.note("restart", plan.shard_id)
        ready = await asyncio.to_thread(cluster.restart_shard, plan.shard_id)
        log.note("ready", f"{plan.shard_id} at {ready.get('grpc')}")

    return run


def _at(run: LoadRun, name: str) -> float | None:
    return next((e.at for e in run.events if e.name == name), None)


def fault_report(run: LoadRun) -> dict[str, Any]:
    """Errors and partial answers relative to the kill and the shard's return."""
    failed = run.completed & ~run.ok
    bad = failed | run.partial
    kill, ready = _at(run, "kill"), _at(run, "ready")
    out: dict[str, Any] = {
        "kill_at_s": kill,
        "restart_at_s": _at(run, "restart"),
        "ready_at_s": ready,
        "failed": int(failed.sum()),
        "partial": int(run.partial.sum()),
        "codes": {c: n for c, n in code_counts(run, failed).items()},
    }
    if kill is None:
        return out
    # By completion time: a request sent just before the kill can still fail because of it.
    out["failed_or_partial_before_kill"] = int((bad & (run.done < kill)).sum())
    after_kill = run.scheduled[bad & (run.scheduled >= kill)]
    out["first_failure_after_kill_s"] = float(after_kill.min() - kill) if after_kill.size else None
    out["last_failure_after_kill_s"] = float(after_kill.max() - kill) if after_kill.size else None
    if ready is not None:
        tail = run.scheduled[bad & (run.scheduled >= ready)]
        # Requests scheduled after the shard is back that still failed: how long clients
        # kept seeing the fault (e.g. until the coordinator learnt the shard's new address).
        out["failures_after_ready"] = int(tail.size)
        out["recovered_after_ready_s"] = float(tail.max() - ready) if tail.size else 0.0
        out["outage_seen_by_clients_s"] = (
            float(after_kill.max() - after_kill.min()) if after_kill.size else 0.0
        )
    ok_after = run.ok & (run.scheduled >= (ready if ready is not None else math.inf))
    out["ok_after_ready"] = int(ok_after.sum())
    out["ok_share_after_ready"] = (
        float(ok_after.sum() / max(1, np.count_nonzero(run.scheduled >= ready)))
        if ready is not None
        else None
    )
    return out
