"""The open-loop load generator: sends at scheduled times over grpc.aio, whatever the server does.

Send times come from ``benchmarks.arrivals`` before the run starts. The sender never waits
for an answer before sending the next request, and every latency is measured from the
request's *scheduled* time, so when the server (or the generator itself) stalls, the
requests due meanwhile are sent late and their wait counts as latency — the queueing a real
client population would have seen — instead of disappearing (coordinated omission).

The outcome is kept per request in preallocated numpy columns (scheduled, sent and done
times, kind, status code, partial flag), so reports, per-second timelines and windows
around a fault are all computed afterwards from the same numbers, and tests can compare
them with numpy. Side tasks (fault injection) run on the same clock and log events.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import grpc
import grpc.aio
import numpy as np
from numpy.typing import NDArray

from benchmarks.arrivals import Arrivals, arrival_offsets
from benchmarks.latency import LatencyHistogram
from benchmarks.request_mix import RequestMix

OK = "OK"


@dataclass(frozen=True)
class OpenLoopConfig:
    rate: float
    duration: float
    arrivals: Arrivals = "poisson"
    seed: int = 0
    # Client-side deadline per request; it also bounds how many requests can be in flight.
    timeout: float = 2.0
    # Set-up lead so the first sends are not late by the cost of starting the sender.
    start_delay: float = 0.05

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout}")


@dataclass(frozen=True)
class Event:
    """Something a side task did during the run (``kill``, ``ready``, ...), on the run clock."""

    at: float
    name: str
    detail: str = ""


class Clock:
    """Seconds since the run's start: the sender, progress and side tasks share one."""

    def __init__(self, start: float) -> None:
        self.start = start

    def now(self) -> float:
        return time.perf_counter() - self.start

    async def sleep_until(self, offset: float) -> None:
        delay = offset - self.now()
        if delay > 0:
            await asyncio.sleep(delay)


class EventLog:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.events: list[Event] = []

    def note(self, name: str, detail: str = "") -> Event:
        event = Event(self.clock.now(), name, detail)
        self.events.append(event)
        return event


SideTask = Callable[[Clock, EventLog], Awaitable[None]]


@dataclass
class LoadRun:
    """Everything a run observed, one row per scheduled request (NaN where never sent)."""

    config: OpenLoopConfig
    kind_names: list[str]
    code_names: list[str]
    kind: NDArray[np.int64]
    scheduled: NDArray[np.float64]
    sent: NDArray[np.float64]
    done: NDArray[np.float64]
    code: NDArray[np.int16]
    partial: NDArray[np.bool_]
    events: list[Event] = field(default_factory=list)
    interrupted: bool = False

    @property
    def completed(self) -> NDArray[np.bool_]:
        return ~np.isnan(self.done)

    @property
    def ok(self) -> NDArray[np.bool_]:
        # Annotated: numpy's stubs type the comparison with an int as Any.
        ok: NDArray[np.bool_] = self.completed & (self.code == self.code_names.index(OK))
        return ok

    @property
    def latency(self) -> NDArray[np.float64]:
        """From the scheduled send time: what a user arriving then waited (NaN if not done)."""
        return self.done - self.scheduled


