"""attempts: index (session_id, run_id, phase_id) instead of (session_id)

A session pages through a large backlog, excluding the phases it already attempted
with a NOT EXISTS probe per candidate. On (session_id) alone SQLite scanned every
attempt of the session per candidate: at 30,000 attempts, planning 1,000 candidates
took 52 s (the 100,000-phase drain benchmark stalled there). The wider index serves
that probe and, by its prefix, every query by session.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 15:25:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_attempts_session_phase", "attempts", ["session_id", "run_id", "phase_id"])
    op.drop_index("ix_attempts_session", table_name="attempts")


def downgrade() -> None:
    op.create_index("ix_attempts_session", "attempts", ["session_id"])
    op.drop_index("ix_attempts_session_phase", table_name="attempts")
