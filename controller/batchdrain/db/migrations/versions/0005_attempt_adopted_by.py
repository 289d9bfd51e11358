"""attempts: adopted_by, the session that took over an attempt another session left open

The adopting session's report counts the attempts it finished for a dead or interrupted
session (they keep the session id they were launched under), and a stopped session's
report can say where each of its open attempts went.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 17:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("adopted_by", sa.String(64), nullable=True))
    op.create_index("ix_attempts_adopted_by", "attempts", ["adopted_by"])


def downgrade() -> None:
    op.drop_index("ix_attempts_adopted_by", table_name="attempts")
    op.drop_column("attempts", "adopted_by")
