"""The schema's revision: Alembic's migrations in ``migrations/`` applied to one engine.

Kept apart from the engine because only these calls import Alembic, and only a few
commands (``db upgrade``, a session's start, ``doctor``) need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text

from batchdrain.db.engine import DatabaseEngine, DatabaseUnavailable

# pg_advisory_lock key of the schema migration (any constant; "batchdra" in ASCII).
MIGRATION_LOCK = 0x6261746368647261


class Schema:
    def __init__(self, engine: DatabaseEngine) -> None:
        self._engine = engine

    def alembic_config(self) -> Any:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        config.attributes["engine"] = self._engine.engine
        return config

    def upgrade(self) -> str:
        """Apply every migration; returns the revision now current.

        On Postgres the migration holds a session-level advisory lock: controllers that
        start at once against an empty database would otherwise each create the tables,
        and all but one fail half-way. The others wait, then find the schema current.
        """
        from alembic import command

        self.refuse_newer(self.current_revision())

        def run() -> None:
            if self._engine.backend != "postgresql":
                command.upgrade(self.alembic_config(), "head")
                return
            with self._engine.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
                conn.commit()  # the lock is the session's: it outlives this transaction
                try:
                    config = self.alembic_config()
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
                finally:
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                    conn.commit()

        # A migration may build an index over a large table, and a controller waits here
        # for another's migration: both longer than the watchdog's bound on a statement.
        with self._engine.watchdog.unwatched():
            self._engine.retrying(run)
        return self.current_revision() or "(none)"

    def known_revisions(self) -> set[str]:
        from alembic.script import ScriptDirectory

        return {script.revision for script in ScriptDirectory.from_config(self.alembic_config()).walk_revisions()}

    def refuse_newer(self, current: str | None) -> None:
        """A revision this version has no migration for was written by a newer batchdrain:
        neither running on it nor "upgrading" it (alembic cannot even find it) is safe."""
        if current is not None and current not in self.known_revisions():
            raise DatabaseUnavailable(
                f"database {self._engine.masked_url()} is at revision {current}, newer than this "
                f"batchdrain knows (its latest is {self.head_revision()}): use a batchdrain at least "
                "as new as the one that migrated it")

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        def read() -> str | None:
            with self._engine.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()

        return self._engine.retrying(read)

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    def ensure_schema(self, *, auto_upgrade: bool) -> None:
        """Check the schema is current; upgrade it when allowed.

        An empty database is always initialised (nothing can be lost); migrating a
        shared Postgres between revisions is left to an explicit `db upgrade`.
        """
        current = self.current_revision()
        if current == self.head_revision():
            return
        self.refuse_newer(current)
        if auto_upgrade or current is None:
            self.upgrade()
            return
        raise DatabaseUnavailable(
            f"database {self._engine.masked_url()} is at revision {current or 'empty'}, "
            f"expected {self.head_revision()}: run `batchdrain db upgrade`"
        )
