"""The rollout protocol's failure paths, on fleets that fail on cue: however a
shard's turn ends, it is not left drained in the registry (a `draining`
intent lives in etcd and outranks what the shard says of itself, so its
buckets would lose a serving replica until someone undrained it by hand);
and `KubectlFleet` against `StatefulSetController`, a model of what the
Kubernetes StatefulSet controller does with a RollingUpdate partition.

The registry is `RecordingRegistry`, which keeps shard intents as the real
one does (serving deletes the intent, anything else stores it); the happy
path and readiness rollback against a real registry are in
tests/test_rollout.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from cli.rollout import KubectlFleet, Rollout, RolloutFailed

OLD, NEW = "vecshard:1.0", "vecshard:2.0"


class RecordingRegistry:
    """Shard intents as `registry.set_shard_state` stores them."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.intents: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []

    def set_shard_state(self, sid: str, state: str, reason: str = "") -> None:
        self.calls.append((sid, state))
        if state == "serving":
            self.intents.pop(sid, None)
        else:
            self.intents[sid] = state

    def status(self) -> SimpleNamespace:
        return SimpleNamespace(
            shards=[
                SimpleNamespace(shard_id=s, state=self.intents.get(s, "serving")) for s in self.ids
            ]
        )


class ScriptedFleet:
    """One shard; `in_flight` and `restart` do what the test says."""

    def __init__(self, in_flight: int = 0, restart_error: Exception | None = None) -> None:
        self._in_flight = in_flight
        self._restart_error = restart_error
        self.restarted: list[str] = []
        self.rolled_back: list[str] = []

    def shard_ids(self) -> list[str]:
        return ["shard-0"]

    def in_flight(self, shard_id: str) -> int:
        return self._in_flight

    def restart(self, shard_id: str) -> None:
        if self._restart_error is not None:
            raise self._restart_error
        self.restarted.append(shard_id)

    def wait_ready(self, shard_id: str, timeout: float) -> None:
        pass

    def rollback(self, shard_id: str) -> None:
        self.rolled_back.append(shard_id)

    def plan(self, shard_id: str) -> list[str]:
        return []


def test_a_drain_timeout_undrains_the_shard_it_never_restarted() -> None:
    """A shard whose in-flight count never reaches 0 (a long stream, a stuck
    RPC): the rollout stops, and the healthy shard serves again."""
    reg = RecordingRegistry(["shard-0"])
    fleet = ScriptedFleet(in_flight=1)
    rollout = Rollout(reg, fleet, drain_timeout=0.2, say=lambda m: None)  # type: ignore[arg-type]
    with pytest.raises(RolloutFailed, match="shard-0 did not drain .*in-flight"):
        rollout.run()
    assert reg.intents == {}
    assert reg.calls == [("shard-0", "draining"), ("shard-0", "serving")]
    assert fleet.restarted == [] and fleet.rolled_back == []


def test_a_failing_in_flight_probe_undrains_the_shard() -> None:
    """The metrics endpoint unreachable (kubectl or urllib raising) is a drain
    failure like a timeout, and ends as a RolloutFailed, not a traceback."""

    class Unreachable(ScriptedFleet):
        def in_flight(self, shard_id: str) -> int:
            raise OSError("connection refused")

    reg = RecordingRegistry(["shard-0"])
    with pytest.raises(RolloutFailed, match="connection refused"):
        Rollout(reg, Unreachable(), drain_timeout=1, say=lambda m: None).run()  # type: ignore[arg-type]
    assert reg.intents == {}


def test_a_failed_restart_is_rolled_back_and_undrained() -> None:
    """LocalFleet.restart raises after SIGTERM when the shard exits non-zero,
    before starting it again: the restart sat outside the rollback block, so
    the shard stayed stopped and drained."""
    reg = RecordingRegistry(["shard-0"])
    fleet = ScriptedFleet(restart_error=RolloutFailed("shard-0 exited with code 1 on SIGTERM"))
    rollout = Rollout(reg, fleet, drain_timeout=1, say=lambda m: None)  # type: ignore[arg-type]
    with pytest.raises(RolloutFailed, match="shard-0 failed restart: .*code 1"):
        rollout.run()
    assert fleet.rolled_back == ["shard-0"]
    assert reg.intents == {}


