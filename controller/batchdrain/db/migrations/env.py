"""Alembic environment: runs on the engine the ``Database`` seam hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from batchdrain.db.models import Base

config = context.config
given = config.attributes.get("connection")  # one that holds the migration lock (Postgres)
engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url") or "")


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if given is not None:
    with given.begin():
        _migrate(given)
else:
    with engine.begin() as connection:
        _migrate(connection)
