"""The database seam: the only package that imports SQLAlchemy or Alembic."""

from batchdrain.db.database import Database
from batchdrain.db.engine import DatabaseUnavailable, normalise_url
from batchdrain.db.records import Claim, NewPhase

__all__ = ["Claim", "Database", "DatabaseUnavailable", "NewPhase", "normalise_url"]
