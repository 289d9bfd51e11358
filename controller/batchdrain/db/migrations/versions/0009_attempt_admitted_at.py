"""attempts: admitted_at, when Kueue admitted the attempt's Job

A Job created suspended in a Kueue LocalQueue waits for its quota before it runs; the
time between ``created_at`` and ``admitted_at`` is the queue wait, recorded apart from
scheduling (``started_at``) and reported on its own. NULL where no queue managed the Job.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("attempts", "admitted_at")
