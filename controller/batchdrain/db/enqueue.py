"""Phases into the backlog, in batches, all or nothing.

A file of a million rows is inserted as multi-row INSERTs of ``IMPORT_BATCH`` rows
(Core statements over plain dicts, not an ORM object per row as before), all in
one transaction, so a bad row anywhere leaves nothing written. Nothing here holds more
than one batch: duplicates inside a batch are found with a dict of that batch's keys;
a duplicate of an earlier batch or of a phase already in the backlog is found by the
unique constraint ``uq_phases_run_phase``, and only then is the batch looked up again
(in a savepoint, so the transaction stays usable on Postgres) to name the row.
Declared needs go in with their batch and are checked (unknown ids, cycles) before the
transaction commits (``needs``); the cycle check holds the edges this input declares.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from sqlalchemy import Connection, func, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from batchdrain.db.engine import DatabaseEngine, aware
from batchdrain.db.models import PhaseRow, RunRow
from batchdrain.db.needs import Declared, check_needs, insert_needs
from batchdrain.db.records import ImportCounts, NewPhase
from batchdrain.domain import BadInput, PhaseSpec, PhaseState, utcnow
from batchdrain.phase_limits import host_arg_max, phase_problem

# Rows per INSERT: large enough that the per-statement cost vanishes, small enough
# that a batch (its dicts and the lookup of its keys) stays a few MB, and under
# SQLite's 32,766 bound parameters for the two-column key lookup.
IMPORT_BATCH = 5000
# Distinct specs whose stored form an import keeps (``PhaseInsert``): a few MB at most.
SPECS_KEPT = 4096


def check_phase(row: int, phase: NewPhase, *, arg_max: int) -> None:
    """What can be refused without the database (``phase_limits``): ids, text, sizes."""
    problem = phase_problem(phase.run_id, phase.phase_id, spec=phase.spec, arg_max=arg_max)
    if problem:
        raise BadInput(f"row {row}: {problem}")


def batches(phases: Iterable[NewPhase], size: int) -> Iterator[tuple[int, list[NewPhase]]]:
    """(number of the batch's first row, the batch), rows numbered from 1."""
    rows = iter(phases)
    first = 1
    while chunk := list(islice(rows, size)):
        yield first, chunk
        first += len(chunk)


def _refuse_within(first_row: int, chunk: list[NewPhase], *, arg_max: int) -> None:
    seen: dict[tuple[str, str], int] = {}
    for row, phase in enumerate(chunk, start=first_row):
        check_phase(row, phase, arg_max=arg_max)
        key = (phase.run_id, phase.phase_id)
        if key in seen:
            raise BadInput(f"row {row}: duplicate of row {seen[key]} (run {key[0]!r}, phase {key[1]!r})")
        seen[key] = row


def _insert_runs(conn: Connection, run_ids: set[str], now: dt.datetime) -> int:
    existing = set(conn.scalars(select(RunRow.run_id).where(RunRow.run_id.in_(run_ids))))
    new = sorted(run_ids - existing)
    if new:
        # Another import may create the same run meanwhile (two enqueues into one new run
        # at once): that is no duplicate phase, so a run already there is skipped.
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(dialect_insert(RunRow).on_conflict_do_nothing(index_elements=["run_id"]),
                     [{"run_id": run_id, "created_at": now} for run_id in new])
    return len(new)


def _run_weights(first_row: int, chunk: list[NewPhase], given: dict[str, tuple[int, int]]) -> dict[str, int]:
    """The run weights this batch sets; two rows of one input that disagree are refused."""
    weights: dict[str, int] = {}
    for row, phase in enumerate(chunk, start=first_row):
        if phase.run_weight is None:
            continue
        earlier = given.setdefault(phase.run_id, (phase.run_weight, row))
        if earlier[0] != phase.run_weight:
            raise BadInput(f"row {row}: run_weight {phase.run_weight} of run {phase.run_id!r} differs from "
                           f"{earlier[0]} on row {earlier[1]}")
        weights[phase.run_id] = phase.run_weight
    return weights


def _set_weights(conn: Connection, weights: dict[str, int]) -> None:
    for run_id, weight in sorted(weights.items()):
        conn.execute(update(RunRow).where(RunRow.run_id == run_id).values(weight=weight))


class PhaseInsert:
    """The INSERT of a new phase, compiled once per import for the connection's dialect.

    ``conn.execute(insert(PhaseRow), dicts)`` compiles the statement for every batch and
    runs each column's bind processor for every row: at a million rows that was a third
    of the import's CPU, mostly formatting the same ``created_at`` twice per row. Here the
    columns every row shares are processed once (by the same type processors SQLAlchemy
    would use), and only the spec, ids and priority per row.
    """

    _SHARED = ("state", "attempts", "retry_base", "created_at", "updated_at")

    def __init__(self, conn: Connection, now: dt.datetime) -> None:
        table = PhaseRow.__table__
        keys = ("run_id", "phase_id", "spec", "priority", *self._SHARED)
        compiled = insert(PhaseRow).compile(dialect=conn.dialect, column_keys=list(keys))
        self.sql = str(compiled)
        dialect = conn.dialect

        def processor(key: str) -> Callable[[Any], Any]:
            bind = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
            return bind if bind is not None else (lambda value: value)

        shared = dict(zip(self._SHARED, (PhaseState.QUEUED.value, 0, 0, now, now), strict=True))
        self._shared = {key: processor(key)(value) for key, value in shared.items()}
        self._spec = processor("spec")
        self._specs: dict[PhaseSpec, Any] = {}
        self._priority = processor("priority")
        # The driver's parameter style: a tuple in the statement's order, or by name.
        self._order = tuple(compiled.positiontup or ()) if compiled.positional else None

    def rows(self, chunk: list[NewPhase]) -> list[Any]:
        stored, priority, shared = self._stored_spec, self._priority, self._shared
        named = [{**shared, "run_id": p.run_id, "phase_id": p.phase_id, "spec": stored(p.spec),
                  "priority": priority(p.priority)} for p in chunk]
        if self._order is None:
            return named
        in_order = operator.itemgetter(*self._order)
        return [in_order(row) for row in named]

    def _stored_spec(self, spec: PhaseSpec) -> Any:
        """The spec as the driver takes it. Rows of a backlog mostly share their spec (the
        command's ``{phase_id}`` template differs per phase only when it runs), so each
        spec is serialised once, for up to ``SPECS_KEPT`` distinct specs per import."""
        value = self._specs.get(spec)
        if value is None:
            value = self._spec(spec.to_json())
            if len(self._specs) < SPECS_KEPT:
                self._specs[spec] = value
        return value


def _insert_phases(conn: Connection, statement: PhaseInsert, first_row: int, chunk: list[NewPhase],
                   now: dt.datetime) -> None:
    values = statement.rows(chunk)
    savepoint = conn.begin_nested()
    try:
        conn.exec_driver_sql(statement.sql, values)
    except IntegrityError as err:
        savepoint.rollback()
        named = _name_duplicate(conn, first_row, chunk, now)
        if named is None:
            raise
        raise named from err
    savepoint.commit()


def _name_duplicate(conn: Connection, first_row: int, chunk: list[NewPhase], now: dt.datetime) -> BadInput | None:
    """The first row of the batch whose (run, phase) is already stored, as an error.

    Rows of this transaction carry its ``created_at`` exactly: one that does is an
    earlier row of the same input, and its row number is its rank among them (ids
    grow in insertion order within one transaction on both databases).
    """
    keys = [(p.run_id, p.phase_id) for p in chunk]
    stored = {(hit.run_id, hit.phase_id): hit for hit in conn.execute(
        select(PhaseRow.id, PhaseRow.run_id, PhaseRow.phase_id, PhaseRow.created_at)
        .where(tuple_(PhaseRow.run_id, PhaseRow.phase_id).in_(keys)))}
    for row, key in enumerate(keys, start=first_row):
        hit = stored.get(key)
        if hit is None:
            continue
        if aware(hit.created_at) == now:
            earlier = conn.scalar(select(func.count()).select_from(PhaseRow)
                                  .where(PhaseRow.created_at == now, PhaseRow.id <= hit.id))
            return BadInput(f"row {row}: duplicate of row {earlier} (run {key[0]!r}, phase {key[1]!r})")
        return BadInput(f"row {row}: phase {key[1]!r} of run {key[0]!r} is already in the backlog")
    return None


def enqueue_stream(engine: DatabaseEngine, open_rows: Callable[[], Iterable[NewPhase]], *,
                   batch: int = IMPORT_BATCH) -> ImportCounts:
    """Insert every row of ``open_rows()`` in one transaction, ``batch`` rows per INSERT.

    ``open_rows`` is called once per try (the seam retries a transaction that met a
    lock or a lost connection), so it must start the input again each time. A
    ``BadInput`` raised by the input itself rolls back everything.
    """

    def run() -> ImportCounts:
        now = utcnow()
        arg_max = host_arg_max()
        phases = new_runs = 0
        given_weights: dict[str, tuple[int, int]] = {}
        declared: Declared = {}
        with engine.core() as conn:
            statement = PhaseInsert(conn, now)
            for first_row, chunk in batches(open_rows(), batch):
                _refuse_within(first_row, chunk, arg_max=arg_max)
                new_runs += _insert_runs(conn, {p.run_id for p in chunk}, now)
                _set_weights(conn, _run_weights(first_row, chunk, given_weights))
                _insert_phases(conn, statement, first_row, chunk, now)
                insert_needs(conn, chunk, declared)
                phases += len(chunk)
            # Needs may name phases later in the input: checked once all of it is in.
            check_needs(conn, declared)
        return ImportCounts(phases=phases, new_runs=new_runs)

    try:
        return engine.retrying(run)
    except IntegrityError as err:
        # A concurrent writer inserted the same phase or run while this ran.
        raise BadInput(f"duplicate phase: {engine.clean(err)}") from err
