"""Rolling shard restarts, one shard at a time:

    drain in the registry → coordinators stop sending new queries
    → wait until the shard's in-flight requests reach zero
    → restart it (kubectl: lower the StatefulSet partition; local: SIGTERM + start)
    → wait until the new process is Ready and registered
    → mark it serving → check the error rate → next shard.

A failed restart or readiness, or an error-rate rise, stops the rollout and
rolls the current shard back; a shard that does not drain in time is set
serving again, not restarted. Either way no shard is left drained. The
protocol is one class over a `ShardFleet`, so the same code drives
Kubernetes and the local cluster the tests use.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn, Protocol

from client.registry_client import RegistryClient

_IN_FLIGHT = re.compile(
    r'^vecshard_grpc_in_flight\{[^}]*component="shard"[^}]*\} ([0-9.eE+-]+)$', re.M
)


_REQUESTS = re.compile(r"^vecshard_grpc_requests_total\{([^}]*)\} ([0-9.eE+-]+)$", re.M)


# Writes wait for every replica of their buckets (the default write quorum):
# while a shard restarts, those to its buckets are refused UNAVAILABLE and
# retried by their callers — what a restart means, not a broken shard.
WRITES = ("Upsert", "UpsertColumns", "Delete", "PutFeatures")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def failed_requests_from_metrics(text: str) -> float:
    """Requests a coordinator answered with an error status (not OK, not
    client mistakes such as INVALID_ARGUMENT/NOT_FOUND, not a write refused
    UNAVAILABLE while a replica is away), from its Prometheus text."""
    ignore = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED"}
    failed = 0.0
    for labels, v in _REQUESTS.findall(text):
        label = dict(_LABEL.findall(labels))
        code, method = label.get("code"), label.get("method")
        if label.get("component") != "coordinator" or code in ignore:
            continue
        if code == "UNAVAILABLE" and method in WRITES:
            continue
        failed += float(v)
    return failed


def coordinator_errors(url: str) -> Callable[[], float]:
    def read() -> float:
        return failed_requests_from_metrics(urllib.request.urlopen(url, timeout=5).read().decode())

    return read


def in_flight_from_metrics(text: str) -> int:
    """Requests a shard is handling now, from its Prometheus text."""
    return int(sum(float(v) for v in _IN_FLIGHT.findall(text)))


class RolloutFailed(RuntimeError):
    pass


class ShardFleet(Protocol):
    def shard_ids(self) -> list[str]:
        """Shards in the order they are rolled."""
        ...

    def in_flight(self, shard_id: str) -> int: ...

    def restart(self, shard_id: str) -> None: ...

    def wait_ready(self, shard_id: str, timeout: float) -> None: ...

    def rollback(self, shard_id: str) -> None: ...

    def plan(self, shard_id: str) -> list[str]:
        """What restart would run, for --dry-run."""
        ...


@dataclass
class Rollout:
    registry: RegistryClient | None
    fleet: ShardFleet
    drain_timeout: float = 60.0
    ready_timeout: float = 300.0
    # Returns the coordinators' failed-request count so far; a rise above
    # `max_new_errors` during one shard's restart stops the rollout.
    error_count: Callable[[], float] | None = None
    max_new_errors: float = 0.0
    say: Callable[[str], None] = print

    def _wait(self, what: str, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise RolloutFailed(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.05)

    def _state(self, shard_id: str) -> str | None:
        assert self.registry is not None
        return next(
            (s.state for s in self.registry.status().shards if s.shard_id == shard_id), None
        )

    def dry_run(self) -> list[str]:
        lines = []
        for sid in self.fleet.shard_ids():
            lines.append(f"# {sid}: drain in the registry, wait for in-flight = 0")
            lines.extend(self.fleet.plan(sid))
            lines.append(f"# {sid}: wait Ready and registered, mark serving")
        return lines

    def run(self) -> None:
        assert self.registry is not None
        for sid in self.fleet.shard_ids():
            self._roll(sid)

    def _roll(self, sid: str) -> None:
        """One shard, drain → idle → restart → serve; a method so the waits' lambdas
        close over this shard's id rather than the loop variable."""
        assert self.registry is not None
        errors_before = self.error_count() if self.error_count else 0.0
        self.say(f"[{sid}] draining")
        try:
            self._drain(sid, "rollout")
        except Exception as exc:
            # Not restarted, so it still serves the old build, healthy: the
            # `draining` intent lives in etcd and outranks what the shard says
            # of itself, so left there its buckets would lose a replica for good.
            self.registry.set_shard_state(sid, "serving")
            raise RolloutFailed(
                f"{sid} did not drain ({exc}); it serves on, not restarted"
            ) from exc
        self.say(f"[{sid}] idle; restarting")
        step = "restart"
        try:
            # Inside the rollback block: a restart can fail half-way (a local
            # shard stopped but not started again) and then needs the rollback.
            self.fleet.restart(sid)
            step = "readiness"
            self.fleet.wait_ready(sid, self.ready_timeout)
            self._wait(
                f"{sid} to register again",
                lambda: self._state(sid) is not None,
                self.ready_timeout,
            )
        except Exception as exc:
            self._roll_back(sid, f"{sid} failed {step}: {exc}", exc)
        self.registry.set_shard_state(sid, "serving")
        self._wait(f"{sid} to serve", lambda: self._state(sid) == "serving", self.drain_timeout)
        if self.error_count is not None:
            new = self.error_count() - errors_before
            if new > self.max_new_errors:
                self._drain_before_rollback(sid)
                self._roll_back(sid, f"{new:.0f} requests failed while {sid} restarted", None)
        self.say(f"[{sid}] serving")

    def _drain(self, sid: str, reason: str) -> None:
        """Marks the shard draining and waits until no request is in flight on it."""
        assert self.registry is not None
        self.registry.set_shard_state(sid, "draining", reason)
        self._wait(
            f"{sid} to show as draining", lambda: self._state(sid) == "draining", self.drain_timeout
        )
        self._wait(
            f"{sid} in-flight requests to reach 0",
            lambda: self.fleet.in_flight(sid) == 0,
            self.drain_timeout,
        )

    def _drain_before_rollback(self, sid: str) -> None:
        """A shard back to serving is drained again before it is rolled back:
        deleting a serving pod cut the queries in flight on it. Best effort —
        errors are rising, so a drain that does not finish in time does not
        hold the rollback up."""
        self.say(f"[{sid}] draining before the rollback")
        try:
            self._drain(sid, "rollout rollback")
        except Exception as exc:  # noqa: BLE001 - best effort, see above
            self.say(f"[{sid}] did not drain ({exc}); rolling back anyway")

    def _roll_back(self, sid: str, why: str, cause: Exception | None) -> NoReturn:
        """Rolls this one shard back and stops the rollout with `why`."""
        assert self.registry is not None
        self.say(f"[{sid}] {why}; rolling it back")
        try:
            self.fleet.rollback(sid)
        except Exception as exc:
            raise RolloutFailed(f"{why}; rolling {sid} back failed too: {exc}") from exc
        finally:
            # The old build serves again (or, if that failed too, the shard
            # counts once it registers as Ready): left drained, its buckets
            # would have no serving replica until someone undrained it by hand.
            self.registry.set_shard_state(sid, "serving")
        raise RolloutFailed(why) from cause


