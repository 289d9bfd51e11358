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
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Integer, Select, String, bindparam, exists, func, select, true, union_all
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from batchdrain.db.models import AttemptRow, PhaseRow, RunRow
from batchdrain.db.needs import needs_met
from batchdrain.domain import PhaseState
from batchdrain.fairshare import settled_prefix

# Runs read per statement: a UNION ALL of one short read each on SQLite (500 terms at
# most), one LATERAL read over arrays on Postgres.
RUNS_PER_STATEMENT = 200
RUNS_PER_ARRAY = 5000


@dataclass(frozen=True, slots=True)
class Head:
    """A queued phase as the order needs it (no spec)."""

    created_seq: int
    run_id: str
    priority: int


def queued_filters(*, max_attempts: int, exclude_session: str | None) -> list[ColumnElement[bool]]:
    """What makes a queued phase a candidate (its run aside): attempts left, every need COMPLETE,
    not attempted by ``exclude_session`` already. Named parameters: the statements built
    from these are compiled once and run with new values."""
    filters: list[ColumnElement[bool]] = [
        PhaseRow.state == PhaseState.QUEUED.value,
        PhaseRow.attempts - PhaseRow.retry_base < bindparam("max_attempts", max_attempts),
        needs_met(),
    ]
    if exclude_session is not None:
        filters += not_attempted_by(bindparam("exclude_session", exclude_session))
    return filters


def not_attempted_by(session: ColumnElement[str]) -> list[ColumnElement[bool]]:
    """The phase has no attempt this session launched or adopted: a later page of a session
    does not run again what it already ran (or finished for a dead session)."""
    def probe(column: Any) -> ColumnElement[bool]:
        return ~exists().where(column == session, AttemptRow.run_id == PhaseRow.run_id,
                               AttemptRow.phase_id == PhaseRow.phase_id)

    # ix_attempts_session_phase (migration 0004) and ix_attempts_adopted_by (0005), once per candidate.
    return [probe(AttemptRow.session_id), probe(AttemptRow.adopted_by)]


def runs_to_read(conn: Connection, filters: Sequence[ColumnElement[bool]], run_ids: list[str]) -> dict[str, int]:
    """The runs a page reads from, and their weights.

    On SQLite the runs with a candidate, found by one EXISTS probe each (cheap there), so
    that the shares of the page go to runs that fill them and one read settles it. On
    Postgres every run in scope: the planner took the run's unique index for that probe
    (0.7 s at 10^6 phases), while a run with no candidate costs its LATERAL read nothing.
    """
    query = select(RunRow.run_id, RunRow.weight)
    if conn.dialect.name != "postgresql":
        query = query.where(exists().where(PhaseRow.run_id == RunRow.run_id, *filters))
    if run_ids:
        query = query.where(RunRow.run_id.in_(run_ids))
    return {row.run_id: max(1, row.weight) for row in conn.execute(query.order_by(RunRow.run_id))}


def run_heads(run_id: str, count: int, filters: Sequence[ColumnElement[bool]], *, index: int = 0,
              skip: int = 0) -> Select[int, str, int]:
    """One run's queued head: ``count`` phases after the first ``skip``, in (priority desc, id) order."""
    return (select(PhaseRow.id, PhaseRow.run_id, PhaseRow.priority)
            .where(PhaseRow.run_id == bindparam(f"run_{index}", run_id), *filters)
            .order_by(PhaseRow.priority.desc(), PhaseRow.id)
            .limit(bindparam(f"count_{index}", count)).offset(bindparam(f"skip_{index}", skip)))


