"""Selection policy (SPEC section 2), pure."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from batchdrain.domain import BadInput, Phase, PhaseSpec, PhaseState
from batchdrain.selection import MAX_REASONS, OTHER_REASONS, PlanTally, SelectionOptions, check_run_filter, plan

SPEC = PhaseSpec(command=("true",))


def phase(run: str, pid: str, state: PhaseState, *, seq: int, attempts: int = 0, retry_base: int = 0,
          parked: str | None = None) -> Phase:
    return Phase(run_id=run, phase_id=pid, state=state, attempts=attempts, spec=SPEC, created_seq=seq,
                 retry_base=retry_base, parked_reason=parked)


def keys(p):
    return [(s.phase.run_id, s.phase.phase_id) for s in p.selected]


def test_queued_first_then_failed_in_runs_without_queued():
    backlog = [
        phase("a", "f1", PhaseState.FAILED, seq=1, attempts=1),
        phase("b", "q1", PhaseState.QUEUED, seq=2),
        phase("c", "f2", PhaseState.FAILED, seq=3, attempts=1),
        phase("c", "done", PhaseState.COMPLETE, seq=4, attempts=1),
    ]
    result = plan(backlog, SelectionOptions())
    assert keys(result) == [("b", "q1"), ("a", "f1"), ("c", "f2")]


def test_failed_phase_not_retried_while_its_run_has_queued():
    backlog = [
        phase("r", "failed", PhaseState.FAILED, seq=1, attempts=1),
        phase("r", "queued", PhaseState.QUEUED, seq=2),
    ]
    result = plan(backlog, SelectionOptions())
    assert keys(result) == [("r", "queued")]
    (skip,) = [s for s in result.skipped if s.phase.phase_id == "failed"]
    assert "1 queued" in skip.reason and "--no-skip-runs-with-queued" in skip.reason


def test_override_allows_failed_retry_after_queued():
    backlog = [
        phase("r", "failed", PhaseState.FAILED, seq=1, attempts=1),
        phase("r", "queued", PhaseState.QUEUED, seq=2),
    ]
    result = plan(backlog, SelectionOptions(skip_runs_with_queued=False))
    assert keys(result) == [("r", "queued"), ("r", "failed")]


def test_run_filter_batch_size_and_max_attempts():
    backlog = [phase("x", f"q{i}", PhaseState.QUEUED, seq=i) for i in range(5)]
    backlog += [phase("y", "other", PhaseState.QUEUED, seq=10)]
    backlog += [phase("x", "tired", PhaseState.FAILED, seq=11, attempts=3)]
    result = plan(backlog, SelectionOptions(run_ids=("x",), batch_size=2, max_attempts=3))
    assert keys(result) == [("x", "q0"), ("x", "q1")]
    reasons = {s.phase.phase_id: s.reason for s in result.skipped}
    assert reasons["q4"] == "beyond --batch-size 2"
    assert reasons["tired"].startswith("max attempts reached (3 of 3)")
    assert "other" not in reasons  # other runs are out of the filter, not "skipped"


def test_retry_base_restarts_the_attempt_budget():
    retried = phase("x", "p", PhaseState.QUEUED, seq=1, attempts=3, retry_base=3)
    assert keys(plan([retried], SelectionOptions(max_attempts=3))) == [("x", "p")]


def test_parked_phases_wait_unless_included():
    parked = phase("x", "p", PhaseState.SKIPPED, seq=1, attempts=1, parked="same error 3 times")
    assert keys(plan([parked], SelectionOptions())) == []
    assert "same error 3 times" in plan([parked], SelectionOptions()).skipped[0].reason
    assert keys(plan([parked], SelectionOptions(include_parked=True))) == [("x", "p")]


def test_executing_phases_are_never_selected():
    busy = phase("x", "p", PhaseState.EXECUTING, seq=1, attempts=1)
    result = plan([busy], SelectionOptions(skip_runs_with_queued=False))
    assert keys(result) == [] and result.skipped[0].reason.startswith("executing")


def test_plan_is_deterministic_whatever_the_input_order():
    backlog = [phase(f"r{i % 3}", f"p{i}", PhaseState.QUEUED if i % 2 else PhaseState.FAILED,
                     seq=i, attempts=i % 2 == 0) for i in range(30)]
    first = plan(backlog, SelectionOptions(skip_runs_with_queued=False))
    again = plan(list(reversed(backlog)), SelectionOptions(skip_runs_with_queued=False))
    assert keys(first) == keys(again)
    assert [s.phase.key for s in first.skipped] == [s.phase.key for s in again.skipped]


def test_unknown_run_filter_is_bad_input():
    with pytest.raises(BadInput, match="unknown run id 'nope'"):
        check_run_filter(["nope", "known"], {"known"})


# -- the dry run's tally: the same answers as ``plan``, in bounded memory ----------------

def _tally_of(backlog: list[Phase], options: SelectionOptions, *, shown: int = 10_000) -> PlanTally:
    full = plan(backlog, options)
    wanted = [p for p in backlog if not options.run_ids or p.run_id in options.run_ids]
    queued = Counter(p.run_id for p in wanted if p.state is PhaseState.QUEUED)
    tally = PlanTally(options=options, queued_per_run=queued,
                      selected=frozenset(s.phase.key for s in full.selected), shown=shown)
    for item in sorted(backlog, key=lambda p: p.created_seq):
        tally.add(item)
    return tally


def _random_backlog(rng: random.Random, size: int) -> list[Phase]:
    states = list(PhaseState)
    return [phase(f"r{rng.randrange(4)}", f"p{i}", rng.choice(states), seq=i + 1,
                  attempts=rng.randrange(5), retry_base=rng.choice([0, 0, 1]),
                  parked=rng.choice([None, "same failure"]))
            for i in range(size)]


@pytest.mark.parametrize("seed", range(40))
def test_the_tally_says_what_the_full_plan_says(seed):
    rng = random.Random(seed)
    backlog = _random_backlog(rng, rng.randrange(1, 60))
    options = SelectionOptions(
        run_ids=tuple(rng.sample(["r0", "r1", "r2", "r3"], rng.randrange(0, 3))),
        batch_size=rng.choice([None, 1, 3, 10]), max_attempts=rng.choice([1, 3]),
        skip_runs_with_queued=rng.random() < 0.7, include_parked=rng.random() < 0.3)
    full = plan(backlog, options)
    tally = _tally_of(backlog, options)
    assert tally.would_run == len(full.selected)
    expected = [(s.phase.key, s.reason) for s in full.skipped if s.reason != "complete"]
    assert [((s.standing.run_id, s.standing.phase_id), s.reason) for s in tally.shown_skipped()] == expected
    assert tally.skipped == len(expected) == sum(tally.reasons.values())
    assert tally.complete == sum(1 for s in full.skipped if s.reason == "complete")


def test_the_tally_keeps_counts_not_the_backlog():
    failed = [phase("r", f"f{i}", PhaseState.SKIPPED, seq=i + 1, parked=f"reason {i}") for i in range(500)]
    tally = _tally_of(failed, SelectionOptions(), shown=5)
    assert tally.skipped == 500 and len(tally.examples) == 5
    # one reason per phase: the first ones counted apart, the rest together
    assert len(tally.reasons) == MAX_REASONS + 1
    assert tally.reasons[OTHER_REASONS] == 500 - MAX_REASONS
    assert sum(tally.reasons.values()) == 500