def test_an_error_rise_drains_the_shard_before_rolling_it_back() -> None:
    """The shard was serving again when its error check failed: rolling it
    back deleted a serving pod, cutting the queries in flight on it."""
    reg = RecordingRegistry(["shard-0"])
    order: list[str] = []

    class Watched(ScriptedFleet):
        def in_flight(self, shard_id: str) -> int:
            order.append(f"in_flight:{reg.intents.get(shard_id, 'serving')}")
            return 0

        def rollback(self, shard_id: str) -> None:
            order.append(f"rollback:{reg.intents.get(shard_id, 'serving')}")
            super().rollback(shard_id)

    fleet = Watched()
    errors = iter([0.0, 3.0])
    rollout = Rollout(
        reg,  # type: ignore[arg-type]
        fleet,
        drain_timeout=1,
        error_count=lambda: next(errors),
        say=lambda m: None,
    )
    with pytest.raises(RolloutFailed, match="3 requests failed"):
        rollout.run()
    assert order[-2:] == ["in_flight:draining", "rollback:draining"]
    assert fleet.rolled_back == ["shard-0"] and reg.intents == {}  # serving again after


class StatefulSetController:
    """`kubectl` for `KubectlFleet`, over a StatefulSet modelled on the
    controller's RollingUpdate rules (kubernetes pkg/controller/statefulset):

    - `updateRevision` is the current template's revision;
    - every pod with ordinal >= the partition on another revision is
      recreated from `updateRevision`;
    - a deleted pod is recreated from `updateRevision` at or above the
      partition, from `currentRevision` below it;
    - `currentRevision` becomes `updateRevision` once every pod runs it and is
      Ready.

    Changes apply at once (the real controller goes one pod at a time, which
    changes no outcome here). A revision is named after its image; pods in
    `broken` never get Ready on the new image."""

    def __init__(self, replicas: int, broken: frozenset[int] = frozenset()) -> None:
        self.replicas = replicas
        self.template = OLD
        self.current = OLD
        self.partition = 0
        self.pods = dict.fromkeys(range(replicas), OLD)
        self.broken = broken
        self.recreated: list[tuple[int, str, str]] = []  # (ordinal, from, to)

    def _ready(self, ordinal: int) -> bool:
        return not (self.pods.get(ordinal) == NEW and ordinal in self.broken)

    def _reconcile(self) -> None:
        for i in sorted(range(self.replicas), reverse=True):
            want = self.template if i >= self.partition else self.current
            if i not in self.pods:
                self.recreated.append((i, "deleted", want))
                self.pods[i] = want
            elif i >= self.partition and self.pods[i] != self.template:
                self.recreated.append((i, self.pods[i], self.template))
                self.pods[i] = self.template
        if all(p == self.template for p in self.pods.values()) and all(
            self._ready(i) for i in self.pods
        ):
            self.current = self.template

    def run(self, cmd: list[str]) -> str:
        assert cmd[:3] == ["kubectl", "-n", "vecshard"] or cmd[1:3] == ["get", "--raw"], cmd
        args = cmd[3:]
        if args[:2] == ["patch", "statefulset"]:
            patch = json.loads(args[args.index("-p") + 1])
            self.partition = patch["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
        elif args[:2] == ["set", "image"]:
            self.template = args[3].split("=", 1)[1]
        elif args[:2] == ["delete", "pod"]:
            del self.pods[int(args[2].rsplit("-", 1)[1])]
        elif args[:2] == ["get", "statefulset"]:
            fields = {
                "{.spec.replicas}": str(self.replicas),
                "{.status.updateRevision}": self.template,
                "{.status.currentRevision}": self.current,
                "{.spec.template.spec.containers[?(@.name=='shard')].image}": self.template,
            }
            out = args[-1].removeprefix("jsonpath=")
            for path, value in fields.items():
                out = out.replace(path, value)
            return out
        elif args[:2] == ["get", "pod"]:
            i = int(args[2].rsplit("-", 1)[1])
            return json.dumps(
                {
                    "metadata": {"labels": {"controller-revision-hash": self.pods[i]}},
                    "status": {"conditions": [{"type": "Ready", "status": str(self._ready(i))}]},
                }
            )
        elif cmd[1:3] == ["get", "--raw"]:
            return ""  # metrics with no request in flight
        else:
            raise AssertionError(f"unexpected kubectl call {cmd}")
        self._reconcile()
        return ""


def test_kubectl_rollback_recreates_only_the_failed_shard() -> None:
    """3 shards rolled 2 → 1 → 0; shard 1 never gets Ready on the new image.
    Rolling it back set the old image with the partition at 1, so the
    controller also recreated ordinal 2 — updated and serving — undrained,
    while ordinal 1 was still down: a bucket on shards 1 and 2 had no replica."""
    sts = StatefulSetController(3, broken=frozenset({1}))
    fleet = KubectlFleet(NEW, run=sts.run)
    fleet.prepare()
    reg = RecordingRegistry(fleet.shard_ids())
    rollout = Rollout(reg, fleet, drain_timeout=1, ready_timeout=0, say=lambda m: None)  # type: ignore[arg-type]
    with pytest.raises(RolloutFailed, match="vecshard-shard-1 failed readiness"):
        rollout.run()
    assert sts.recreated == [
        (2, OLD, NEW),  # its turn
        (1, OLD, NEW),  # its turn, never Ready
        (1, "deleted", OLD),  # the rollback
    ]
    assert sts.pods == {0: OLD, 1: OLD, 2: NEW}
    assert sts.partition == 2 and sts.template == NEW
    assert reg.intents == {}


def test_kubectl_rollback_after_the_update_completed_says_how_to_roll_back() -> None:
    """The last shard's error check fails after every pod runs the new image
    and is Ready: the controller has made it the current revision, so there
    is nothing to recreate one pod from. The rollout says so and leaves
    every pod alone, rather than restarting a shard onto the same image."""
    sts = StatefulSetController(2)
    fleet = KubectlFleet(NEW, run=sts.run)
    fleet.prepare()
    reg = RecordingRegistry(fleet.shard_ids())
    errors = iter([0.0, 0.0, 0.0, 5.0])
    rollout = Rollout(
        reg,  # type: ignore[arg-type]
        fleet,
        drain_timeout=1,
        ready_timeout=1,
        error_count=lambda: next(errors),
        say=lambda m: None,
    )
    with pytest.raises(RolloutFailed, match=r"5 requests failed .* --image vecshard:1\.0"):
        rollout.run()
    assert sts.pods == {0: NEW, 1: NEW}
    assert len(sts.recreated) == 2
    assert reg.intents == {}


def test_a_dry_run_plans_for_the_replicas_the_statefulset_has() -> None:
    """It planned for 3 shards whatever the StatefulSet had: for 6 it pinned
    `partition: 3` and planned ordinals 2, 1, 0, so an operator following it
    released 3-5 at once, undrained. It reads `.spec.replicas` and changes
    nothing."""
    sts = StatefulSetController(6)
    fleet = KubectlFleet(NEW, dry_run=True, run=sts.run)
    first = fleet.prepare()[0]
    assert json.loads(first[-1])["spec"]["updateStrategy"]["rollingUpdate"] == {"partition": 6}
    plan = Rollout(None, fleet).dry_run()
    assert [
        json.loads(p.split(" -p ")[1].strip("'"))["spec"]["updateStrategy"]["rollingUpdate"]
        for p in plan
        if "patch" in p
    ] == [{"partition": i} for i in (5, 4, 3, 2, 1, 0)]
    assert (sts.template, sts.partition, sts.recreated) == (OLD, 0, [])
