"""Priorities and fair share (issue 18.3) on a real SQLite file and a real Postgres.

The candidate read produces, run by run from each run's head, exactly the order the pure
``fairshare.fair_order`` gives over the whole backlog; claims take a window's phases in
that order; a drain interleaves a small run with a large one queued before it; import
and enqueue carry ``priority`` and ``run_weight``.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update

from batchdrain.db import AttemptOpening, Database, NewPhase
from batchdrain.db.models import PhaseRow
from batchdrain.domain import Phase, PhaseSpec, PhaseState
from batchdrain.fairshare import fair_order
from tests.integration.helpers import attempts, cli, phases

SPEC = PhaseSpec(command=("true",))


def _opening(_phase: Phase, attempt: int) -> AttemptOpening:
    return AttemptOpening(command=("true",), image=None, identity={"attempt": attempt})


def _random_backlog(db: Database, rng: random.Random, size: int) -> None:
    runs = [f"run {i}" for i in range(7)]
    weights = {run: rng.choice([1, 1, 2, 5]) for run in runs}
    rows = [NewPhase(run, f"p{i}", SPEC, priority=rng.choice([0, 0, 0, 1, 9]), run_weight=weights[run])
            for i, run in enumerate(rng.choice(runs) for _ in range(size))]
    db.enqueue(rows)
    with db.engine.begin() as conn:  # some phases already ran: they are not queued candidates
        ids = rng.sample(range(1, size + 1), size // 5)
        conn.execute(update(PhaseRow).where(PhaseRow.id.in_(ids[: len(ids) // 2]))
                     .values(state=PhaseState.COMPLETE.value, attempts=1))
        conn.execute(update(PhaseRow).where(PhaseRow.id.in_(ids[len(ids) // 2:]))
                     .values(state=PhaseState.FAILED.value, attempts=3))  # out of attempts


@pytest.mark.parametrize("seed", [1, 2])
def test_the_candidate_read_gives_the_pure_fair_order_page_by_page(database_url, seed):
    db = Database(database_url)
    try:
        db.upgrade()
        _random_backlog(db, random.Random(seed), 600)
        everything = [p for p in db.phases() if p.state is PhaseState.QUEUED]
        weights = {p.run_id: p.weight for p in db.candidates(run_ids=[], limit=10_000, max_attempts=3,
                                                               skip_runs_with_queued=True, include_parked=False)}
        whole = [p.key for p in fair_order(everything, lambda run: weights[run])]
        assert len(whole) == len(everything) > 400
        for limit in (1, 7, 64, 333, 10_000):
            page = db.candidates(run_ids=[], limit=limit, max_attempts=3, skip_runs_with_queued=True,
                                 include_parked=False)
            assert [p.key for p in page] == whole[:limit], limit
        two = ["run 1", "run 4"]
        page = db.candidates(run_ids=two, limit=50, max_attempts=3, skip_runs_with_queued=True,
                             include_parked=False)
        assert [p.key for p in page] == [k for k in whole if k[0] in two][:50]
    finally:
        db.dispose()


def test_a_claim_takes_the_free_phases_of_its_window_in_the_windows_order(database_url):
    db = Database(database_url)
    try:
        db.upgrade()
        db.enqueue([NewPhase("big", f"b{i}", SPEC) for i in range(5)] + [NewPhase("small", "s0", SPEC)])
        page = db.candidates(run_ids=[], limit=10, max_attempts=3, skip_runs_with_queued=True, include_parked=False)
        assert [p.phase_id for p in page] == ["b0", "s0", "b1", "b2", "b3", "b4"]
        session = db.create_session(executor="local", settings={}, identity={})
        claims = db.claim_some(page[1:], want=2, session_id=session, lease_seconds=60, executor="local",
                               opening=_opening)
        assert [c.phase.phase_id for c in claims] == ["s0", "b1"]  # not b1, b2 by id
    finally:
        db.dispose()


def test_a_drain_runs_a_small_run_beside_a_large_one_queued_before_it(database_url, workdir: Path, capsys):
    rows = [{"run_id": "large", "phase_id": f"l{i}", "command": ["true"]} for i in range(12)]
    rows += [{"run_id": "small", "phase_id": f"s{i}", "command": ["true"], "run_weight": 2} for i in range(3)]
    rows += [{"run_id": "urgent", "phase_id": "u0", "command": ["true"], "priority": "7"}]
    backlog = workdir / "backlog.yaml"
    backlog.write_text(yaml.safe_dump(rows), encoding="utf-8")
    common = ["--database-url", database_url]
    assert cli(capsys, "import", str(backlog), *common)[0] == 0
    code, _, err = cli(capsys, "drain", *common, "--executor", "local", "--quiet", "--parallelism", "1")
    assert code == 0, err
    order = [a.phase_id for a in sorted(attempts(database_url), key=lambda a: a.attempt_pk)]
    assert order[:7] == ["u0", "l0", "s0", "s1", "l1", "s2", "l2"]
    assert all(p.state is PhaseState.COMPLETE for p in phases(database_url).values())


def test_enqueue_and_import_refuse_bad_scheduling_fields(database_url, workdir: Path, capsys):
    common = ["--database-url", database_url]
    code, _, err = cli(capsys, "enqueue", *common, "--run-id", "r", "--phase-id", "p", "--priority", "4",
                       "--run-weight", "3", "--", "true")
    assert code == 0, err
    (phase,) = phases(database_url).values()
    assert phase.priority == 4
    bad = {"priority: yes": "priority must be a whole number", "run_weight: 0": "run_weight must be between 1",
           "priority: 1.5": "priority must be a whole number"}
    for field, words in bad.items():
        path = workdir / "bad.yaml"
        path.write_text(f"- {{run_id: r2, phase_id: p, command: ['true'], {field}}}\n", encoding="utf-8")
        code, _, err = cli(capsys, "import", str(path), *common)
        assert code == 2 and words in err and "row 1" in err, err
    path = workdir / "clash.yaml"
    path.write_text("- {run_id: r3, phase_id: a, command: ['true'], run_weight: 2}\n"
                    "- {run_id: r3, phase_id: b, command: ['true'], run_weight: 5}\n", encoding="utf-8")
    code, _, err = cli(capsys, "import", str(path), *common)
    assert code == 2 and "row 2: run_weight 5 of run 'r3' differs from 2 on row 1" in err, err
    assert set(phases(database_url)) == {("r", "p")}  # nothing written
