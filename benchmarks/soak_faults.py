"""The soak's chaos: one fault at a time, at random moments, on a local
cluster — SIGKILL and restart of a shard, a coordinator or etcd, and a shard
restarted with delayed replies. One at a time so that, with two replicas per
bucket and two coordinators, every acknowledged write stays reachable: the
soak checks correctness under failures, not survival of a double fault.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from cli.local_cluster import LocalCluster
from core.runtime import FAULTS_ENV


@dataclass
class Chaos:
    cluster: LocalCluster
    seed: int
    # Seconds between faults (uniform), and how long a killed process stays down.
    gap: tuple[float, float] = (2.0, 5.0)
    down: tuple[float, float] = (1.0, 3.0)
    log: Callable[[str], None] = print
    injected: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _pause(self, rng: random.Random, span: tuple[float, float]) -> bool:
        """Waits a random time in `span`; False once the chaos is stopped."""
        return not self.stop.wait(rng.uniform(*span))

    def _kill_shard(self, rng: random.Random) -> None:
        sid = rng.choice(sorted(self.cluster.shards))
        self.log(f"chaos: SIGKILL {sid}")
        self.cluster.kill_shard(sid)
        self._pause(rng, self.down)
        self.cluster.restart_shard(sid)
        self.log(f"chaos: {sid} back")

    def _kill_coordinator(self, rng: random.Random) -> None:
        n = rng.randrange(len(self.cluster.coordinators))
        self.log(f"chaos: SIGKILL coordinator {n}")
        self.cluster.kill_coordinator(n)
        self._pause(rng, self.down)
        self.cluster.restart_coordinator(n)
        self.log(f"chaos: coordinator {n} back")

    def _kill_etcd(self, rng: random.Random) -> None:
        etcd = self.cluster.etcd
        assert etcd is not None, "the soak needs its own etcd to kill"
        self.log("chaos: SIGKILL etcd")
        etcd.kill()
        self._pause(rng, self.down)
        etcd.restart()
        self.log("chaos: etcd back")

    def _slow_shard(self, rng: random.Random) -> None:
        sid = rng.choice(sorted(self.cluster.shards))
        delay = rng.choice(("0.3", "0.8"))
        self.log(f"chaos: {sid} answers searches and lookups {delay}s late")
        self.cluster.shard_env[sid] = {FAULTS_ENV: f"Search=delay:{delay},BatchGet=delay:{delay}"}
        self.cluster.restart_shard(sid)
        self._pause(rng, (3.0, 6.0))
        self.cluster.shard_env.pop(sid, None)
        self.cluster.restart_shard(sid)
        self.log(f"chaos: {sid} prompt again")

    def _run(self) -> None:
        rng = random.Random(self.seed)
        faults = {
            "shard_kill": self._kill_shard,
            "coordinator_kill": self._kill_coordinator,
            "etcd_kill": self._kill_etcd,
            "shard_delay": self._slow_shard,
        }
        kinds = sorted(faults)
        turn = 0
        while self._pause(rng, self.gap):
            # Every kind early on (a short soak sees each), then at random.
            kind = kinds[turn] if turn < len(kinds) else rng.choice(kinds)
            turn += 1
            faults[kind](rng)
            self.injected[kind] += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
