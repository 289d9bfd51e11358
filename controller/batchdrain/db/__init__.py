"""The database seam: the only package that imports SQLAlchemy or Alembic."""

from batchdrain.db.database import Database
from batchdrain.db.engine import DatabaseFull, DatabaseUnavailable, normalise_url
from batchdrain.db.records import (
    AttemptEnd,
    AttemptOpening,
    AttemptRecord,
    AttemptTally,
    Claim,
    DurationStats,
    ImportCounts,
    NewPhase,
    OrphanRecord,
    PhaseStanding,
    SessionRecord,
)

__all__ = [
    "AttemptEnd",
    "AttemptOpening",
    "AttemptRecord",
    "AttemptTally",
    "Claim",
    "Database",
    "DatabaseFull",
    "DatabaseUnavailable",
    "DurationStats",
    "ImportCounts",
    "NewPhase",
    "OrphanRecord",
    "PhaseStanding",
    "SessionRecord",
    "normalise_url",
]
