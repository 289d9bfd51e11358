"""The attempt's state machine as a table: every (state, event) pair and its next state."""

from __future__ import annotations

import pytest

from batchdrain.executors.kubernetes.attempt import (
    LEFT_FOR_ADOPTION,
    TERMINAL,
    AttemptEvent,
    AttemptState,
    Observation,
    events_of,
    transition,
)

S, E = AttemptState, AttemptEvent

# Written out in full on purpose: a change to the machine must change this table.
TABLE: dict[AttemptState, dict[AttemptEvent, AttemptState]] = {
    S.WAITING: {
        E.CONTAINER_STARTED: S.RUNNING, E.FINISHED: S.ENDED, E.PENDING_VERDICT: S.GAVE_UP,
        E.DEADLINE: S.GAVE_UP, E.STOP_EXPIRED: S.INTERRUPTED, E.WATCH_LOST: S.LOST,
    },
    S.RUNNING: {
        E.CONTAINER_STARTED: S.RUNNING, E.FINISHED: S.ENDED, E.PENDING_VERDICT: S.RUNNING,
        E.DEADLINE: S.GAVE_UP, E.STOP_EXPIRED: S.INTERRUPTED, E.WATCH_LOST: S.LOST,
    },
    **{end: dict.fromkeys(E, end) for end in (S.ENDED, S.GAVE_UP, S.INTERRUPTED, S.LOST)},
}


@pytest.mark.parametrize(("state", "event", "expected"),
                         [(s, e, nxt) for s, row in TABLE.items() for e, nxt in row.items()])
def test_transition_table(state: AttemptState, event: AttemptEvent, expected: AttemptState) -> None:
    assert transition(state, event) is expected


def test_the_table_covers_every_pair() -> None:
    assert set(TABLE) == set(S) and all(set(row) == set(E) for row in TABLE.values())


def test_terminal_and_left_for_adoption() -> None:
    assert frozenset({S.ENDED, S.GAVE_UP, S.INTERRUPTED, S.LOST}) == TERMINAL
    assert frozenset({S.INTERRUPTED, S.LOST}) == LEFT_FOR_ADOPTION


@pytest.mark.parametrize(("seen", "events"), [
    (Observation(), []),
    (Observation(container_started=True), [E.CONTAINER_STARTED]),
    # a container that started and ended between two looks: logs start before the end
    (Observation(container_started=True, finished=True), [E.CONTAINER_STARTED, E.FINISHED]),
    # the API lost wins over everything the stale view shows
    (Observation(watch_lost=True, finished=True, stop_expired=True), [E.WATCH_LOST]),
    (Observation(finished=True, pending_verdict=True, deadline_passed=True), [E.FINISHED]),
    (Observation(pending_verdict=True, stop_expired=True), [E.PENDING_VERDICT]),
    (Observation(stop_expired=True, deadline_passed=True), [E.STOP_EXPIRED]),
    (Observation(deadline_passed=True), [E.DEADLINE]),
])
def test_events_of_one_look_in_order(seen: Observation, events: list[AttemptEvent]) -> None:
    assert events_of(seen) == events


def run(state: AttemptState, seen: Observation) -> AttemptState:
    """One look's events applied in order, as the supervisor applies them."""
    for event in events_of(seen):
        state = transition(state, event)
    return state


def test_a_fast_container_runs_then_ends_in_one_look() -> None:
    assert run(S.WAITING, Observation(container_started=True, finished=True)) is S.ENDED
    assert run(S.WAITING, Observation(container_started=True, stop_expired=True)) is S.INTERRUPTED
    assert run(S.RUNNING, Observation(container_started=True)) is S.RUNNING
