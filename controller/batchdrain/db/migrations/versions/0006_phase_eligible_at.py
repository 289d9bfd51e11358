"""phases: eligible_at, when a failed phase may be retried (retry backoff)

A failed phase waits ``retry_delay * factor^(attempts-1)`` (capped) before it is a
candidate again: the attempt's end writes the time here, and the candidate and claim
queries compare it with the clock. NULL (every row before this revision, and rows other
applications insert) means "eligible now". No index: only FAILED and parked rows carry
a time, and the retry query already walks those by ``ix_phases_state_id``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("phases", sa.Column("eligible_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("phases") as batch:
        batch.drop_column("eligible_at")
