"""Attempts: recording what an attempt did, and adopting orphans.

Attempts are opened by claims (``claims``); here their progress is written (in
batches, never over an attempt that ended), their end is written with the release of
their phase in one transaction, and dead sessions' open attempts are found and taken over.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from batchdrain.db.backlog import phase_from_row
from batchdrain.db.engine import DatabaseEngine, DatabaseUnavailable, aware
from batchdrain.db.models import AttemptRow, PhaseRow, SessionRow
from batchdrain.db.records import AttemptEnd, AttemptRecord, OrphanRecord
from batchdrain.domain import (
    AttemptProgress,
    AttemptResult,
    FailureClass,
    LogMode,
    LogPointer,
    PhaseState,
    utcnow,
)

# The statements every attempt runs, built once: building a statement (coercing each
# value, computing its cache key) cost more CPU than running it on SQLite. Values are
# bound at execution; an UPDATE without .values() sets the columns named in them.
_UPDATE_ATTEMPT = update(AttemptRow).where(AttemptRow.id == bindparam("attempt_pk"))
# Progress written late (batched) must not overwrite what the attempt's end recorded.
_UPDATE_RUNNING_ATTEMPT = _UPDATE_ATTEMPT.where(AttemptRow.status == "running")
_ATTEMPTS_OF_PHASES = select(AttemptRow.id, AttemptRow.run_id, AttemptRow.phase_id, AttemptRow.raw_status).where(
    AttemptRow.id.in_(bindparam("attempt_pks", expanding=True)))
_RELEASE_PHASE = update(PhaseRow).where(PhaseRow.run_id == bindparam("key_run_id"),
                                        PhaseRow.phase_id == bindparam("key_phase_id"))
_UNCHARGE_PHASE = _RELEASE_PHASE.values(retry_base=PhaseRow.retry_base + 1)


def _pointer_rows(logs: Iterable[LogPointer]) -> list[dict[str, Any]]:
    """Log pointers as stored in ``attempts.logs`` (a documented JSON shape)."""
    return [{"stream": p.stream, "url": p.url, "size_bytes": p.size_bytes, "sha256": p.sha256,
             "incomplete": p.incomplete, "stalled_seconds": p.stalled_seconds} for p in logs]


def _attempt_row(tx: Session, attempt_pk: int) -> AttemptRow:
    row = tx.get(AttemptRow, attempt_pk)
    if row is None:
        raise DatabaseUnavailable(f"attempt {attempt_pk} vanished from the database")
    return row


def _pointer(data: Mapping[str, Any]) -> LogPointer:
    """A stored log pointer read back (the inverse of ``_pointer_rows``)."""
    return LogPointer(stream=data["stream"], url=data["url"], size_bytes=data["size_bytes"], sha256=data["sha256"],
                      incomplete=data.get("incomplete"), stalled_seconds=data.get("stalled_seconds", 0.0))


def _attempt_record(row: AttemptRow | Row[Any]) -> AttemptRecord:
    return AttemptRecord(
        attempt_pk=row.id, session_id=row.session_id, run_id=row.run_id, phase_id=row.phase_id,
        attempt=row.attempt, status=row.status, executor=row.executor, command=tuple(row.command),
        image=row.image, image_digest=row.image_digest, job_name=row.job_name, namespace=row.namespace,
        pod_names=tuple(row.pod_names or ()), pod_uid=row.pod_uid, node=row.node, exit_code=row.exit_code,
        exit_code_reason=row.exit_code_reason, created_at=aware(row.created_at),
        admitted_at=aware(row.admitted_at), started_at=aware(row.started_at), finished_at=aware(row.finished_at),
        container_seconds=row.container_seconds, total_seconds=row.total_seconds,
        failure_class=FailureClass(row.failure_class) if row.failure_class else None,
        message=row.message, first_error_line=row.first_error_line,
        log_mode=LogMode(row.log_mode) if row.log_mode else None,
        logs=tuple(_pointer(p) for p in row.logs or ()), identity=row.identity, raw_status=row.raw_status,
        adopted_by=row.adopted_by,
    )


def _orphan_record(row: AttemptRow, phase: PhaseRow, session: SessionRow) -> OrphanRecord:
    raw = row.raw_status or {}
    return OrphanRecord(attempt=_attempt_record(row), phase=phase_from_row(phase),
                        session_heartbeat_at=aware(session.heartbeat_at), session_identity=session.identity or {},
                        lease_expires_at=aware(phase.lease_expires_at), pid=raw.get("pid"), host=raw.get("host"))


def _progress_fields(progress: AttemptProgress | None) -> dict[str, Any]:
    """The attempt columns a progress report sets; fields it leaves ``None`` are not written."""
    if progress is None:
        return {}
    fields: dict[str, Any] = {
        name: value for name in ("job_name", "namespace", "pod_uid", "node", "started_at", "admitted_at")
        if (value := getattr(progress, name)) is not None
    }
    if progress.pod_name is not None:  # executors report one pod at a time
        fields["pod_names"] = [progress.pod_name]
    if progress.pid is not None or progress.host is not None:
        fields["raw_status"] = {"pid": progress.pid, "host": progress.host}
    return fields


def _finished_values(result: AttemptResult, *, message: str, now: dt.datetime) -> dict[str, Any]:
    """The columns an attempt's end writes, apart from ``raw_status`` (merged in the transaction)."""
    values: dict[str, Any] = {
        "status": "finished", "failure_class": result.failure_class.value, "message": message,
        "exit_code": result.exit_code, "exit_code_reason": result.exit_code_reason,
        "finished_at": result.finished_at or now, "container_seconds": result.container_seconds,
        "total_seconds": result.total_seconds, "first_error_line": result.first_error_line,
        "log_mode": result.log_mode.value, "logs": _pointer_rows(result.logs),
    }
    # What the result does not know (an adopted attempt, a launch that failed early)
    # keeps what the running attempt already recorded.
    for name in ("started_at", "admitted_at", "job_name", "pod_uid", "node", "image", "image_digest"):
        value = getattr(result, name)
        if value is not None:
            values[name] = value
    if result.pod_names:
        values["pod_names"] = list(result.pod_names)
    return values


