"""Retry backoff (issue 18.2), pure: the delays, and what selection makes of them."""

from __future__ import annotations

import datetime as dt

import pytest

from batchdrain.backoff import Backoff
from batchdrain.domain import FailureClass, Phase, PhaseSpec, PhaseState
from batchdrain.selection import PlanTally, SelectionOptions, plan
from batchdrain.settings import Settings

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
SPEC = PhaseSpec(command=("true",))


def test_the_defaults_double_from_a_minute_up_to_an_hour():
    backoff = Backoff.from_settings(Settings())
    delays = [backoff.delay(n, FailureClass.EXIT_CODE) for n in range(1, 10)]
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]


def test_a_transient_class_has_its_own_flat_delay_when_one_is_set():
    backoff = Backoff(delay_seconds=60, factor=2, max_seconds=3600, transient_seconds=15)
    assert backoff.delay(4, FailureClass.EVICTED) == 15
    assert backoff.delay(4, FailureClass.NODE_LOST) == 15
    assert backoff.delay(4, FailureClass.EXIT_CODE) == 480  # not transient: the backoff
    assert Backoff(transient_seconds=None).delay(2, FailureClass.EVICTED) == 120  # unset: the backoff


def test_no_delay_means_eligible_at_once_and_huge_counts_stay_capped():
    assert Backoff(delay_seconds=0).eligible_at(T0, 3, FailureClass.EXIT_CODE) is None
    backoff = Backoff(delay_seconds=1, factor=100, max_seconds=7200)
    assert backoff.delay(10_000, FailureClass.EXIT_CODE) == 7200
    assert backoff.eligible_at(T0, 1, FailureClass.EXIT_CODE) == T0 + dt.timedelta(seconds=1)


def failed(pid: str, *, seq: int, eligible_at: dt.datetime | None, attempts: int = 1) -> Phase:
    return Phase(run_id="r", phase_id=pid, state=PhaseState.FAILED, attempts=attempts, spec=SPEC,
                 created_seq=seq, last_failure_class="exit_code", eligible_at=eligible_at)


@pytest.mark.parametrize("offset, waits", [(-1, False), (0, False), (1, True)])
def test_a_failed_phase_waits_until_its_backoff_is_over(offset, waits):
    phase = failed("p", seq=1, eligible_at=T0 + dt.timedelta(seconds=offset), attempts=2)
    result = plan([phase], SelectionOptions(now=T0))
    if waits:
        assert not result.selected
        (skip,) = result.skipped
        assert skip.reason == "retry after 2026-12-01 12:00:01Z (backoff after 2 failed attempt(s))"
    else:
        assert [s.phase.phase_id for s in result.selected] == ["p"]


def test_without_a_clock_backoff_is_not_looked_at_and_the_tally_agrees_with_plan():
    phases = [failed("late", seq=1, eligible_at=T0 + dt.timedelta(hours=1)), failed("due", seq=2, eligible_at=T0)]
    assert [s.phase.phase_id for s in plan(phases, SelectionOptions()).selected] == ["late", "due"]
    options = SelectionOptions(now=T0)
    tally = PlanTally(options=options, queued_per_run={}, selected=frozenset())
    for p in phases:
        tally.add(p)
    assert (tally.eligible, tally.skipped) == (1, 1)
    assert tally.examples[0].reason.startswith("retry after 2026-12-01 13:00:00Z")
