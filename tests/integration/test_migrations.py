"""Alembic migrations on real databases: every revision applies, data survives."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from batchdrain.db import Database


def test_upgrade_from_first_revision_keeps_data(database_url):
    db = Database(database_url)
    try:
        config = db._alembic_config()
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
