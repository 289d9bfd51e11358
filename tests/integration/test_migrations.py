"""Alembic migrations on real databases: every revision applies, data survives."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from batchdrain.db import Database
from batchdrain.db.schema import Schema


def test_upgrade_from_first_revision_keeps_data(database_url):
    db = Database(database_url)
    try:
        config = Schema(db._engine).alembic_config()
        command.upgrade(config, "0001")
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO runs (run_id, created_at) VALUES ('r', CURRENT_TIMESTAMP)"))
            conn.execute(text(
                "INSERT INTO phases (run_id, phase_id, state, spec, attempts, retry_base, created_at, updated_at)"
                " VALUES ('r', 'p', 'QUEUED', '{\"command\": [\"true\"]}', 0, 0, CURRENT_TIMESTAMP,"
                " CURRENT_TIMESTAMP)"))
        assert db.current_revision() == "0001"
        assert db.upgrade() == db.head_revision() != "0001"
        (phase,) = db.phases()
        assert (phase.run_id, phase.phase_id, phase.spec.command) == ("r", "p", ("true",))
        command.downgrade(config, "base")
        assert db.current_revision() is None
    finally:
        db.dispose()


def test_a_later_page_probes_the_sessions_attempts_by_index(tmp_path):
    """Excluding the phases a session already attempted must not scan its attempts.

    On an index of session_id alone SQLite walked every attempt of the session for each
    candidate: a 100,000-phase session stalled at 30,000 attempts (52 s for 1,000
    candidates). Migration 0004 gives the probe (session_id, run_id, phase_id).
    """
    from sqlalchemy.dialects import sqlite

    from batchdrain.db.backlog import candidates_query
    from batchdrain.db.models import AttemptRow, PhaseRow

    db = Database(f"sqlite:///{tmp_path}/plan.db")
    try:
        db.upgrade()
        # The statement ``candidates`` runs for a later page, rendered by SQLAlchemy.
        statement = candidates_query(run_id="r", limit=100, max_attempts=3, exclude_session="s")
        sql = str(statement.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
        with db.engine.connect() as conn:
            plan = "\n".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        assert "ix_attempts_session_phase (session_id=? AND run_id=? AND phase_id=?)" in plan, plan
        assert AttemptRow.__tablename__ in sql and PhaseRow.__tablename__ in sql
    finally:
        db.dispose()