def _released_values(end: AttemptEnd, message: str, now: dt.datetime) -> dict[str, Any]:
    """The phase's columns once its attempt ended (the lease dropped, the failure noted)."""
    failed = not end.result.succeeded
    return {
        "state": end.phase_state.value, "lease_owner": None, "lease_expires_at": None, "updated_at": now,
        "last_failure_class": end.result.failure_class.value if failed else None,
        "last_failure_reason": message if failed else None, "parked_reason": end.parked_reason,
        "eligible_at": end.eligible_at,
    }


class Attempts:
    def __init__(self, engine: DatabaseEngine) -> None:
        self._engine = engine

    def update(self, attempt_pk: int, progress: AttemptProgress) -> None:
        self.update_many([(attempt_pk, progress)])

    def update_many(self, updates: Sequence[tuple[int, AttemptProgress]]) -> None:
        """Write what executors learnt of running attempts, in one transaction.

        Attempts that ended meanwhile are left alone: their end already holds as much.
        """
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for attempt_pk, progress in updates:
            fields = _progress_fields(progress)
            if fields:
                shapes.setdefault(tuple(sorted(fields)), []).append({**fields, "attempt_pk": attempt_pk})
        if not shapes:
            return

        def run() -> None:
            with self._engine.core() as conn:
                # executemany needs one set of columns per statement: one per shape.
                for rows in shapes.values():
                    conn.execute(_UPDATE_RUNNING_ATTEMPT, rows)

        self._engine.retrying(run)

    def finish_many(self, ends: Sequence[AttemptEnd]) -> None:
        """Close the attempts' rows and release their phases, all in one transaction.

        One transaction for many ends (the drain loop's group commit) pays the BEGIN,
        the COMMIT and each statement's fixed cost once, not once per attempt. Each
        end's unwritten ``progress`` goes in under what its result itself knows. An
        attempt the controller's own failure ended (``result.charged`` false) moves its
        phase's ``retry_base`` on by one: it does not count toward --max-attempts.
        """
        now = utcnow()
        # Rows locked in one order, whoever else writes some of the same phases.
        ends = sorted(ends, key=lambda end: end.attempt_pk)
        prepared = [self._end_values(end, now) for end in ends]

        def run() -> None:
            with self._engine.core() as conn:
                found = {row.id: row for row in conn.execute(_ATTEMPTS_OF_PHASES,
                                                             {"attempt_pks": [end.attempt_pk for end in ends]})}
                shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
                released: list[dict[str, Any]] = []
                uncharged: list[dict[str, Any]] = []
                for end, (values, early_raw) in zip(ends, prepared, strict=True):
                    row = found.get(end.attempt_pk)
                    if row is None:
                        raise DatabaseUnavailable(f"attempt {end.attempt_pk} vanished from the database")
                    merged = dict(values)
                    if end.result.raw_status is not None or early_raw:  # merged: an adopted attempt keeps its history
                        merged["raw_status"] = {**(row.raw_status or {}), **early_raw, **(end.result.raw_status or {})}
                    # executemany needs one set of columns per statement: one per shape.
                    shapes.setdefault(tuple(sorted(merged)), []).append({**merged, "attempt_pk": end.attempt_pk})
                    key = {"key_run_id": row.run_id, "key_phase_id": row.phase_id}
                    released.append({**key, **_released_values(end, values["message"], now)})
                    if not end.result.charged:
                        uncharged.append(key)
                for rows in shapes.values():
                    conn.execute(_UPDATE_ATTEMPT, rows)
                conn.execute(_RELEASE_PHASE, released)
                if uncharged:
                    conn.execute(_UNCHARGE_PHASE, uncharged)

        self._engine.retrying(run)

    def _end_values(self, end: AttemptEnd, now: dt.datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        """The attempt's columns for its end, and the progress ``raw_status`` to merge in the transaction."""
        early = _progress_fields(end.progress)
        early_raw = early.pop("raw_status", None) or {}
        message = self._engine.mask(end.result.message)
        return {**early, **_finished_values(end.result, message=message, now=now)}, early_raw

    def interrupt(self, attempt_pk: int, result: AttemptResult, *, progress: AttemptProgress | None = None) -> None:
        """Record what is known of an attempt left running (SIGTERM) but keep it open.

        The phase stays EXECUTING under this session's lease; once the lease expires the
        next session adopts the attempt and writes its real end over this interim record.
        ``progress`` not written yet goes in first: the adopter needs the Job and pod.
        """
        message = self._engine.mask(result.message)
        early = _progress_fields(progress)

        def run() -> None:
            with self._engine.tx() as tx:
                row = _attempt_row(tx, attempt_pk)
                for name, value in early.items():
                    setattr(row, name, value)
                row.failure_class = result.failure_class.value
                row.message = message
                row.exit_code_reason = result.exit_code_reason
                row.log_mode = result.log_mode.value
                row.logs = _pointer_rows(result.logs)
                row.raw_status = {**(row.raw_status or {}), **(result.raw_status or {}),
                                  "interrupted_at": utcnow().isoformat()}

        self._engine.retrying(run)

    def orphaned(self, *, lease_seconds: float) -> list[OrphanRecord]:
        """Running attempts whose session stopped heart-beating for longer than a lease."""
        cutoff = utcnow() - dt.timedelta(seconds=lease_seconds)
        return [o for o in self.open_elsewhere(session_id=None) if o.session_heartbeat_at < cutoff]

    def open_elsewhere(self, *, session_id: str | None) -> list[OrphanRecord]:
        """Running attempts of every session but ``session_id``: to adopt, or to wait for.

        Each comes with its phase as the phases row has it now, so that the attempt is
        adopted with the spec (timeout, memory, env) a fresh attempt would be launched
        with, and with its session's heartbeat and identity.
        """
        def run() -> list[OrphanRecord]:
            with self._engine.tx() as tx:
                query = (
                    select(AttemptRow, PhaseRow, SessionRow)
                    .join(SessionRow, SessionRow.session_id == AttemptRow.session_id)
                    .join(PhaseRow, (PhaseRow.run_id == AttemptRow.run_id) & (PhaseRow.phase_id == AttemptRow.phase_id))
                    .where(AttemptRow.status == "running")
                    .order_by(AttemptRow.id)
                )
                if session_id is not None:
                    query = query.where(AttemptRow.session_id != session_id)
                rows = tx.execute(query).all()
                return [_orphan_record(attempt, phase, session) for attempt, phase, session in rows]

        return self._engine.retrying(run)

    def take_over(self, attempt_pk: int, *, session_id: str, lease_seconds: float,
                  holder_gone: str | None = None) -> bool:
        """Move an orphan's phase lease to this session; False if another session won it.

        The lease must have expired, or ``holder_gone`` names the session holding it and
        the caller proved that session's controller is gone (its process or pod).
        """
        now = utcnow()

        def run() -> bool:
            with self._engine.tx() as tx:
                attempt = tx.get(AttemptRow, attempt_pk)
                if attempt is None or attempt.status != "running":
                    return False
                free = or_(PhaseRow.lease_expires_at.is_(None), PhaseRow.lease_expires_at < now)
                if holder_gone is not None:
                    free = or_(free, PhaseRow.lease_owner == holder_gone)
                result = tx.execute(
                    update(PhaseRow)
                    .where(PhaseRow.run_id == attempt.run_id, PhaseRow.phase_id == attempt.phase_id,
                           PhaseRow.state == PhaseState.EXECUTING.value, free)
                    .values(lease_owner=session_id,
                            lease_expires_at=now + dt.timedelta(seconds=lease_seconds))
                    .execution_options(synchronize_session=False)
                )
                taken = bool(result.rowcount == 1)  # type: ignore[attr-defined]
                if taken:
                    attempt.adopted_by = session_id
                return taken

        return self._engine.retrying(run)

    def matching(self, *, session_id: str | None = None, run_id: str | None = None,
                 phase_id: str | None = None) -> list[AttemptRecord]:
        """Every matching attempt at once: for tests and small reads. Reports and the read
        commands use ``history`` (paged, aggregated, bounded) instead."""
        def run() -> list[AttemptRecord]:
            # Plain rows, not ORM objects: the identity map roughly doubled the memory.
            with self._engine.core() as conn:
                query = select(*AttemptRow.__table__.columns).order_by(AttemptRow.id)
                if session_id is not None:  # its own attempts and those it adopted
                    query = query.where(or_(AttemptRow.session_id == session_id, AttemptRow.adopted_by == session_id))
                if run_id is not None:
                    query = query.where(AttemptRow.run_id == run_id)
                if phase_id is not None:
                    query = query.where(AttemptRow.phase_id == phase_id)
                return [_attempt_record(r) for r in conn.execute(query)]

        return self._engine.retrying(run)