class Progress:
    """The live line: elapsed, sent, achieved rate, p99 so far, errors; once a second.

    On a terminal it rewrites one line with ``\\r``; into a file or pipe it writes one line
    per second, so CI logs stay readable.
    """

    def __init__(self, stream: TextIO | None, label: str = "loadtest") -> None:
        self.stream = stream
        self.label = label
        self._tty = bool(stream is not None and stream.isatty())
        self._last_sent = 0
        self._last_at = 0.0

    def show(
        self,
        at: float,
        sent: int,
        done: int,
        errors: int,
        partial: int,
        p99: float,
        final: bool = False,
    ) -> None:
        """One status line; ``rate`` is over the last second, or the whole run if ``final``."""
        if self.stream is None:
            return
        since = 0 if final else self._last_sent
        rate = (sent - since) / max(at - (0.0 if final else self._last_at), 1e-9)
        self._last_sent, self._last_at = sent, at
        p99_text = f"{p99 * 1e3:8.2f} ms" if math.isfinite(p99) else "       - ms"
        line = (
            f"[{self.label}] {at:6.1f}s  sent {sent:>8}  rate {rate:8.1f}/s  done {done:>8}"
            f"  p99 {p99_text}  errors {errors:>6}  partial {partial:>6}"
        )
        self.stream.write(f"\r{line}" if self._tty else f"{line}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self._tty:
            self.stream.write("\n")
            self.stream.flush()


class _Recorder:
    """Fills the per-request columns as answers arrive; keeps live counters for progress."""

    def __init__(self, n: int) -> None:
        self.sent = np.full(n, np.nan)
        self.done = np.full(n, np.nan)
        self.code = np.zeros(n, dtype=np.int16)
        self.partial = np.zeros(n, dtype=np.bool_)
        self.code_names = [OK]
        self._code_index = {OK: 0}
        self.n_sent = self.n_done = self.n_errors = self.n_partial = 0
        self.live = LatencyHistogram()

    def code_of(self, name: str) -> int:
        index = self._code_index.get(name)
        if index is None:
            index = self._code_index[name] = len(self.code_names)
            self.code_names.append(name)
        return index


async def run_open_loop(
    channel: grpc.aio.Channel,
    mix: RequestMix,
    config: OpenLoopConfig,
    *,
    side_tasks: Sequence[SideTask] = (),
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> LoadRun:
    """Runs one open-loop load test on ``channel`` and returns what every request saw.

    ``stop`` (e.g. set on Ctrl-C) ends sending early; requests in flight are still awaited
    so the report covers everything that was sent.
    """
    offsets = arrival_offsets(config.rate, config.duration, config.arrivals, config.seed)
    kinds, picks = mix.plan(len(offsets), config.seed + 1)
    # No (de)serializers: bytes in, bytes out.
    calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
        channel.unary_unary(k.path) for k in mix.kinds
    ]
    readers = [k.partial_reader for k in mix.kinds]
    pools = [k.requests for k in mix.kinds]
    rec = _Recorder(len(offsets))
    clock = Clock(time.perf_counter() + config.start_delay)
    log = EventLog(clock)
    in_flight: set[asyncio.Task[None]] = set()
    timeout = config.timeout

    async def one(i: int) -> None:
        kind = int(kinds[i])
        rec.sent[i] = clock.now()
        rec.n_sent += 1
        try:
            response = await calls[kind](pools[kind][picks[i]], timeout=timeout)
            reader = readers[kind]
            if reader is not None and reader.FromString(response).partial:  # type: ignore[attr-defined]  # class built at run time
                rec.partial[i] = True
                rec.n_partial += 1
        except grpc.aio.AioRpcError as exc:
            rec.code[i] = rec.code_of(exc.code().name)
            rec.n_errors += 1
        except asyncio.CancelledError:
            rec.code[i] = rec.code_of("CANCELLED_BY_GENERATOR")
            rec.n_errors += 1
            raise
        except Exception as exc:  # noqa: BLE001 - any client-side failure is an outcome to count
            rec.code[i] = rec.code_of(f"CLIENT_{type(exc).__name__}")
            rec.n_errors += 1
        finally:
            done = clock.now()
            rec.done[i] = done
            rec.n_done += 1
            if rec.code[i] == 0:
                rec.live.record(max(done - offsets[i], 0.0))

    async def send_all() -> bool:
        for i, due in enumerate(offsets):
            if due > clock.now():
                await clock.sleep_until(due)
            if stop is not None and stop.is_set():
                return True
            task = asyncio.ensure_future(one(i))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        return False

    async def report_progress() -> None:
        assert progress is not None
        tick = 1.0
        while True:
            await clock.sleep_until(tick)
            p99 = rec.live.percentile(99) if rec.live.count else math.nan
            progress.show(tick, rec.n_sent, rec.n_done, rec.n_errors, rec.n_partial, p99)
            tick += 1.0

    side = [asyncio.ensure_future(task(clock, log)) for task in side_tasks]
    ticker = asyncio.ensure_future(report_progress()) if progress is not None else None
    try:
        interrupted = await send_all()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        # Side tasks may outlast the sends (a restart still in progress): let them finish
        # so the cluster is whole again when the caller moves on.
        for task in side:
            await task
    finally:
        for task in [*in_flight, *side]:
            task.cancel()
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            p99 = rec.live.percentile(99) if rec.live.count else math.nan
            assert progress is not None
            progress.show(
                clock.now(), rec.n_sent, rec.n_done, rec.n_errors, rec.n_partial, p99, final=True
            )
            progress.close()
    return LoadRun(
        config=config,
        kind_names=mix.names,
        code_names=list(rec.code_names),
        kind=kinds,
        scheduled=offsets,
        sent=rec.sent,
        done=rec.done,
        code=rec.code,
        partial=rec.partial,
        events=list(log.events),
        interrupted=interrupted,
    )


def stderr_progress(enabled: bool, label: str = "loadtest") -> Progress | None:
    return Progress(sys.stderr, label) if enabled else None
