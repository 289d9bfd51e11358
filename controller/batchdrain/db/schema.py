"""The schema's revision: Alembic's migrations in ``migrations/`` applied to one engine.

Kept apart from the engine because only these calls import Alembic, and only a few
commands (``db upgrade``, a session's start, ``doctor``) need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchdrain.db.engine import DatabaseEngine, DatabaseUnavailable


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
        """Apply every migration; returns the revision now current."""
        from alembic import command

        # A migration may build an index over a large table: longer than the bound
        # the watchdog puts on a drain's statements.
        with self._engine.watchdog.unwatched():
            self._engine.retrying(lambda: command.upgrade(self.alembic_config(), "head"))
        return self.current_revision() or "(none)"

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
        if auto_upgrade or current is None:
            self.upgrade()
            return
        raise DatabaseUnavailable(
            f"database {self._engine.masked_url()} is at revision {current or 'empty'}, "
            f"expected {self.head_revision()}: run `batchdrain db upgrade`"
        )
