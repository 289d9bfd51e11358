"""Queued candidates in the fair order of ``fairshare``, read run by run.

One window function over the backlog (``ROW_NUMBER() OVER (PARTITION BY run_id ...)``)
gives the order directly, but it ranks every queued phase for every page: 2.5 s per
page of 10,000 on Postgres at 10^6 phases, against 12 ms for the plain oldest-first
read (``benchmarks/RESULTS.md``, "Priorities and fair share"). Instead, since the first
N phases of the order hold a prefix of each run (``fairshare``), each run with queued
phases is read from its head, a few phases each (by ``ix_phases_run_state_priority``:
run, state, priority desc, id), and the runs read only in part are read further until
the settled prefix fills the page. A page costs one probe per run in scope and about
one to two pages of short index reads, whatever the backlog's size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Select, and_, exists, or_, select, union_all
from sqlalchemy.sql.elements import ColumnElement

from batchdrain.db.models import PhaseRow, RunRow
from batchdrain.fairshare import settled_prefix

# Runs read per statement (a UNION ALL of one short read each): SQLite allows 500 terms.
RUNS_PER_STATEMENT = 200


@dataclass(frozen=True, slots=True)
class Head:
    """A queued phase as the order needs it (no spec)."""

    created_seq: int
    run_id: str
    priority: int


def active_runs(conn: Connection, filters: Sequence[ColumnElement[bool]], run_ids: list[str]) -> dict[str, int]:
    """The runs (in scope) with at least one phase passing ``filters``, and their weights."""
    query = select(RunRow.run_id, RunRow.weight).where(exists().where(PhaseRow.run_id == RunRow.run_id, *filters))
    if run_ids:
        query = query.where(RunRow.run_id.in_(run_ids))
    return {row.run_id: max(1, row.weight) for row in conn.execute(query.order_by(RunRow.run_id))}


def run_heads(run_id: str, after: Head | None, count: int,
              filters: Sequence[ColumnElement[bool]]) -> Select[int, str, int]:
    query = select(PhaseRow.id, PhaseRow.run_id, PhaseRow.priority).where(PhaseRow.run_id == run_id, *filters)
    if after is not None:
        query = query.where(or_(PhaseRow.priority < after.priority,
                                and_(PhaseRow.priority == after.priority, PhaseRow.id > after.created_seq)))
    return query.order_by(PhaseRow.priority.desc(), PhaseRow.id).limit(count)


def _read_more(conn: Connection, wanted: dict[str, int], per_run: dict[str, list[Head]],
               filters: Sequence[ColumnElement[bool]]) -> set[str]:
    """Read up to ``wanted[run]`` more phases of each run; returns the runs that had fewer (read whole)."""
    runs = sorted(wanted)
    exhausted: set[str] = set()
    for start in range(0, len(runs), RUNS_PER_STATEMENT):
        chunk = runs[start:start + RUNS_PER_STATEMENT]
        parts = [run_heads(run, per_run[run][-1] if per_run[run] else None, wanted[run], filters).subquery()
                 for run in chunk]
        statement = union_all(*[select(*part.c).select_from(part) for part in parts]) if len(parts) > 1 \
            else select(*parts[0].c).select_from(parts[0])
        got: dict[str, list[Head]] = {run: [] for run in chunk}
        for row in conn.execute(statement):
            got[row.run_id].append(Head(row.id, row.run_id, row.priority))
        for run in chunk:
            # A UNION ALL keeps no order between or within its terms: each run's rows sorted here.
            per_run[run] += sorted(got[run], key=lambda h: (-h.priority, h.created_seq))
            if len(got[run]) < wanted[run]:
                exhausted.add(run)
    return exhausted


def fair_heads(conn: Connection, *, filters: Sequence[ColumnElement[bool]], run_ids: list[str],
               limit: int) -> tuple[list[Head], dict[str, int]]:
    """The first ``limit`` queued phases passing ``filters`` in fair order, and the runs' weights."""
    weights = active_runs(conn, filters, run_ids)
    if not weights or limit < 1:
        return [], weights
    total = sum(weights.values())
    # A run's fair share of the page, and one more round: most pages settle in one read.
    wanted = {run: math.ceil(limit * weight / total) + weight for run, weight in weights.items()}
    per_run: dict[str, list[Head]] = {run: [] for run in weights}
    part_read = set(weights)
    while True:
        part_read -= _read_more(conn, {run: wanted[run] for run in part_read}, per_run, filters)
        settled = settled_prefix(per_run, part_read, weights=weights)
        if len(settled) >= limit or not part_read:
            return settled[:limit], weights
        # Short of a page: the runs read in part had more than their share; read twice as far.
        wanted = {run: max(len(per_run[run]), weights[run]) for run in part_read}
