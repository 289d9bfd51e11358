"""The database seam: the only package that imports SQLAlchemy or Alembic."""

from batchdrain.db.database import Database
from batchdrain.db.engine import DatabaseUnavailable, normalise_url
from batchdrain.db.records import (
    AttemptRecord,
    Claim,
    ImportCounts,
    NewPhase,
    OrphanRecord,
    PhaseStanding,
    SessionRecord,
)

__all__ = [
    "AttemptRecord",
    "Claim",
    "Database",
    "DatabaseUnavailable",
    "ImportCounts",
    "NewPhase",
    "OrphanRecord",
    "PhaseStanding",
    "SessionRecord",
    "normalise_url",
]
