"""Times on the wire: int64 microseconds since the Unix epoch, from 1970-01-01
through 9999-12-31 (UTC).

Why a range and not any int64: times are compared and subtracted (staleness,
TTL, which of two feature rows is newer), and a value outside it is nearly
always a unit mistake. Nanoseconds sent as microseconds land around the
year 57,900, and a feature row stamped there would win over every later write of
its entity for good (an older row is ignored), silently; `now - t` at an
int64 extreme wraps around in numpy, so online and offline would disagree.
Year 9999 is where Python's datetime and the offline store's date
partitions end, and the difference of two times in range cannot overflow.
Before 1970 nothing a recommender stores happened. Checked wherever a time
comes in (feature rows online and offline, GetFeatures' request time, an
embedding's created_at) and refused with INVALID_ARGUMENT naming it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from core.errors import InvalidArgument

MIN_US = 0
MAX_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z


def now_us() -> int:
    """This machine's clock, in the wire's unit."""
    return time.time_ns() // 1000


EXPECTED = f"microseconds since the Unix epoch in [{MIN_US}, {MAX_US}] (1970 through 9999)"


def _hint(t: int) -> str:
    if t > MAX_US and MIN_US <= t // 1000 <= MAX_US:
        return "; it reads as nanoseconds"
    return ""


def check_time(what: str, t: object, where: str) -> None:
    """Refuses a time that is not an int in the range, naming it (`where`:
    the row)."""
    if isinstance(t, bool) or not isinstance(t, int):
        raise InvalidArgument(f"{where}: {what} {t!r}; expected int64 {EXPECTED}")
    if not MIN_US <= t <= MAX_US:
        raise InvalidArgument(f"{where}: {what} {t}; expected {EXPECTED}{_hint(t)}")


def check_times(what: str, times: np.ndarray, where: Callable[[int], str]) -> None:
    """`check_time` of a column at once, naming the first row out of range
    (`where(row)`)."""
    rows = np.flatnonzero((times < MIN_US) | (times > MAX_US))
    if rows.size:
        row = int(rows[0])
        check_time(what, int(times[row]), where(row))
