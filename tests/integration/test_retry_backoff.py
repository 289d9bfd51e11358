"""Retry backoff (issue 18.2) on a real SQLite file and a real Postgres.

A failed phase records when it may run again; the candidate query and the claim both
respect it, ``--dry-run`` says "retry after <time>", and ``batchdrain retry`` clears it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from batchdrain.db import AttemptOpening, Database, NewPhase
from batchdrain.db.models import PhaseRow
from batchdrain.domain import Phase, PhaseSpec, PhaseState
from tests.integration.helpers import attempts, cli, phases

FAIL = ["python3", "-c", "import sys; sys.exit(3)"]


def _opening(_phase: Phase, attempt: int) -> AttemptOpening:
    return AttemptOpening(command=("true",), image=None, identity={"attempt": attempt})


def test_a_failed_phase_waits_its_backoff_and_the_dry_run_says_until_when(database_url, workdir, capsys,
                                                                          monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # the reason in one table cell, unwrapped
    common = ["--database-url", database_url]
    code, _, err = cli(capsys, "enqueue", *common, "--run-id", "r", "--phase-id", "flaky", "--", *FAIL)
    assert code == 0, err
    code, _, err = cli(capsys, "drain", *common, "--executor", "local", "--quiet", "--retry-delay-seconds", "90")
    assert code == 0, err
    (first,) = attempts(database_url)
    phase = phases(database_url)[("r", "flaky")]
    assert phase.state is PhaseState.FAILED and first.finished_at is not None
    assert phase.eligible_at == first.finished_at + dt.timedelta(seconds=90)

    # A second session, at once: nothing is due.
    code, _, err = cli(capsys, "drain", *common, "--executor", "local", "--quiet")
    assert code == 0, err
    assert len(attempts(database_url)) == 1
    code, out, _ = cli(capsys, "drain", *common, "--dry-run")
    assert code == 0
    assert "Would run 0 phase(s)" in out
    assert f"retry after {phase.eligible_at:%Y-%m-%d %H:%M:%S}Z" in out and "backoff after 1 failed" in out

    db = Database(database_url)
    try:
        due = dict(run_ids=[], limit=10, max_attempts=3, skip_runs_with_queued=True, include_parked=False)
        assert db.candidates(**due, now=phase.eligible_at - dt.timedelta(seconds=1)) == []
        assert [p.key for p in db.candidates(**due, now=phase.eligible_at)] == [("r", "flaky")]
    finally:
        db.dispose()

    code, _, err = cli(capsys, "retry", *common, "--include-failed")
    assert code == 0, err
    requeued = phases(database_url)[("r", "flaky")]
    assert requeued.state is PhaseState.QUEUED and requeued.eligible_at is None


def test_the_second_failure_waits_twice_as_long(database_url, workdir, capsys):
    common = ["--database-url", database_url]
    assert cli(capsys, "enqueue", *common, "--run-id", "r", "--phase-id", "p", "--", *FAIL)[0] == 0
    assert cli(capsys, "drain", *common, "--executor", "local", "--quiet", "--retry-delay-seconds", "0")[0] == 0
    assert phases(database_url)[("r", "p")].eligible_at is None  # no delay: due at once
    code, _, err = cli(capsys, "drain", *common, "--executor", "local", "--quiet", "--retry-delay-seconds", "10",
                       "--retry-backoff-factor", "3")
    assert code == 0, err
    second = max(attempts(database_url), key=lambda a: a.attempt)
    assert second.attempt == 2 and second.finished_at is not None
    assert phases(database_url)[("r", "p")].eligible_at == second.finished_at + dt.timedelta(seconds=30)


def test_a_claim_from_a_stale_plan_respects_a_backoff_set_since(database_url):
    """Another controller ran the phase and it failed again after this plan was read."""
    db = Database(database_url)
    try:
        db.upgrade()
        db.enqueue([NewPhase("r", "p", PhaseSpec(command=("true",)))])
        with db.engine.begin() as conn:
            conn.execute(update(PhaseRow).values(state=PhaseState.FAILED.value, attempts=1))
        (planned,) = db.candidates(run_ids=[], limit=10, max_attempts=3, skip_runs_with_queued=True,
                                   include_parked=False)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
        with db.engine.begin() as conn:
            conn.execute(update(PhaseRow).values(eligible_at=later))
        session = db.create_session(executor="local", settings={}, identity={})
        claims = db.claim_some([planned], want=1, session_id=session, lease_seconds=60, executor="local",
                               opening=_opening)
        assert claims == []
        with db.engine.begin() as conn:
            conn.execute(update(PhaseRow).values(eligible_at=None))
        (claim,) = db.claim_some([planned], want=1, session_id=session, lease_seconds=60, executor="local",
                                 opening=_opening)
        assert claim.attempt == 2
    finally:
        db.dispose()