class _Templates:
    """SQLite: the UNION ALL of ``n`` run reads, compiled once per (n, shape).

    Building and compiling a 200-term statement cost SQLAlchemy more CPU than SQLite
    took to run it; the compiled text is reused with new parameters.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._compiled: dict[tuple[str, int, bool], Any] = {}

    def get(self, dialect: Dialect, terms: int, *, excluding: bool) -> Any:
        key = (dialect.name, terms, excluding)
        with self._lock:
            if key not in self._compiled:
                filters = queued_filters(max_attempts=0, exclude_session="" if excluding else None)
                parts = [run_heads("", 0, filters, index=i).subquery() for i in range(terms)]
                statement = union_all(*[select(*part.c).select_from(part) for part in parts]) if terms > 1 \
                    else select(*parts[0].c).select_from(parts[0])
                self._compiled[key] = statement.compile(dialect=dialect)
            return self._compiled[key]


_TEMPLATES = _Templates()


def _lateral_heads(excluding: bool) -> Select[int, str, int]:
    """Postgres: every run's head in one statement, a LATERAL read per element of three arrays.

    A UNION ALL of 200 reads took Postgres 170 ms to plan (45 ms to run); this plans once.
    """
    runs = func.unnest(bindparam("runs", type_=postgresql.ARRAY(String)),
                       bindparam("counts", type_=postgresql.ARRAY(Integer)),
                       bindparam("skips", type_=postgresql.ARRAY(Integer))).table_valued(
        "run_id", "n", "o").render_derived(name="r")
    filters = queued_filters(max_attempts=0, exclude_session="" if excluding else None)
    heads = (select(PhaseRow.id, PhaseRow.run_id, PhaseRow.priority).where(PhaseRow.run_id == runs.c.run_id, *filters)
             .order_by(PhaseRow.priority.desc(), PhaseRow.id).limit(runs.c.n).offset(runs.c.o).lateral("h"))
    return select(heads.c.id, heads.c.run_id, heads.c.priority).select_from(runs.join(heads, true()))


_LATERAL = {excluding: _lateral_heads(excluding) for excluding in (False, True)}


def _rows(conn: Connection, chunk: list[str], wanted: dict[str, int], per_run: dict[str, list[Head]], *,
          max_attempts: int, exclude_session: str | None) -> Iterable[Sequence[Any]]:
    """(id, run_id, priority) of up to ``wanted[run]`` further phases of each run of ``chunk``."""
    common = {"max_attempts": max_attempts, "exclude_session": exclude_session}
    if conn.dialect.name == "postgresql":
        # The planner's estimate for a LATERAL over many runs (all rows of each run, not
        # the few the LIMIT reads) passes jit_above_cost: JIT then took 460 ms to compile
        # a statement that ran in 32 ms. Off for this transaction only.
        conn.exec_driver_sql("SET LOCAL jit = off")
        return conn.execute(_LATERAL[exclude_session is not None], {
            **common, "runs": chunk, "counts": [wanted[r] for r in chunk],
            "skips": [len(per_run[r]) for r in chunk]}).all()
    compiled = _TEMPLATES.get(conn.dialect, len(chunk), excluding=exclude_session is not None)
    values: dict[str, Any] = {**compiled.params, **common}
    for i, run in enumerate(chunk):
        values.update({f"run_{i}": run, f"count_{i}": wanted[run], f"skip_{i}": len(per_run[run])})
    params: Any = tuple(values[name] for name in compiled.positiontup) if compiled.positional else values
    return conn.exec_driver_sql(str(compiled), params).all()


def _read_more(conn: Connection, wanted: dict[str, int], per_run: dict[str, list[Head]], *, max_attempts: int,
               exclude_session: str | None) -> set[str]:
    """Read up to ``wanted[run]`` more phases of each run; returns the runs that had fewer (read whole)."""
    runs = sorted(wanted)
    exhausted: set[str] = set()
    step = RUNS_PER_STATEMENT if conn.dialect.name != "postgresql" else RUNS_PER_ARRAY
    for start in range(0, len(runs), step):
        chunk = runs[start:start + step]
        got: dict[str, list[Head]] = {run: [] for run in chunk}
        for row in _rows(conn, chunk, wanted, per_run, max_attempts=max_attempts, exclude_session=exclude_session):
            got[row[1]].append(Head(row[0], row[1], row[2]))
        for run in chunk:
            # A UNION ALL keeps no order between or within its terms: each run's rows sorted here.
            per_run[run] += sorted(got[run], key=lambda h: (-h.priority, h.created_seq))
            if len(got[run]) < wanted[run]:
                exhausted.add(run)
    return exhausted


def fair_heads(conn: Connection, *, max_attempts: int, exclude_session: str | None, run_ids: list[str],
               limit: int) -> tuple[list[Head], dict[str, int]]:
    """The first ``limit`` queued candidates in fair order, and the weights of the runs read."""
    weights = runs_to_read(conn, queued_filters(max_attempts=max_attempts, exclude_session=exclude_session), run_ids)
    if not weights or limit < 1:
        return [], weights
    total = sum(weights.values())
    # A run's fair share of the page, and one more round: most pages settle in one read.
    wanted = {run: math.ceil(limit * weight / total) + weight for run, weight in weights.items()}
    per_run: dict[str, list[Head]] = {run: [] for run in weights}
    part_read = set(weights)
    while True:
        part_read -= _read_more(conn, {run: wanted[run] for run in part_read}, per_run,
                                max_attempts=max_attempts, exclude_session=exclude_session)
        settled = settled_prefix(per_run, part_read, weights=weights)
        if len(settled) >= limit or not part_read:
            return settled[:limit], {run: weights[run] for run, heads in per_run.items() if heads}
        # Short of a page: the runs read in part had more than their share; read twice as far.
        wanted = {run: max(len(per_run[run]), weights[run]) for run in part_read}
