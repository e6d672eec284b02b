"""A server starting while etcd is down waits for it (registry.store
`EtcdStore.wait_reachable`) instead of exiting at once with a traceback — an
orchestrator's restart back-off then outlasted the outage by minutes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from cli.local_cluster import LocalCluster
from cli.pki import LocalPki
from core.errors import Unavailable
from registry.store import EtcdStore


def test_the_wait_backs_off_and_gives_up_at_its_deadline() -> None:
    store = EtcdStore("127.0.0.1:1", tls=None, timeout=0.5)  # nothing listens there
    now = [0.0]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    with pytest.raises(Unavailable, match="etcd at 127.0.0.1:1 is unreachable"):
        store.wait_reachable(20.0, sleep=sleep, clock=lambda: now[0])
    assert pauses[:5] == [0.25, 0.5, 1.0, 2.0, 4.0] and max(pauses) == 5.0
    assert sum(pauses) <= 20.0
    store.close()


@pytest.mark.integration
def test_a_coordinator_and_a_shard_started_while_etcd_is_down_come_up_with_it(
    pki: LocalPki, tmp_path: Path
) -> None:
    cluster = LocalCluster(tmp_path / "c", num_shards=1, num_coordinators=1, pki=pki)
    timers: list[threading.Timer] = []
    try:
        cluster.start()
        assert cluster.etcd is not None
        etcd = cluster.etcd
        for restart, log in [
            (lambda: cluster.restart_coordinator(0, timeout=60), "coordinator.log"),
            (lambda: cluster.restart_shard("shard-0", timeout=60), "shard-0.log"),
        ]:
            etcd.stop()
            back = threading.Timer(3.0, etcd.restart)
            timers.append(back)
            back.start()
            started = time.monotonic()
            restart()  # it used to exit with code 1 at once
            back.join()
            assert 2.5 < time.monotonic() - started < 50
            text = (cluster.logs / log).read_text()
            assert "waiting for etcd" in text and "Traceback" not in text
    finally:
        for timer in timers:  # a failed restart must not leave etcd to start after the stop
            timer.cancel()
            timer.join()
        cluster.stop()
