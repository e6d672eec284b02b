"""The version status state machine (DESIGN §2).

    building → validating → ready → production → deprecated → archived
        ↘           ↘          ↘____________________↗   ↑ (rollback re-promotes)
         failed      failed                  deprecated → production

`failed` and `archived` (a deprecated version past its rollback retention,
whose data the shards dropped) are terminal. Everything but the status is immutable once a version
has reached `ready`: changing what a version means requires a new version.
"""

from __future__ import annotations

from core.errors import FailedPrecondition
from registry.model import Status

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.BUILDING: frozenset({Status.VALIDATING, Status.FAILED}),
    Status.VALIDATING: frozenset({Status.READY, Status.FAILED}),
    Status.READY: frozenset({Status.PRODUCTION, Status.DEPRECATED}),
    Status.PRODUCTION: frozenset({Status.DEPRECATED}),
    Status.DEPRECATED: frozenset({Status.PRODUCTION, Status.ARCHIVED}),
    Status.FAILED: frozenset(),
    Status.ARCHIVED: frozenset(),
}

# Statuses after which a version's content may no longer change.
FROZEN = frozenset({Status.READY, Status.PRODUCTION, Status.DEPRECATED, Status.ARCHIVED})


def check_transition(what: str, current: Status, target: Status) -> None:
    if target == current:
        return
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none (terminal)"
        raise FailedPrecondition(
            f"{what}: cannot move from {current.value} to {target.value}; allowed from "
            f"{current.value}: {allowed}"
        )
