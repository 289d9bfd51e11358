"""Durations of past attempts, aggregated by the database: what a forecast is estimated from.

Only succeeded attempts count (a failure's duration says little about the work), each
by its total time (Job or process creation to the end; the container time when the
total is missing). Medians are nearest-rank from a window function, one statement
each, so nothing but the results (one value per run) leaves the database.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, and_, func, select
from sqlalchemy.orm import aliased

from batchdrain.db.models import AttemptRow, PhaseRow

_SECONDS = func.coalesce(AttemptRow.total_seconds, AttemptRow.container_seconds)
_SUCCEEDED = and_(AttemptRow.status == "finished", AttemptRow.failure_class == "succeeded", _SECONDS.is_not(None))


def medians(conn: Connection) -> tuple[dict[str, float], float | None]:
    """The median succeeded duration per run, and over every run."""
    durations = select(AttemptRow.run_id, _SECONDS.label("s")).where(_SUCCEEDED).subquery()
    ranked = select(durations.c.run_id, durations.c.s,
                    func.row_number().over(partition_by=durations.c.run_id, order_by=durations.c.s).label("rn"),
                    func.count().over(partition_by=durations.c.run_id).label("n")).subquery()
    per_run = {row.run_id: float(row.s) for row in conn.execute(
        select(ranked.c.run_id, ranked.c.s).where(ranked.c.rn == (ranked.c.n + 1) // 2))}
    overall = select(durations.c.s, func.row_number().over(order_by=durations.c.s).label("rn"),
                     func.count().over().label("n")).subquery()
    value = conn.execute(select(overall.c.s).where(overall.c.rn == (overall.c.n + 1) // 2)).scalar()
    return per_run, float(value) if value is not None else None


def phase_means(conn: Connection, first_id: int, last_id: int) -> Mapping[tuple[str, str], float]:
    """The mean succeeded duration of each phase with ids in ``[first_id, last_id]`` that has one."""
    phase = aliased(PhaseRow, name="phase")
    query = (select(AttemptRow.run_id, AttemptRow.phase_id, func.avg(_SECONDS))
             .join(phase, and_(phase.run_id == AttemptRow.run_id, phase.phase_id == AttemptRow.phase_id))
             .where(_SUCCEEDED, phase.id >= first_id, phase.id <= last_id)
             .group_by(AttemptRow.run_id, AttemptRow.phase_id))
    return {(run_id, phase_id): float(mean) for run_id, phase_id, mean in conn.execute(query)}