class KubectlFleet:
    """A shard StatefulSet, updated one ordinal at a time via its partition."""

    def __init__(
        self,
        image: str,
        namespace: str = "vecshard",
        statefulset: str = "vecshard-shard",
        container: str = "shard",
        kubectl: str = "kubectl",
        dry_run: bool = False,
        run: Callable[[list[str]], str] | None = None,
    ) -> None:
        self.image = image
        self.ns = namespace
        self.sts = statefulset
        self.container = container
        self.kubectl = kubectl
        self.dry_run = dry_run
        self._run = run or self._subprocess
        self._previous_image: str | None = None
        self._replicas: int | None = None

    def _cmd(self, *args: str) -> list[str]:
        return [self.kubectl, "-n", self.ns, *args]

    @staticmethod
    def _subprocess(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RolloutFailed(f"{' '.join(cmd)} failed: {exc}") from exc
        if out.returncode != 0:
            raise RolloutFailed(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
        return out.stdout

    def _partition_patch(self, partition: int) -> list[str]:
        patch = json.dumps(
            {
                "spec": {
                    "updateStrategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"partition": partition},
                    }
                }
            }
        )
        return self._cmd("patch", "statefulset", self.sts, "-p", patch)

    def replicas(self) -> int:
        """The StatefulSet's replica count, read with a `kubectl get` also for
        --dry-run (it changes nothing): a plan for another count than the one
        it would roll pins the wrong partition and skips or invents ordinals."""
        if self._replicas is None:
            out = self._run(
                self._cmd("get", "statefulset", self.sts, "-o", "jsonpath={.spec.replicas}")
            ).strip()
            if not out.isdigit():
                raise RolloutFailed(f"statefulset/{self.sts} has no replica count (got {out!r})")
            self._replicas = int(out)
        return self._replicas

    def prepare(self) -> list[list[str]]:
        """Pin the partition at the top so the new image reaches no pod yet."""
        cmds = [
            self._partition_patch(self.replicas()),
            self._cmd("set", "image", f"statefulset/{self.sts}", f"{self.container}={self.image}"),
        ]
        if not self.dry_run:
            self._previous_image = self._run(
                self._cmd(
                    "get",
                    "statefulset",
                    self.sts,
                    "-o",
                    f"jsonpath={{.spec.template.spec.containers[?(@.name=='{self.container}')].image}}",
                )
            ).strip()
            for cmd in cmds:
                self._run(cmd)
        return cmds

    def shard_ids(self) -> list[str]:
        return [f"{self.sts}-{i}" for i in reversed(range(self.replicas()))]

    def _ordinal(self, shard_id: str) -> int:
        return int(shard_id.rsplit("-", 1)[1])

    def plan(self, shard_id: str) -> list[str]:
        return [
            shlex.join(self._partition_patch(self._ordinal(shard_id))),
            shlex.join(
                self._cmd("wait", "--for=condition=Ready", f"pod/{shard_id}", "--timeout=300s")
            ),
        ]

    def in_flight(self, shard_id: str) -> int:
        text = self._run(
            [
                self.kubectl,
                "get",
                "--raw",
                f"/api/v1/namespaces/{self.ns}/pods/{shard_id}:9100/proxy/metrics",
            ]
        )
        return in_flight_from_metrics(text)

    def restart(self, shard_id: str) -> None:
        self._run(self._partition_patch(self._ordinal(shard_id)))

    def wait_ready(self, shard_id: str, timeout: float) -> None:
        revision = self._run(
            self._cmd("get", "statefulset", self.sts, "-o", "jsonpath={.status.updateRevision}")
        ).strip()
        deadline = time.monotonic() + timeout
        while True:  # the old pod must be gone and the new revision Ready
            pod = json.loads(self._run(self._cmd("get", "pod", shard_id, "-o", "json")))
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in pod.get("status", {}).get("conditions", [])
            )
            if (
                pod["metadata"].get("labels", {}).get("controller-revision-hash") == revision
                and ready
            ):
                return
            if time.monotonic() > deadline:
                raise RolloutFailed(
                    f"pod {shard_id} not Ready on revision {revision} after {timeout:.0f}s"
                )
            time.sleep(1.0)

    def rollback(self, shard_id: str) -> None:
        """Puts this one pod back on the previous revision, touching no other.

        Reverting the template with the partition at this ordinal made the
        controller recreate every higher ordinal too — already updated and
        serving — undrained, while this one was still down. Instead the
        template stays new and the partition goes just above this ordinal, so
        the controller no longer updates it; deleting the pod then makes the
        controller recreate it from `.status.currentRevision`, as it does every
        pod below the partition. The higher ordinals keep the new image.
        """
        revisions = self._run(
            self._cmd(
                "get",
                "statefulset",
                self.sts,
                "-o",
                "jsonpath={.status.currentRevision} {.status.updateRevision}",
            )
        ).split()
        if len(revisions) != 2 or revisions[0] == revisions[1]:
            # Every pod ran the new revision and was Ready, so the controller
            # made it the current one: a recreated pod would get it again.
            raise RolloutFailed(
                f"cannot roll {shard_id} back alone: the StatefulSet has no previous revision "
                f"left (revisions {revisions}); roll every shard back with "
                f"`vecshard rollout shards --image {self._previous_image or 'OLD_IMAGE'}`"
            )
        self._run(self._partition_patch(self._ordinal(shard_id) + 1))
        self._run(self._cmd("delete", "pod", shard_id, "--wait=false"))


