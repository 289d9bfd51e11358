"""The plan offered to claims a window at a time, what a claim settles, and merged progress (pure)."""

from __future__ import annotations

import datetime as dt

from batchdrain.domain import AttemptProgress, Phase, PhaseSpec, PhaseState
from batchdrain.drain.claiming import MAX_WINDOW, WINDOW, LostClaims, PlanCursor
from batchdrain.drain.progress import merged

SPEC = PhaseSpec(command=("true",))


def phase(seq: int, state: PhaseState = PhaseState.QUEUED) -> Phase:
    return Phase(run_id="r", phase_id=f"p{seq}", state=state, attempts=0, spec=SPEC, created_seq=seq)


def seqs(phases: list[Phase]) -> list[int]:
    return [p.created_seq for p in phases]


def test_a_window_is_the_head_of_the_plan_up_to_its_size():
    cursor = PlanCursor([phase(i) for i in range(1, 11)])
    assert seqs(cursor.window(4)) == [1, 2, 3, 4]
    assert seqs(cursor.window(40)) == list(range(1, 11))


def test_a_window_stops_where_the_state_changes_since_a_claim_rechecks_one_state():
    cursor = PlanCursor([phase(1), phase(2), phase(7, PhaseState.FAILED), phase(3)])
    assert seqs(cursor.window()) == [1, 2]
    cursor.settle(cursor.window(), {1, 2}, wanted=2)
    assert seqs(cursor.window()) == [7]
    cursor.settle(cursor.window(), {7}, wanted=1)
    assert seqs(cursor.window()) == [3]


def test_a_full_claim_loses_only_what_it_passed_over_and_keeps_the_rest_at_the_head():
    cursor = PlanCursor([phase(i) for i in range(1, 9)])
    window = cursor.window(6)
    # Two taken by another controller (1, 3); this claim wanted 2 and took 2 and 4.
    lost = cursor.settle(window, {2, 4}, wanted=2)
    assert seqs(lost) == [1, 3]
    assert seqs(cursor.window(10)) == [5, 6, 7, 8]


def test_a_short_claim_means_the_whole_window_was_taken():
    cursor = PlanCursor([phase(i) for i in range(1, 9)])
    window = cursor.window(4)
    lost = cursor.settle(window, {3}, wanted=2)
    assert seqs(lost) == [1, 2, 4]
    assert seqs(cursor.window(10)) == [5, 6, 7, 8]


def test_an_empty_claim_loses_the_window_and_the_cursor_ends_when_all_is_settled():
    cursor = PlanCursor([phase(1), phase(2)])
    lost = cursor.settle(cursor.window(), set(), wanted=1)
    assert seqs(lost) == [1, 2]
    assert not cursor
    assert cursor.window() == []


def test_an_empty_claim_widens_the_next_window_and_a_claim_that_takes_one_narrows_it():
    # A stale plan: its head was taken by other controllers while it was read.
    cursor = PlanCursor([phase(i) for i in range(1, 20 * MAX_WINDOW)])
    sizes = []
    for _ in range(5):
        window = cursor.window()
        sizes.append(len(window))
        cursor.settle(window, set(), wanted=1)
    assert sizes == [WINDOW, WINDOW * 4, WINDOW * 16, MAX_WINDOW, MAX_WINDOW]
    window = cursor.window()
    cursor.settle(window, {window[0].created_seq}, wanted=1)
    assert len(cursor.window()) == WINDOW


def test_the_plan_order_survives_a_window_out_of_id_order():
    # Retries are planned by attempts first, queued phases with runs interleaved: ids need
    # not rise along the plan, and a claim takes the free ones in the window's order, so
    # a claim of one that took 4 passed over 9 (taken by someone else), not 2.
    cursor = PlanCursor([phase(9), phase(4), phase(6), phase(2)])
    lost = cursor.settle(cursor.window(), {4}, wanted=1)
    assert seqs(lost) == [9]
    assert seqs(cursor.window()) == [6, 2]


def test_merged_progress_keeps_earlier_facts_a_later_report_leaves_out():
    started = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    first = AttemptProgress(job_name="job-1", namespace="ns")
    second = AttemptProgress(pod_name="pod-a", pod_uid="uid-a", node="n1", started_at=started)
    third = AttemptProgress(pod_name="pod-b", pod_uid="uid-b")
    assert merged(merged(first, second), third) == AttemptProgress(
        job_name="job-1", namespace="ns", pod_name="pod-b", pod_uid="uid-b", node="n1", started_at=started)
    assert merged(None, first) == first
    assert merged(first, None) == first
    assert merged(None, None) is None


def test_lost_claims_are_all_counted_and_the_first_ones_named():
    lost = LostClaims(named=5)
    for start in range(0, 40, 8):
        lost.add([phase(seq) for seq in range(start + 1, start + 9)])
    assert lost.count == 40
    assert lost.keys == [phase(seq).key for seq in range(1, 6)]
