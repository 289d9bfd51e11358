"""The backlog: phases going in, and the reads that selection and retries work from.

``candidates`` is the hot read of a session (one per page of a large backlog); it
mirrors ``selection.plan``'s rules in SQL so that a session's cost does not grow
with the backlog, and the indexes of migrations 0002 and 0004 keep it short.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import BigInteger, Connection, any_, bindparam, exists, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Row
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from batchdrain.db.durations import medians, phase_means
from batchdrain.db.engine import DatabaseEngine, aware
from batchdrain.db.enqueue import IMPORT_BATCH, enqueue_stream
from batchdrain.db.fairness import fair_heads, not_attempted_by, queued_filters, run_heads
from batchdrain.db.models import AttemptRow, PhaseRow, RunRow
from batchdrain.db.needs import declares_needs, needs_met, needs_of_page
from batchdrain.db.records import ImportCounts, NewPhase, PhaseStanding
from batchdrain.domain import (
    AttemptHistoryItem,
    FailureClass,
    Need,
    Phase,
    PhaseSpec,
    PhaseState,
    RunCounts,
    utcnow,
)

# A plain row of any columns (the phases' own, and computed ones such as ``declares_needs``).
AnyRow = Row[*tuple[Any, ...]]
# Rows per read when a command walks the whole backlog: one short transaction each.
STANDINGS_PAGE = 5_000
# Candidates' specs read per statement (under SQLite's bound parameters).
SPEC_READ = 2_000


def phase_from_row(row: PhaseRow | AnyRow, *, weight: int = 1) -> Phase:
    """A phases row (ORM object or plain row with the same columns) as a domain value."""
    return Phase(
        run_id=row.run_id, phase_id=row.phase_id, state=PhaseState(row.state),
        attempts=row.attempts, spec=PhaseSpec.from_json(row.spec), created_seq=row.id,
        retry_base=row.retry_base,
        last_failure_class=row.last_failure_class, last_failure_reason=row.last_failure_reason,
        parked_reason=row.parked_reason, lease_owner=row.lease_owner, eligible_at=aware(row.eligible_at),
        priority=row.priority, weight=weight, declares_needs=bool(getattr(row, "declares_needs", False)),
    )


_STATES = {state.value: state for state in PhaseState}


def _standing(row: AnyRow, needs: Mapping[tuple[str, str], list[Need]],
              past: Mapping[tuple[str, str], float]) -> PhaseStanding:
    """One row of the backlog walk (a million per dry run at 10^6: kept to plain lookups)."""
    key = (row.run_id, row.phase_id)
    unmet = needs.get(key)
    return PhaseStanding(run_id=row.run_id, phase_id=row.phase_id, state=_STATES[row.state],
                         attempts=row.attempts, retry_base=row.retry_base, created_seq=row.id,
                         parked_reason=row.parked_reason, lease_owner=row.lease_owner,
                         eligible_at=aware(row.eligible_at) if row.eligible_at is not None else None,
                         priority=row.priority, declares_needs=unmet is not None,
                         unmet_needs=tuple(unmet) if unmet else (), past_seconds=past.get(key) if past else None)


def _phases_by_id(conn: Connection, ids: list[int], weights: Mapping[str, int]) -> list[Phase]:
    """The phases of ``ids`` with their specs, in the order of ``ids``."""
    rows: dict[int, AnyRow] = {}
    columns = select(*PhaseRow.__table__.columns, declares_needs().label("declares_needs"))
    if conn.dialect.name == "postgresql":
        # One array parameter, not 10,000 (binding them cost more than the read).
        rows.update((row.id, row) for row in conn.execute(
            columns.where(PhaseRow.id == any_(bindparam("ids", type_=postgresql.ARRAY(BigInteger)))), {"ids": ids}))
    else:
        for start in range(0, len(ids), SPEC_READ):
            rows.update((row.id, row) for row in conn.execute(
                columns.where(PhaseRow.id.in_(ids[start:start + SPEC_READ]))))
    return [phase_from_row(rows[i], weight=weights.get(rows[i].run_id, 1)) for i in ids if i in rows]


def candidate_scope(run_ids: list[str], exclude_session: str | None) -> list[ColumnElement[bool]]:
    scope: list[ColumnElement[bool]] = [PhaseRow.run_id.in_(run_ids)] if run_ids else []
    if exclude_session is not None:
        scope += not_attempted_by(literal(exclude_session))
    return scope


def retry_due(now: dt.datetime) -> ColumnElement[bool]:
    """A failed phase whose retry backoff is over (or that has none)."""
    return or_(PhaseRow.eligible_at.is_(None), PhaseRow.eligible_at <= now)


def candidates_query(*, run_id: str, limit: int, max_attempts: int,
                     exclude_session: str | None) -> Select[int, str, int]:
    """The read of one run's queued head that ``candidates`` runs per run (``fairness``)."""
    return run_heads(run_id, limit, queued_filters(max_attempts=max_attempts, exclude_session=exclude_session))


