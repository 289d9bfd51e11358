"""Drain sessions: their rows, heartbeats and final reports.

A session's heartbeat is what other controllers read to decide that it is dead and
its running attempts may be adopted, so ``heartbeat`` extends the leases of every
phase the session holds in the same transaction as the beat itself.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from batchdrain.db.engine import DatabaseEngine, DatabaseUnavailable, aware
from batchdrain.db.models import AttemptRow, PhaseRow, SessionRow
from batchdrain.db.records import SessionRecord
from batchdrain.domain import BadInput, utcnow


def _session_record(row: SessionRow | Row[Any]) -> SessionRecord:
    return SessionRecord(
        session_id=row.session_id, status=row.status, executor=row.executor,
        started_at=aware(row.started_at), ended_at=aware(row.ended_at), heartbeat_at=aware(row.heartbeat_at),
        settings=row.settings, identity=row.identity, counts=row.counts,
        report=getattr(row, "report", None), error=row.error,
    )


# Every column but ``report``: a listing or an existence check must not read reports,
# which held every attempt row before report/v2 (hundreds of MB for a large session).
_WITHOUT_REPORT = tuple(c for c in SessionRow.__table__.columns if c.name != "report")


class Sessions:
    def __init__(self, engine: DatabaseEngine) -> None:
        self._engine = engine

    def create(self, *, executor: str, settings: dict[str, Any], identity: dict[str, Any]) -> str:
        """Insert a session row; the id gets a random suffix if the second is taken."""
        now = utcnow()
        base = now.strftime("batch-drain-%Y%m%d-%H%M%S")

        def run(session_id: str) -> str:
            with self._engine.tx() as tx:
                tx.add(SessionRow(
                    session_id=session_id, status="running", executor=executor, started_at=now,
                    heartbeat_at=now, settings=settings, identity=identity,
                ))
            return session_id

        candidates = [base] + [f"{base}-{secrets.token_hex(2)}" for _ in range(4)]
        for candidate in candidates:
            try:
                return self._engine.retrying(functools.partial(run, candidate))
            except IntegrityError:
                continue
        raise DatabaseUnavailable("could not allocate a unique session id")

    def set_identity(self, session_id: str, identity: dict[str, Any]) -> None:
        def run() -> None:
            with self._engine.tx() as tx:
                tx.execute(update(SessionRow).where(SessionRow.session_id == session_id)
                           .values(identity=identity))

        self._engine.retrying(run)

    def heartbeat(self, session_id: str, lease_seconds: float) -> None:
        """Prove the session is alive and extend the leases of the phases it holds."""
        now = utcnow()

        beat = update(SessionRow).where(SessionRow.session_id == session_id).values(heartbeat_at=now)
        leases = update(PhaseRow).values(lease_expires_at=now + dt.timedelta(seconds=lease_seconds))

        def run() -> None:
            with self._engine.core() as conn:
                if self._engine.backend == "postgresql":
                    # One statement, one round trip: the beat as a data-modifying CTE whose
                    # RETURNING names the phases to extend (SQLite has no DML in a CTE; its
                    # two statements run in-process, without a round trip each).
                    beaten = beat.returning(SessionRow.session_id).cte("beat")
                    conn.execute(leases.add_cte(beaten)
                                 .where(PhaseRow.lease_owner == select(beaten.c.session_id).scalar_subquery()))
                    return
                conn.execute(beat)
                conn.execute(leases.where(PhaseRow.lease_owner == session_id))

        self._engine.retrying(run)

    def end(self, session_id: str, *, status: str, counts: dict[str, Any],
            report: dict[str, Any] | None, error: str | None = None) -> None:
        def run() -> None:
            with self._engine.tx() as tx:
                tx.execute(update(SessionRow).where(SessionRow.session_id == session_id).values(
                    status=status, ended_at=utcnow(), counts=counts, report=report,
                    error=self._engine.mask(error) if error else None,
                ))

        self._engine.retrying(run)

    def close_abandoned(self, session_id: str, *, by: str, why: str) -> bool:
        """Close a dead session's row left ``running``, once none of its attempts is open un-adopted."""
        now = utcnow()
        unadopted = (select(AttemptRow.id)
                     .where(AttemptRow.session_id == session_id, AttemptRow.status == "running",
                            AttemptRow.adopted_by.is_(None))
                     .exists())
        error = f"the controller stopped without closing this session ({why}); closed by session {by}"

        def run() -> bool:
            with self._engine.core() as conn:
                result = conn.execute(update(SessionRow)
                                      .where(SessionRow.session_id == session_id, SessionRow.status == "running",
                                             ~unadopted)
                                      .values(status="failed", ended_at=now, error=self._engine.mask(error)))
                return bool(result.rowcount == 1)

        return self._engine.retrying(run)

    def recent(self, limit: int = 50) -> list[SessionRecord]:
        """The latest sessions, without their reports."""
        def run() -> list[SessionRecord]:
            with self._engine.core() as conn:
                rows = conn.execute(select(*_WITHOUT_REPORT).order_by(SessionRow.started_at.desc()).limit(limit))
                return [_session_record(r) for r in rows]

        return self._engine.retrying(run)

    def report_value(self, session_id: str, key: str) -> Any:
        """One top-level value of the stored report, extracted by the database (None: absent)."""
        def run() -> Any:
            with self._engine.core() as conn:
                return conn.execute(select(SessionRow.report[key])
                                    .where(SessionRow.session_id == session_id)).scalar()

        return self._engine.retrying(run)

    def get(self, session_id: str, *, report: bool = True) -> SessionRecord:
        """One session; ``report=False`` leaves its stored report unread (``report`` is None)."""
        columns = tuple(SessionRow.__table__.columns) if report else _WITHOUT_REPORT

        def run() -> SessionRecord | None:
            with self._engine.core() as conn:
                row = conn.execute(select(*columns).where(SessionRow.session_id == session_id)).first()
                return _session_record(row) if row else None

        found = self._engine.retrying(run)
        if found is None:
            raise BadInput(f"unknown session {session_id!r} (see `batchdrain sessions list`)")
        return found
