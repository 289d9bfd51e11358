"""The database seam: the only package that imports SQLAlchemy or Alembic."""

from batchdrain.db.store import Claim, Database, DatabaseUnavailable, NewPhase, normalise_url

__all__ = ["Claim", "Database", "DatabaseUnavailable", "NewPhase", "normalise_url"]
