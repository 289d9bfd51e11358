"""Taking over what dead sessions left: their open attempts, and their session rows.

``adoption`` decides (pure); this applies the decisions to the database: each
attempt to adopt has its phase's lease moved to this session, and a dead session whose
open attempts are all adopted has its row closed. A controller that died, or lost a
full or vanished database before it could write its own end, leaves its row
``running``: without this it would say so for ever.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from batchdrain.db import Database
from batchdrain.domain import utcnow
from batchdrain.drain.adoption import Adoption, decide

Gone = Callable[[Mapping[str, Any]], "str | None"]


@dataclass(frozen=True)
class Orphans:
    taken: list[Adoption] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # one line per phase that waits for a live session
    closed: list[str] = field(default_factory=list)  # one line per dead session's row closed


def take_orphans(db: Database, *, session_id: str, lease_seconds: float, gone: Gone) -> Orphans:
    """Adopt what dead sessions left open (lease expired or holder gone), then close their rows."""
    decided = decide(db.open_attempts_elsewhere(session_id=session_id), now=utcnow(),
                     lease_seconds=lease_seconds, gone=gone)
    taken = [adoption for adoption in decided.adopt
             if db.take_over(adoption.orphan.attempt.attempt_pk, session_id=session_id,
                             lease_seconds=lease_seconds, holder_gone=adoption.holder_gone)]
    return Orphans(taken, [w.line() for w in decided.waiting],
                   close_abandoned(db, session_id=session_id, lease_seconds=lease_seconds, gone=gone))


def close_abandoned(db: Database, *, session_id: str, lease_seconds: float, gone: Gone) -> list[str]:
    """Close the rows of sessions still ``running`` whose controller is dead; one line each.

    Dead: no heartbeat for a lease, or its holder provably gone. A row is closed only
    once none of its attempts is open without an adopter (``Database.close_abandoned``).
    """
    cutoff = utcnow() - dt.timedelta(seconds=lease_seconds)
    lines = []
    for record in db.sessions(limit=50):
        if record.status != "running" or record.session_id == session_id:
            continue
        if record.heartbeat_at is not None and record.heartbeat_at < cutoff:
            why: str | None = f"no heartbeat since {record.heartbeat_at.isoformat(timespec='seconds')}"
        else:
            why = gone((record.identity or {}).get("controller") or {})
        if why is None:
            continue
        if db.close_abandoned(record.session_id, by=session_id, why=why):
            lines.append(f"closed session {record.session_id}, left running by a controller that is gone ({why})")
    return lines
