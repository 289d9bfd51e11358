"""The attempt as a state machine: its states, the events that move it, and the table.

Pure: no clock, no API, no threads. The supervisor (``supervise.py``) looks at what
the watches delivered, turns it into events with ``events_of`` and applies them with
``transition``; what it does on entering a state (start following logs, classify,
leave the Job for adoption) is its business, the order and the legal moves are here.

::

    WAITING --container_started--> RUNNING
    WAITING|RUNNING --finished-----------> ENDED        nothing more will run: classify it
    WAITING --pending_verdict---------> GAVE_UP         never ran: unschedulable, image pull...
    WAITING|RUNNING --deadline-----------> GAVE_UP      past activeDeadlineSeconds + margin
    WAITING|RUNNING --stop_expired-------> INTERRUPTED  SIGTERM grace over: Job left for adoption
    WAITING|RUNNING --watch_lost---------> LOST         API lost: Job left for adoption

Terminal states ignore every event. An event a state has no row for is ignored too
(``container_started`` seen again while RUNNING), never an error: watches repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AttemptState(StrEnum):
    WAITING = "waiting"  # the Job exists; its container has not started
    RUNNING = "running"  # the container started: its logs are followed
    ENDED = "ended"  # the container ended, the pod or the Job is gone: classify
    GAVE_UP = "gave_up"  # decided without an end: never started, or past the deadline
    INTERRUPTED = "interrupted"  # the controller's grace ran out: left for adoption
    LOST = "lost"  # the watches failed past their budget: left for adoption


class AttemptEvent(StrEnum):
    CONTAINER_STARTED = "container_started"
    FINISHED = "finished"
    PENDING_VERDICT = "pending_verdict"
    DEADLINE = "deadline"
    STOP_EXPIRED = "stop_expired"
    WATCH_LOST = "watch_lost"


S, E = AttemptState, AttemptEvent

TRANSITIONS: dict[tuple[AttemptState, AttemptEvent], AttemptState] = {
    (S.WAITING, E.CONTAINER_STARTED): S.RUNNING,
    (S.WAITING, E.FINISHED): S.ENDED,
    (S.WAITING, E.PENDING_VERDICT): S.GAVE_UP,
    (S.WAITING, E.DEADLINE): S.GAVE_UP,
    (S.WAITING, E.STOP_EXPIRED): S.INTERRUPTED,
    (S.WAITING, E.WATCH_LOST): S.LOST,
    (S.RUNNING, E.FINISHED): S.ENDED,
    (S.RUNNING, E.DEADLINE): S.GAVE_UP,
    (S.RUNNING, E.STOP_EXPIRED): S.INTERRUPTED,
    (S.RUNNING, E.WATCH_LOST): S.LOST,
}

TERMINAL = frozenset({S.ENDED, S.GAVE_UP, S.INTERRUPTED, S.LOST})
# The Job may go on running without us: the attempt stays open for the next session.
LEFT_FOR_ADOPTION = frozenset({S.INTERRUPTED, S.LOST})


def transition(state: AttemptState, event: AttemptEvent) -> AttemptState:
    if state in TERMINAL:
        return state
    return TRANSITIONS.get((state, event), state)


@dataclass(frozen=True)
class Observation:
    """What one look at the attempt's tracker and clocks found (all already decided)."""

    container_started: bool = False
    watch_lost: bool = False
    finished: bool = False
    pending_verdict: bool = False
    stop_expired: bool = False
    deadline_passed: bool = False


# Which end wins when one look finds several: the API lost first (the rest may be stale),
# then a real end, then an early verdict, then our own stop, then the deadline.
_ENDINGS: tuple[tuple[str, AttemptEvent], ...] = (
    ("watch_lost", E.WATCH_LOST),
    ("finished", E.FINISHED),
    ("pending_verdict", E.PENDING_VERDICT),
    ("stop_expired", E.STOP_EXPIRED),
    ("deadline_passed", E.DEADLINE),
)


def events_of(seen: Observation) -> list[AttemptEvent]:
    """The events of one look, in the order they apply (a start before its end)."""
    events = [E.CONTAINER_STARTED] if seen.container_started else []
    for name, event in _ENDINGS:
        if getattr(seen, name):
            events.append(event)
            break
    return events
