"""The rollout protocol's failure paths, on fleets that fail on cue: however a
shard's turn ends, it is not left drained in the registry (a `draining`
intent lives in etcd and outranks what the shard says of itself, so its
buckets would lose a serving replica until someone undrained it by hand).

The registry is `RecordingRegistry`, which keeps shard intents as the real
one does (serving deletes the intent, anything else stores it); the happy
path and readiness rollback against a real registry are in
tests/test_rollout.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cli.rollout import Rollout, RolloutFailed


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
