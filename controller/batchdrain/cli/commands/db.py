"""Schema and version commands: ``db upgrade``, ``version``."""

from __future__ import annotations

import typer
from rich.markup import escape

from batchdrain import __version__
from batchdrain.cli.flags import DB_FIELDS, with_settings
from batchdrain.cli.render import out
from batchdrain.cli.wiring import open_db
from batchdrain.settings import Settings

# ``version`` sits at the top level; ``db_app`` is the ``db`` group.
app = typer.Typer()
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")


@db_app.command("upgrade")
@with_settings(DB_FIELDS)
def db_upgrade(settings: Settings) -> None:
    """Create or migrate the schema to the current revision."""
    db = open_db(settings, migrate=False)
    revision = db.upgrade()
    out.print(f"database {escape(db.masked_url())} at revision {revision}")


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)
