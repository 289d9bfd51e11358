"""Declared dependencies (issue 18.4), pure: cycles found, blocking and waiting reasons."""

from __future__ import annotations

import pytest

from batchdrain.dependencies import cycle_line, find_cycle, needs_reason
from batchdrain.domain import BadInput, Need, Phase, PhaseSpec, PhaseState
from batchdrain.importing.schedule import schedule_fields
from batchdrain.selection import PlanTally, SelectionOptions, plan

SPEC = PhaseSpec(command=("true",))


def test_no_cycle_in_a_chain_a_diamond_or_needs_outside_the_import():
    assert find_cycle({"b": ["a"], "c": ["b"], "d": ["b", "c"], "e": ["old-phase"]}) is None


@pytest.mark.parametrize("needs, cycle", [
    ({"a": ["a"]}, ["a", "a"]),
    ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
    ({"x": ["a"], "a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"]),
])
def test_a_cycle_is_named_from_where_it_closes(needs, cycle):
    assert find_cycle(needs) == cycle


def test_a_long_chain_is_checked_without_recursion():
    chain = {f"p{i}": [f"p{i - 1}"] for i in range(1, 50_000)}
    assert find_cycle(chain) is None
    chain["p0"] = ["p49999"]
    found = find_cycle(chain)
    assert found is not None and found[0] == found[-1] and len(found) == 50_001
    line = cycle_line("r", found)
    assert line.startswith("run 'r': dependency cycle 'p0' -> 'p49999' -> 'p49998'") and "..." in line
    assert len(line) < 200


def test_needs_are_a_list_of_ids_kept_once():
    assert schedule_fields({"needs": ["a", "b", "a"]}) == {"needs": ("a", "b")}
    for bad in ("a", [1], [""], ["x" * 256]):
        with pytest.raises(BadInput, match="needs must"):
            schedule_fields({"needs": bad})


def test_a_parked_or_exhausted_need_blocks_and_others_wait():
    parked = Need("extract", PhaseState.SKIPPED, 3, "last 3 attempts failed the same way")
    failed = Need("load", PhaseState.FAILED, 3)
    queued = Need("clean", PhaseState.QUEUED, 0)
    assert needs_reason([queued, parked], max_attempts=3, include_parked=False) == (
        "blocked: needs 'extract', parked: last 3 attempts failed the same way (batchdrain retry, or --include-parked)")
    assert needs_reason([failed], max_attempts=3, include_parked=False).startswith(
        "blocked: needs 'load', failed for good (3 of 3 attempts")
    assert needs_reason([failed, queued], max_attempts=5, include_parked=False) == (
        "waiting for needs 'load' (failed), 'clean' (queued)")
    assert needs_reason([parked], max_attempts=3, include_parked=True) == "waiting for needs 'extract' (skipped)"
    assert needs_reason([], max_attempts=3, include_parked=False) is None


def phase(pid: str, state: PhaseState, *, seq: int, attempts: int = 0, unmet: tuple[Need, ...] = (),
          declares: bool = False) -> Phase:
    return Phase(run_id="r", phase_id=pid, state=state, attempts=attempts, spec=SPEC, created_seq=seq,
                 declares_needs=declares or bool(unmet), unmet_needs=unmet)


def test_a_dependent_waits_and_declared_phases_do_not_hold_back_a_failed_root():
    """The heuristic would deadlock a DAG: the failed root waits for its queued dependents,
    which wait for the root. Queued phases that declare needs hold no one back."""
    root = phase("root", PhaseState.FAILED, seq=1, attempts=1)
    child = phase("child", PhaseState.QUEUED, seq=2, unmet=(Need("root", PhaseState.FAILED, 1),))
    undeclared = phase("other", PhaseState.QUEUED, seq=3)
    result = plan([root, child], SelectionOptions())
    assert [s.phase.phase_id for s in result.selected] == ["root"]
    assert [(s.phase.phase_id, s.reason) for s in result.skipped] == [
        ("child", "waiting for needs 'root' (failed)")]
    # a queued phase that declares nothing still holds the undeclared root back (today's heuristic)
    result = plan([root, child, undeclared], SelectionOptions())
    assert [s.phase.phase_id for s in result.selected] == ["other"]
    assert "queued phase(s); failed phases wait" in dict((s.phase.phase_id, s.reason) for s in result.skipped)["root"]
    # a failed phase that declares needs (all met) is not held back by the heuristic
    declared_root = phase("root", PhaseState.FAILED, seq=1, attempts=1, declares=True)
    result = plan([declared_root, undeclared], SelectionOptions())
    assert [s.phase.phase_id for s in result.selected] == ["other", "root"]


def test_the_tally_gives_the_same_reasons():
    child = phase("child", PhaseState.QUEUED, seq=2, unmet=(Need("root", PhaseState.SKIPPED, 3, "same"),))
    tally = PlanTally(options=SelectionOptions(), queued_per_run={}, selected=frozenset())
    tally.add(child)
    assert tally.examples[0].reason.startswith("blocked: needs 'root', parked: same")
