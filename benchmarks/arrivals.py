"""When an open-loop load generator sends each request.

A closed-loop client (send, wait for the answer, send the next) slows down whenever the
server does, so the requests that *would* have arrived during a stall are never sent and
never measured: coordinated omission, which hides exactly the tail latency a load test is
for. An open-loop generator fixes every send time in advance from the arrival process
alone; a slow server then shows up as queueing in the latency measured from the scheduled
time, not as a quietly lower request rate.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray

Arrivals = Literal["poisson", "uniform"]
ARRIVALS: tuple[str, ...] = get_args(Arrivals)


def arrival_offsets(
    rate: float, duration: float, process: Arrivals = "poisson", seed: int = 0
) -> NDArray[np.float64]:
    """Scheduled send times in seconds from the start: sorted, all in ``[0, duration)``.

    ``uniform`` sends every ``1/rate`` seconds (the easiest schedule to check a generator
    against); ``poisson`` draws exponential gaps with mean ``1/rate`` (independent users,
    bursts included), seeded so two runs offer the same load.
    """
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate}")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a positive number of seconds, got {duration}")
    if process == "uniform":
        count = math.ceil(rate * duration - 1e-9)
        return np.arange(count, dtype=np.float64) / rate
    if process == "poisson":
        return _poisson(rate, duration, np.random.default_rng(seed))
    raise ValueError(f"unknown arrival process {process!r}; expected one of {ARRIVALS}")


def _poisson(rate: float, duration: float, rng: np.random.Generator) -> NDArray[np.float64]:
    # Draw gaps in chunks a little larger than the expected count, so one pass almost
    # always suffices, without ever truncating the process early.
    chunks: list[NDArray[np.float64]] = []
    start = 0.0
    chunk = int(rate * duration + 6 * math.sqrt(rate * duration) + 16)
    while start < duration:
        times = start + np.cumsum(rng.exponential(1.0 / rate, size=chunk))
        chunks.append(times)
        start = float(times[-1])
    offsets = np.concatenate(chunks)
    # The process starts at 0 with its first gap, like a stream that was already running.
    return offsets[offsets < duration]
