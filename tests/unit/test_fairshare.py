"""Priorities and fair share (issue 18.3), pure: the order, and the settled prefix the database side relies on."""

from __future__ import annotations

import random

import pytest

from batchdrain.domain import Phase, PhaseSpec, PhaseState
from batchdrain.fairshare import fair_order, run_order, settled_prefix
from batchdrain.selection import SelectionOptions, plan

SPEC = PhaseSpec(command=("true",))


def queued(run: str, seq: int, *, priority: int = 0, weight: int = 1, state: PhaseState = PhaseState.QUEUED,
           attempts: int = 0) -> Phase:
    return Phase(run_id=run, phase_id=f"{run}-{seq}", state=state, attempts=attempts, spec=SPEC, created_seq=seq,
                 priority=priority, weight=weight)


def names(phases):
    return [p.phase_id for p in phases]


def test_a_small_run_is_not_held_behind_a_huge_one():
    huge = [queued("huge", seq) for seq in range(1, 50_001)]
    small = [queued("small", seq) for seq in range(50_001, 50_011)]
    order = fair_order(huge + small)
    assert names(order[:4]) == ["huge-1", "small-50001", "huge-2", "small-50002"]
    # every phase of the small run within the first 20, not after the 50,000
    assert max(order.index(p) for p in small) == 19
    assert names(order[20:22]) == ["huge-11", "huge-12"]


def test_a_run_of_weight_two_gets_two_phases_per_round():
    a = [queued("a", seq) for seq in range(1, 7)]
    b = [queued("b", seq) for seq in range(7, 10)]
    order = fair_order(a + b, {"a": 2, "b": 1}.__getitem__)
    assert names(order) == ["a-1", "a-2", "b-7", "a-3", "a-4", "b-8", "a-5", "a-6", "b-9"]


def test_priority_comes_before_turns_and_the_order_does_not_depend_on_input_order():
    backlog = [queued("a", 1), queued("a", 2, priority=5), queued("b", 3), queued("b", 4, priority=5),
               queued("c", 5, priority=-1), queued("a", 6)]
    expected = ["a-2", "b-4", "a-1", "b-3", "a-6", "c-5"]
    rng = random.Random(3)
    for _ in range(20):
        rng.shuffle(backlog)
        assert names(fair_order(backlog)) == expected


@pytest.mark.parametrize("seed", range(25))
def test_the_settled_prefix_of_partial_reads_is_the_head_of_the_whole_order(seed):
    """What the database side relies on: a few phases read per run give the exact head."""
    rng = random.Random(seed)
    runs = [f"r{i}" for i in range(rng.randint(1, 6))]
    weights = {run: rng.choice([1, 1, 2, 3]) for run in runs}
    backlog = [queued(rng.choice(runs), seq, priority=rng.choice([0, 0, 0, 1, 2])) for seq in range(1, 120)]
    whole = fair_order(backlog, weights.__getitem__)
    per_run_all = {run: run_order([p for p in backlog if p.run_id == run]) for run in runs}
    per_run = {run: phases[: rng.randint(0, len(phases))] for run, phases in per_run_all.items()}
    part_read = [run for run in runs if len(per_run[run]) < len(per_run_all[run])]
    settled = settled_prefix(per_run, part_read, weights=weights)
    assert settled == whole[: len(settled)]
    if not part_read:
        assert settled == whole


def test_plan_puts_priority_first_then_queued_before_retries_of_the_same_priority():
    backlog = [
        queued("a", 1),
        queued("b", 2, state=PhaseState.FAILED, attempts=1),
        queued("c", 3, priority=3, state=PhaseState.FAILED, attempts=1),
        queued("d", 4, priority=3),
        queued("e", 5),
    ]
    result = plan(backlog, SelectionOptions(skip_runs_with_queued=False))
    assert [s.phase.phase_id for s in result.selected] == ["d-4", "c-3", "a-1", "e-5", "b-2"]
    assert [s.why for s in result.selected][:2] == ["queued", "retry of failed phase (attempt 2 of 3)"]


def test_plan_interleaves_runs_and_weights_with_the_batch_size_cut_after():
    backlog = [queued("big", seq, weight=1) for seq in range(1, 9)] + [queued("tiny", 9, weight=1)]
    result = plan(backlog, SelectionOptions(batch_size=3))
    assert [s.phase.phase_id for s in result.selected] == ["big-1", "tiny-9", "big-2"]
    assert {s.reason for s in result.skipped} == {"beyond --batch-size 3"}
