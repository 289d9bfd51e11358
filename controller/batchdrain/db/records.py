"""Values that cross the database seam: what goes in (a new phase) and what comes out.

Plain frozen dataclasses over domain types, never SQLAlchemy rows, so that callers
above the seam (the drain loop, reports, the CLI) read typed fields and cannot reach
back into a session or a lazy load.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchdrain.domain import Phase, PhaseSpec


@dataclass(frozen=True)
class NewPhase:
    """A phase to add to the backlog."""

    run_id: str
    phase_id: str
    spec: PhaseSpec


@dataclass(frozen=True)
class Claim:
    """A phase this session now holds, and the attempt row opened for it."""

    attempt_pk: int
    attempt: int
    phase: Phase
