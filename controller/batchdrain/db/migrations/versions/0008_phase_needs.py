"""phase_needs: declared dependencies between phases of one run

A row (run_id, phase_id, needs_phase_id) says that phase_id of run_id may run only once
needs_phase_id of the same run is COMPLETE. Written by ``import``/``enqueue`` (which
refuse unknown needs and cycles); other applications may insert rows too, under the
same rules. The primary key serves the per-candidate probe ("has this phase an unmet
need?"); ``ix_phase_needs_run_need`` the reverse lookup (who waits for this phase).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 00:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "phase_needs",
        sa.Column("run_id", sa.String(255), sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("phase_id", sa.String(255), nullable=False),
        sa.Column("needs_phase_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "phase_id", "needs_phase_id", name="pk_phase_needs"),
    )
    op.create_index("ix_phase_needs_run_need", "phase_needs", ["run_id", "needs_phase_id"])


def downgrade() -> None:
    op.drop_index("ix_phase_needs_run_need", table_name="phase_needs")
    op.drop_table("phase_needs")