class Backlog:
    def __init__(self, engine: DatabaseEngine) -> None:
        self._engine = engine

    def enqueue(self, phases: list[NewPhase]) -> int:
        """Insert phases, all or nothing; a duplicate names its (run, phase) and row."""
        return enqueue_stream(self._engine, lambda: phases).phases

    def enqueue_stream(self, open_rows: Callable[[], Iterable[NewPhase]], *,
                       batch: int = IMPORT_BATCH) -> ImportCounts:
        """Insert a stream of phases in batches, all or nothing (``enqueue.enqueue_stream``)."""
        return enqueue_stream(self._engine, open_rows, batch=batch)

    def known_runs(self) -> set[str]:
        def run() -> set[str]:
            with self._engine.tx() as tx:
                return set(tx.scalars(select(RunRow.run_id)))

        return self._engine.retrying(run)

    def phases(self, run_ids: Iterable[str] | None = None) -> list[Phase]:
        wanted = list(run_ids) if run_ids is not None else None

        def run() -> list[Phase]:
            with self._engine.tx() as tx:
                query = select(PhaseRow).order_by(PhaseRow.id)
                if wanted:
                    query = query.where(PhaseRow.run_id.in_(wanted))
                return [phase_from_row(row) for row in tx.scalars(query)]

        return self._engine.retrying(run)

    def standings(self, run_ids: Iterable[str] | None = None, *,
                  with_durations: bool = False) -> Iterator[PhaseStanding]:
        """Every phase (of these runs), in id order, page by page and without its spec;
        ``with_durations`` adds each one's mean succeeded duration (``past_seconds``).

        Keyset pages, each read in its own transaction: memory stays one page whatever
        the backlog's size, and no transaction stays open while the caller works.
        """
        wanted = list(run_ids) if run_ids is not None else None
        columns = (PhaseRow.id, PhaseRow.run_id, PhaseRow.phase_id, PhaseRow.state, PhaseRow.attempts,
                   PhaseRow.retry_base, PhaseRow.parked_reason, PhaseRow.lease_owner, PhaseRow.eligible_at,
                   PhaseRow.priority)
        after = 0

        def page() -> list[PhaseStanding]:
            query = select(*columns).where(PhaseRow.id > after).order_by(PhaseRow.id).limit(STANDINGS_PAGE)
            if wanted:
                query = query.where(PhaseRow.run_id.in_(wanted))
            with self._engine.core() as conn:
                rows = conn.execute(query).all()
                needs = needs_of_page(conn, rows[0].id, rows[-1].id, wanted) if rows else {}
                past = phase_means(conn, rows[0].id, rows[-1].id) if rows and with_durations else {}
                return [_standing(r, needs, past) for r in rows]

        while True:
            rows = self._engine.retrying(page)
            yield from rows
            if len(rows) < STANDINGS_PAGE:
                return
            after = rows[-1].created_seq

    def candidates(self, *, run_ids: list[str], limit: int, max_attempts: int, skip_runs_with_queued: bool,
                   include_parked: bool, exclude_session: str | None = None,
                   now: dt.datetime | None = None) -> list[Phase]:
        """The phases selection may pick, filtered and ordered in SQL: at most ``limit`` queued
        phases and ``limit`` retries, so a session's cost does not grow with the backlog.

        Mirrors ``selection.plan``'s rules (which then runs on this subset): queued phases
        in fair order (``fairness``), retries by priority then fewest attempts. A retry
        whose backoff runs past ``now`` (``eligible_at``) is not a candidate.
        """

        def run() -> list[Phase]:
            with self._engine.core() as conn:
                budget = PhaseRow.attempts - PhaseRow.retry_base < max_attempts
                heads, weights = fair_heads(conn, max_attempts=max_attempts, exclude_session=exclude_session,
                                            run_ids=run_ids, limit=limit)
                queued = _phases_by_id(conn, [h.created_seq for h in heads], weights)
                states = [PhaseState.FAILED.value] + ([PhaseState.SKIPPED.value] if include_parked else [])
                retry_filter = [PhaseRow.state.in_(states), budget, *candidate_scope(run_ids, exclude_session),
                                retry_due(now or utcnow())]
                if len(queued) >= limit:
                    # Queued phases fill the page: only a retry of a higher priority than the
                    # page's last could be picked (ix_phases_state_priority finds those without
                    # walking every FAILED row).
                    retry_filter.append(PhaseRow.priority > min(p.priority for p in queued))
                if skip_runs_with_queued:
                    # NOT EXISTS probes ix_phases_run_state_priority per candidate run, instead
                    # of materialising every queued phase's run id (NOT IN). A phase that
                    # declares needs is not held back by the heuristic, and a queued phase
                    # that declares needs holds no one back (it waits on what it named).
                    queued_phase = aliased(PhaseRow)
                    retry_filter.append(or_(declares_needs(), ~exists().where(
                        queued_phase.run_id == PhaseRow.run_id, queued_phase.state == PhaseState.QUEUED.value,
                        ~declares_needs(queued_phase))))
                retries = conn.execute(
                    select(*PhaseRow.__table__.columns, declares_needs().label("declares_needs"))
                    .where(*retry_filter, needs_met())
                    .order_by(PhaseRow.priority.desc(), PhaseRow.attempts - PhaseRow.retry_base, PhaseRow.id)
                    .limit(limit)).all()
                return [*queued, *(phase_from_row(row) for row in retries)]

        return self._engine.retrying(run)

    def duration_medians(self) -> tuple[dict[str, float], float | None]:
        """Median succeeded attempt duration per run and overall (``durations.medians``)."""
        def run() -> tuple[dict[str, float], float | None]:
            with self._engine.core() as conn:
                return medians(conn)

        return self._engine.retrying(run)

    def undeclared_queued(self, run_ids: Iterable[str] | None = None) -> dict[str, int]:
        """Queued phases per run that declare no needs: those ``--skip-runs-with-queued`` counts."""
        wanted = list(run_ids) if run_ids is not None else None

        def run() -> dict[str, int]:
            query = (select(PhaseRow.run_id, func.count())
                     .where(PhaseRow.state == PhaseState.QUEUED.value, ~declares_needs())
                     .group_by(PhaseRow.run_id))
            if wanted:
                query = query.where(PhaseRow.run_id.in_(wanted))
            with self._engine.core() as conn:
                return {run_id: count for run_id, count in conn.execute(query)}

        return self._engine.retrying(run)

    def run_counts(self, run_ids: Iterable[str] | None = None) -> dict[str, RunCounts]:
        wanted = list(run_ids) if run_ids is not None else None

        def run() -> dict[str, RunCounts]:
            with self._engine.tx() as tx:
                query = select(PhaseRow.run_id, PhaseRow.state, func.count()).group_by(
                    PhaseRow.run_id, PhaseRow.state
                )
                if wanted is not None:
                    query = query.where(PhaseRow.run_id.in_(wanted))
                per_run: dict[str, dict[str, int]] = {}
                for run_id, state, count in tx.execute(query).all():
                    per_run.setdefault(run_id, {})[state.lower()] = count
                return {run_id: RunCounts(**counts) for run_id, counts in sorted(per_run.items())}

        return self._engine.retrying(run)

    def attempt_history(self, run_id: str, phase_id: str, limit: int) -> list[AttemptHistoryItem]:
        """Latest finished attempts first."""

        def run() -> list[AttemptHistoryItem]:
            with self._engine.tx() as tx:
                rows = tx.scalars(
                    select(AttemptRow)
                    .where(AttemptRow.run_id == run_id, AttemptRow.phase_id == phase_id,
                           AttemptRow.status == "finished")
                    .order_by(AttemptRow.attempt.desc())
                    .limit(limit)
                )
                return [
                    AttemptHistoryItem(FailureClass(r.failure_class or "api_error"), r.exit_code,
                                       r.first_error_line)
                    for r in rows
                ]

        return self._engine.retrying(run)

    def retry_phases(self, *, run_ids: list[str], phase_ids: list[str], include_failed: bool) -> int:
        """Put parked (and optionally failed) phases back in the queue; attempt limits restart."""
        states = [PhaseState.SKIPPED.value] + ([PhaseState.FAILED.value] if include_failed else [])

        def run() -> int:
            with self._engine.tx() as tx:
                query = update(PhaseRow).where(PhaseRow.state.in_(states))
                if run_ids:
                    query = query.where(PhaseRow.run_id.in_(run_ids))
                if phase_ids:
                    query = query.where(PhaseRow.phase_id.in_(phase_ids))
                result = tx.execute(query.values(
                    state=PhaseState.QUEUED.value, retry_base=PhaseRow.attempts, parked_reason=None,
                    eligible_at=None, updated_at=utcnow(),
                ).execution_options(synchronize_session=False))
                return int(result.rowcount)  # type: ignore[attr-defined]

        return self._engine.retrying(run)
