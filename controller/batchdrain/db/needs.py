"""Declared dependencies in the database: the edges written by an import, checked before it
commits, and the SQL that tells whether a phase's needs are met.

The edges live in ``phase_needs`` (migration 0008). An import inserts a batch's edges with
its phases, then, before its transaction commits, refuses needs that name no phase of the
run (one anti-join) and cycles (``dependencies.find_cycle`` over the edges this import
declared: an earlier phase's needs name earlier phases only, so a cycle must run through
new ones). The candidate queries probe the primary key once per phase.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, and_, exists, func, insert, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from batchdrain.db.models import NeedRow, PhaseRow
from batchdrain.db.records import NewPhase
from batchdrain.dependencies import SHOWN, cycle_line, find_cycle, unknown_line
from batchdrain.domain import BadInput, Need, PhaseState

# Edges of one import held for the cycle check: (run, phase) -> needs.
Declared = dict[str, dict[str, tuple[str, ...]]]

_NEED = aliased(PhaseRow, name="need")


def insert_needs(conn: Connection, chunk: Iterable[NewPhase], declared: Declared) -> None:
    rows = [{"run_id": p.run_id, "phase_id": p.phase_id, "needs_phase_id": need} for p in chunk for need in p.needs]
    for phase in chunk:
        if phase.needs:
            declared.setdefault(phase.run_id, {})[phase.phase_id] = phase.needs
    if rows:
        conn.execute(insert(NeedRow), rows)


def check_needs(conn: Connection, declared: Declared) -> None:
    """Refuse unknown needs and cycles among what this import declared (``BadInput``, one line)."""
    if not declared:
        return
    unknown = (select(NeedRow.run_id, NeedRow.phase_id, NeedRow.needs_phase_id)
               .outerjoin(_NEED, and_(_NEED.run_id == NeedRow.run_id, _NEED.phase_id == NeedRow.needs_phase_id))
               .where(_NEED.id.is_(None)))
    missing = conn.execute(unknown.order_by(NeedRow.run_id, NeedRow.phase_id, NeedRow.needs_phase_id)
                           .limit(SHOWN)).all()
    if missing:
        count = conn.scalar(select(func.count()).select_from(unknown.subquery())) or len(missing)
        raise BadInput(unknown_line([(m[0], m[1], m[2]) for m in missing], count))
    for run_id in sorted(declared):
        cycle = find_cycle(declared[run_id])
        if cycle:
            raise BadInput(cycle_line(run_id, cycle))


def declares_needs(phase: type[PhaseRow] | Any = PhaseRow) -> ColumnElement[bool]:
    """The phase lists at least one need."""
    return exists().where(NeedRow.run_id == phase.run_id, NeedRow.phase_id == phase.phase_id)


def needs_met(phase: type[PhaseRow] | Any = PhaseRow) -> ColumnElement[bool]:
    """Every need of the phase (none, for most) is COMPLETE."""
    unmet = (select(NeedRow.needs_phase_id)
             .join(_NEED, and_(_NEED.run_id == NeedRow.run_id, _NEED.phase_id == NeedRow.needs_phase_id))
             .where(NeedRow.run_id == phase.run_id, NeedRow.phase_id == phase.phase_id,
                    _NEED.state != PhaseState.COMPLETE.value))
    return ~unmet.exists()


def needs_of_page(conn: Connection, first_id: int, last_id: int,
                  run_ids: list[str] | None) -> Mapping[tuple[str, str], list[Need]]:
    """For the phases with ids in ``[first_id, last_id]`` that declare needs: each need not COMPLETE
    (an empty list when all are), as it stands. One query per page of the backlog walk."""
    owner = aliased(PhaseRow, name="owner")
    query = (select(NeedRow.run_id, NeedRow.phase_id, NeedRow.needs_phase_id, _NEED.state, _NEED.attempts,
                    _NEED.retry_base, _NEED.parked_reason)
             .join(owner, and_(owner.run_id == NeedRow.run_id, owner.phase_id == NeedRow.phase_id))
             .join(_NEED, and_(_NEED.run_id == NeedRow.run_id, _NEED.phase_id == NeedRow.needs_phase_id))
             .where(owner.id >= first_id, owner.id <= last_id))
    if run_ids:
        query = query.where(NeedRow.run_id.in_(run_ids))
    found: dict[tuple[str, str], list[Need]] = {}
    for row in conn.execute(query.order_by(NeedRow.run_id, NeedRow.phase_id, NeedRow.needs_phase_id)):
        unmet = found.setdefault((row.run_id, row.phase_id), [])
        if row.state != PhaseState.COMPLETE.value:
            unmet.append(Need(row.needs_phase_id, PhaseState(row.state), row.attempts - row.retry_base,
                              row.parked_reason))
    return found
