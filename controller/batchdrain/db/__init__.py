"""The database seam: the only package that imports SQLAlchemy or Alembic."""

from batchdrain.db.database import Database
from batchdrain.db.engine import DatabaseUnavailable, normalise_url
from batchdrain.db.records import AttemptOpening, AttemptRecord, Claim, NewPhase, OrphanRecord, SessionRecord

__all__ = [
    "AttemptOpening",
    "AttemptRecord",
    "Claim",
    "Database",
    "DatabaseUnavailable",
    "NewPhase",
    "OrphanRecord",
    "SessionRecord",
    "normalise_url",
]