class LocalFleet:
    """The shard processes of a `vecshard up` / LocalCluster."""

    def __init__(self, cluster: object, shard_ids: Sequence[str] | None = None) -> None:
        from cli.local_cluster import LocalCluster

        assert isinstance(cluster, LocalCluster)
        self.cluster = cluster
        self._ids = list(shard_ids or cluster.shard_ids())

    def shard_ids(self) -> list[str]:
        return list(self._ids)

    def in_flight(self, shard_id: str) -> int:
        ready = self.cluster.shards[shard_id].ready or {}
        url = f"http://127.0.0.1:{ready['metrics']}/metrics"
        return in_flight_from_metrics(urllib.request.urlopen(url, timeout=5).read().decode())

    def plan(self, shard_id: str) -> list[str]:
        return [f"SIGTERM {shard_id} (graceful), start it again on the same data directory"]

    def restart(self, shard_id: str) -> None:
        child = self.cluster.shards[shard_id]
        rc = child.stop()  # SIGTERM: finish in-flight, release the lease, exit 0
        if rc != 0:
            raise RolloutFailed(f"{shard_id} exited with code {rc} on SIGTERM, expected 0")
        child.start()

    def wait_ready(self, shard_id: str, timeout: float) -> None:
        self.cluster.shards[shard_id].wait_ready(timeout)

    def rollback(self, shard_id: str) -> None:
        child = self.cluster.shards[shard_id]
        if not child.alive():
            child.start()
