"""Claims: a phase moves to EXECUTING only here, with its attempt row opened in the same transaction.

Claiming is the safety core: ``claim_some`` locks the rows (``FOR UPDATE SKIP LOCKED``
on Postgres), re-checks their state and lease in the UPDATE itself, bumps the attempt
counters and inserts the attempt rows in the same transaction. Two controllers can
therefore never hold one phase, and an attempt row always exists before anything is
launched.

A claim is offered a window of the plan and takes the first ``want`` phases of it (in
the plan's order) that are still free, skipping those another controller holds or is claiming right now: with
several controllers planning the same head of the queue, a claim call comes back empty
only when the whole window is taken.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Update,
    any_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql

from batchdrain.db.backlog import phase_from_row
from batchdrain.db.engine import DatabaseEngine
from batchdrain.db.models import AttemptRow, PhaseRow
from batchdrain.db.records import AttemptOpening, Claim
from batchdrain.domain import Phase, PhaseState, utcnow

# The statements every claim runs, built once: building a statement (coercing each
# value, computing its cache key) cost more CPU than running it on SQLite.
_PHASE_COLUMNS = (PhaseRow.id, PhaseRow.run_id, PhaseRow.phase_id, PhaseRow.state, PhaseRow.attempts,
                  PhaseRow.spec, PhaseRow.retry_base, PhaseRow.last_failure_class,
                  PhaseRow.last_failure_reason, PhaseRow.parked_reason, PhaseRow.lease_owner, PhaseRow.eligible_at,
                  PhaseRow.priority)
_MY_RUNNING_ATTEMPTS = select(AttemptRow.id, AttemptRow.attempt, AttemptRow.run_id, AttemptRow.phase_id).where(
    AttemptRow.session_id == bindparam("session_id"), AttemptRow.run_id.in_(bindparam("run_ids", expanding=True)),
    AttemptRow.phase_id.in_(bindparam("phase_ids", expanding=True)), AttemptRow.status == "running")
_LEASE_FREE = or_(PhaseRow.lease_owner.is_(None), PhaseRow.lease_expires_at < bindparam("now"))
# A plan read a while ago may offer a phase that failed again since (another controller
# ran it): its new retry backoff must hold, so the claim re-checks it.
_RETRY_DUE = or_(PhaseRow.eligible_at.is_(None), PhaseRow.eligible_at <= bindparam("now"))
# The rows are locked in a CTE, evaluated once (MATERIALIZED: a locking subquery the
# planner re-ran would lock more rows), so that rows another controller is claiming
# right now are skipped, not waited for; the UPDATE re-checks state and lease on the
# rows it locked. SQLite renders neither the lock nor the hint: its single writer
# (BEGIN IMMEDIATE) already serialises claims.


def _claim_phases(ids: ColumnElement[bool], position: ColumnElement[Any]) -> Update:
    picked = (
        select(PhaseRow.id)
        .where(ids, PhaseRow.state == bindparam("from_state"), _LEASE_FREE, _RETRY_DUE)
        .order_by(position).limit(bindparam("want"))
        .with_for_update(skip_locked=True)
        .cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        update(PhaseRow)
        .add_cte(picked)
        .where(PhaseRow.id.in_(select(picked.c.id)), PhaseRow.state == bindparam("from_state"), _LEASE_FREE,
               _RETRY_DUE)
        .values(state=PhaseState.EXECUTING.value, attempts=PhaseRow.attempts + 1,
                lease_owner=bindparam("session_id"), updated_at=bindparam("now"),
                lease_expires_at=bindparam("lease_expires_at"))
        .returning(*_PHASE_COLUMNS)
    )


# The window's ids: one array parameter on Postgres (an IN list of 64 parameters made
# each claim several times dearer there), an expanded IN list on SQLite. The free ones
# are taken in the window's order, which is the plan's (priority, runs interleaved):
# in id order, a window holding the head of a large run and a small run's phases would
# take the large run's first, every time.
_PG_IDS = bindparam("ids", type_=postgresql.ARRAY(BigInteger))
_SQLITE_POSITION = (select(literal_column("key")).select_from(func.json_each(bindparam("ids_json")))
                    .where(literal_column("value") == PhaseRow.id).scalar_subquery())
_CLAIM_PHASES = {
    "postgresql": _claim_phases(PhaseRow.id == any_(_PG_IDS), func.array_position(_PG_IDS, PhaseRow.id)),
    "sqlite": _claim_phases(PhaseRow.id.in_(bindparam("ids", expanding=True)), _SQLITE_POSITION),
}
_OPEN_ATTEMPTS = insert(AttemptRow).returning(AttemptRow.id, sort_by_parameter_order=True)
_DROP_UNSTARTED_ATTEMPT = delete(AttemptRow).where(AttemptRow.id == bindparam("attempt_pk"),
                                                   AttemptRow.status == "running")
_UNCLAIM_PHASE = (update(PhaseRow)
                  .where(PhaseRow.run_id == bindparam("key_run_id"), PhaseRow.phase_id == bindparam("key_phase_id"),
                         PhaseRow.state == PhaseState.EXECUTING.value, PhaseRow.lease_owner == bindparam("session_id"))
                  .values(state=bindparam("to_state"), attempts=PhaseRow.attempts - 1, lease_owner=None,
                          lease_expires_at=None, updated_at=bindparam("now")))


def _my_running_attempts(conn: Connection, window: Sequence[Phase], session_id: str) -> list[Claim]:
    planned = {p.key: p for p in window}
    rows = conn.execute(_MY_RUNNING_ATTEMPTS, {
        "session_id": session_id, "run_ids": sorted({p.run_id for p in window}),
        "phase_ids": sorted({p.phase_id for p in window})}).all()
    mine = [Claim(r.id, r.attempt, planned[(r.run_id, r.phase_id)]) for r in rows if (r.run_id, r.phase_id) in planned]
    position = {p.key: index for index, p in enumerate(window)}
    return sorted(mine, key=lambda c: position[c.phase.key])


class Claims:
    def __init__(self, engine: DatabaseEngine) -> None:
        self._engine = engine

    def claim(self, phase: Phase, *, session_id: str, lease_seconds: float, executor: str,
              command: list[str], image: str | None, identity: dict[str, Any]) -> Claim | None:
        """Take one phase for this session and open its attempt row; None if someone else has it."""
        def opening(_phase: Phase, attempt: int) -> AttemptOpening:
            return AttemptOpening(command=tuple(command), image=image, identity={**identity, "attempt": attempt})

        claims = self.claim_some([phase], want=1, session_id=session_id, lease_seconds=lease_seconds,
                                 executor=executor, opening=opening)
        return claims[0] if claims else None

    def claim_some(self, window: Sequence[Phase], *, want: int, session_id: str, lease_seconds: float,
                   executor: str, opening: Callable[[Phase, int], AttemptOpening]) -> list[Claim]:
        """Take up to ``want`` phases of ``window`` that are still free, in window order; one transaction.

        ``window`` holds phases of one state, as planned; a phase that left that state or
        is held (or being claimed) by another controller is skipped. ``opening`` tells,
        for a phase and its new attempt number, what its attempt row records.
        """
        if want < 1 or not window:
            return []
        states = {p.state for p in window}
        if len(states) != 1:
            raise ValueError(f"a claim window holds phases of one state, not {sorted(states)}")
        planned = {p.created_seq: p for p in window}
        position = {seq: index for index, seq in enumerate(planned)}
        now = utcnow()
        params = {"ids": list(planned), "ids_json": json.dumps(list(planned)), "from_state": states.pop().value,
                  "want": want, "session_id": session_id, "now": now,
                  "lease_expires_at": now + dt.timedelta(seconds=lease_seconds)}
        tries = 0

        def run() -> list[Claim]:
            nonlocal tries
            tries += 1
            with self._engine.core() as conn:
                if tries > 1:
                    # The connection may have died after our commit but before its reply
                    # (database restart): then the claims are ours already. A session claims
                    # a phase at most once, so its running attempts of the window are those claims.
                    mine = _my_running_attempts(conn, window, session_id)
                    if mine:
                        return mine
                rows = sorted(conn.execute(_CLAIM_PHASES[self._engine.backend], params).all(),
                              key=lambda r: position[r.id])
                if not rows:
                    return []
                openings = [opening(planned[r.id], r.attempts) for r in rows]
                opened = [{
                    "session_id": session_id, "run_id": r.run_id, "phase_id": r.phase_id, "attempt": r.attempts,
                    "status": "running", "executor": executor, "command": list(o.command), "image": o.image,
                    "created_at": now, "identity": dict(o.identity),
                } for r, o in zip(rows, openings, strict=True)]
                # One row as a plain INSERT: the batched form (insertmanyvalues) cost twice its time on Postgres.
                attempt_ids = conn.execute(_OPEN_ATTEMPTS, opened[0] if len(opened) == 1 else opened).scalars().all()
                return [Claim(pk, r.attempts, phase_from_row(r)) for pk, r in zip(attempt_ids, rows, strict=True)]

        return self._engine.retrying(run)

    def release(self, claim: Claim, *, session_id: str, to_state: PhaseState) -> None:
        """Undo a claim whose attempt was never launched: its row goes, the phase is as it was."""
        def run() -> None:
            with self._engine.core() as conn:
                conn.execute(_DROP_UNSTARTED_ATTEMPT, {"attempt_pk": claim.attempt_pk})
                conn.execute(_UNCLAIM_PHASE, {
                    "key_run_id": claim.phase.run_id, "key_phase_id": claim.phase.phase_id,
                    "session_id": session_id, "to_state": to_state.value, "now": utcnow()})

        self._engine.retrying(run)
