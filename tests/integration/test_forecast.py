"""The forecast (issue 18.5) on a real SQLite file and a real Postgres: SQL medians and
per-phase means of succeeded attempts, and the line ``--dry-run`` and ``runs`` print."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, update

from batchdrain.db import Database, NewPhase
from batchdrain.db.models import AttemptRow, PhaseRow
from batchdrain.domain import PhaseSpec, PhaseState
from tests.integration.helpers import cli

SPEC = PhaseSpec(command=("true",))
T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _history(db: Database) -> None:
    """Run "a": p0 ran twice (10 s, 20 s), p1 once (40 s), p2 failed once (1 s); run "b": one phase, 7 s."""
    db.enqueue([NewPhase("a", f"p{i}", SPEC) for i in range(4)] + [NewPhase("b", "q0", SPEC)])
    session = db.create_session(executor="local", settings={}, identity={})
    rows = [("a", "p0", 1, 10.0, "succeeded"), ("a", "p0", 2, 20.0, "succeeded"), ("a", "p1", 1, 40.0, "succeeded"),
            ("a", "p2", 1, 1.0, "exit_code"), ("b", "q0", 1, 7.0, "succeeded")]
    with db.engine.begin() as conn:
        conn.execute(insert(AttemptRow), [
            {"session_id": session, "run_id": r, "phase_id": p, "attempt": n, "status": "finished",
             "executor": "local", "command": ["true"], "created_at": T0, "identity": {}, "total_seconds": s,
             "failure_class": c} for r, p, n, s, c in rows])


def test_medians_and_means_come_from_succeeded_attempts_only(database_url):
    db = Database(database_url)
    try:
        db.upgrade()
        _history(db)
        per_run, overall = db.duration_medians()
        assert per_run == {"a": 20.0, "b": 7.0}  # a: 10, 20, 40 (the failure's 1 s is not counted)
        assert overall == 10.0  # 7, 10, 20, 40: the lower middle by nearest rank
        past = {s.phase_id: s.past_seconds for s in db.standings(with_durations=True)}
        assert past == {"p0": 15.0, "p1": 40.0, "p2": None, "p3": None, "q0": 7.0}
    finally:
        db.dispose()


def test_dry_run_and_runs_print_the_forecast_and_its_basis(database_url, workdir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    db = Database(database_url)
    try:
        db.upgrade()
        _history(db)
        db.enqueue([NewPhase("c", "new", SPEC)])
        with db.engine.begin() as conn:  # q0 already done: not forecast
            conn.execute(update(PhaseRow).where(PhaseRow.phase_id == "q0").values(state=PhaseState.COMPLETE.value))
    finally:
        db.dispose()
    # p0 15 + p1 40 (own), p2 20 + p3 20 (run a's median), new 10 (overall median): 105 s of work
    expected = ("forecast: ~52.5s to drain 5 phase(s) at parallelism 2 (work 1m 45s, longest 40.0s); "
                "estimated 2 by their own past attempts, 2 by their run's median, 1 by the overall median")
    code, out, _ = cli(capsys, "drain", "--database-url", database_url, "--dry-run", "--parallelism", "2")
    assert code == 0 and expected in out, out
    code, out, _ = cli(capsys, "runs", "--database-url", database_url, "--parallelism", "2", "--forecast")
    assert code == 0 and expected in out, out
    code, out, _ = cli(capsys, "runs", "--database-url", database_url)  # a cheap read unless asked
    assert code == 0 and "forecast" not in out
