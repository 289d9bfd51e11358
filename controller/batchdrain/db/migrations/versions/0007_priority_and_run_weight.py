"""phases.priority, runs.weight, and the indexes that read each run's queue from its head

Priorities and fair share (README "Priorities and fair share"): queued phases run by
priority (higher first), the runs of one priority interleaved, ``weight`` phases of a
run per round. The candidate read takes each run's head in (priority desc, id) order
through ``ix_phases_run_state_priority``, which by its prefix also serves what
``ix_phases_run_state`` served (the queued-phase probe per run), so that one goes.
``ix_phases_state_priority`` finds retries above a priority without walking every
FAILED row. Both columns have server defaults: rows other applications insert as
before get priority 0 and weight 1.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:55:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("phases", sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("weight", sa.Integer(), nullable=False, server_default="1"))
    op.create_index("ix_phases_run_state_priority", "phases", ["run_id", "state", sa.text("priority DESC"), "id"])
    op.create_index("ix_phases_state_priority", "phases", ["state", "priority"])
    op.drop_index("ix_phases_run_state", table_name="phases")


def downgrade() -> None:
    op.create_index("ix_phases_run_state", "phases", ["run_id", "state"])
    op.drop_index("ix_phases_state_priority", table_name="phases")
    op.drop_index("ix_phases_run_state_priority", table_name="phases")
    # Plain DROP COLUMN (SQLite >= 3.35): a batch copy of ``runs`` cannot drop the table
    # that ``phases`` references.
    op.drop_column("runs", "weight")
    op.drop_column("phases", "priority")
