"""Reads of a session's attempts for its report and the read commands, in bounded memory.

A session may hold 10^5 attempts or more, so nothing here returns them all at once:
``pages`` walks them by attempt id (keyset paging, one short transaction per page),
and what a report says about all of them (counts by class, duration statistics) is
computed by the database. The other reads are bounded by what they are asked for: the
attempts of one phase, a page of a table, the attempts a stored report left running.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, func, or_, select
from sqlalchemy.sql import Select

from batchdrain.db.attempts import _attempt_record
from batchdrain.db.engine import DatabaseEngine
from batchdrain.db.intervals import seconds_of
from batchdrain.db.models import AttemptRow
from batchdrain.db.records import AttemptRecord, AttemptTally, DurationStats

PAGE = 1000
_COLUMNS = tuple(AttemptRow.__table__.columns)


def _of_session(session_id: str) -> ColumnElement[bool]:
    """A session's attempts: those it launched and those it adopted from another."""
    return or_(AttemptRow.session_id == session_id, AttemptRow.adopted_by == session_id)


def _own(session_id: str) -> ColumnElement[bool]:
    """The attempts the session launched, as a filter the session index cannot serve.

    Walking a page in id order is cheapest along the primary key from the last id
    read (the session's attempts are mostly contiguous); served by the session index
    instead, SQLite read and sorted every remaining attempt of the session for each
    page (0.12 s a page at 10,000 attempts, growing with the session). ``coalesce``
    keeps the planners off that index.
    """
    return func.coalesce(AttemptRow.session_id, "") == session_id


# The report's duration measures, as SQL: ``report.attempt_duration`` (the
# container's seconds, else the attempt's), the attempt's seconds, what the
# controller added around the container (both known), and the wait for Kueue's
# admission (attempts of a queue only).
_MEASURES: dict[str, ColumnElement[Any]] = {
    "container_seconds": func.coalesce(AttemptRow.container_seconds, AttemptRow.total_seconds),
    "total_seconds": AttemptRow.__table__.c.total_seconds,
    "controller_overhead_seconds": case(
        (and_(AttemptRow.total_seconds.is_not(None), AttemptRow.container_seconds.is_not(None)),
         AttemptRow.total_seconds - AttemptRow.container_seconds)),
    "queue_wait_seconds": seconds_of(AttemptRow.__table__.c.created_at, AttemptRow.__table__.c.admitted_at),
}


class History:
    def __init__(self, engine: DatabaseEngine) -> None:
        self._engine = engine

    def _records(self, query: Select[Any]) -> list[AttemptRecord]:
        def run() -> list[AttemptRecord]:
            with self._engine.core() as conn:
                return [_attempt_record(r) for r in conn.execute(query)]

        return self._engine.retrying(run)

    def pages(self, session_id: str, *, page: int = PAGE) -> Iterator[AttemptRecord]:
        """Every attempt of the session in id order, ``page`` rows per transaction.

        Keyset paging (``id > last``), not OFFSET: each page costs the same, and a
        transaction is never held open while the caller works on what it got. The
        session's own attempts and those it adopted (older ids, found by their index)
        are two such walks, merged.
        """
        adopted = self._walk(and_(AttemptRow.adopted_by == session_id, AttemptRow.session_id != session_id),
                             start=0, page=page)
        own = self._walk(_own(session_id), start=self._first_id(session_id), page=page)
        return heapq.merge(adopted, own, key=lambda a: a.attempt_pk)

    def _first_id(self, session_id: str) -> int:
        def run() -> int:
            with self._engine.core() as conn:
                first = conn.execute(select(func.min(AttemptRow.id)).where(AttemptRow.session_id == session_id))
                return int(first.scalar_one() or 1) - 1

        return self._engine.retrying(run)

    def _walk(self, where: ColumnElement[bool], *, start: int, page: int) -> Iterator[AttemptRecord]:
        last = start
        while True:
            rows = self._records(select(*_COLUMNS).where(where, AttemptRow.id > last)
                                 .order_by(AttemptRow.id).limit(page))
            yield from rows
            if len(rows) < page:
                return
            last = rows[-1].attempt_pk

    def of_phase(self, session_id: str, *, phase_id: str, run_id: str | None = None) -> list[AttemptRecord]:
        """The attempts of one phase in a session (served by the session/run/phase index)."""
        query = select(*_COLUMNS).where(_of_session(session_id), AttemptRow.phase_id == phase_id)
        if run_id is not None:
            query = query.where(AttemptRow.run_id == run_id)
        return self._records(query.order_by(AttemptRow.id))

    def running(self, session_id: str) -> list[AttemptRecord]:
        """The session's attempts still running (at most its parallelism, plus adopted ones)."""
        return self._records(select(*_COLUMNS).where(_of_session(session_id), AttemptRow.status == "running")
                             .order_by(AttemptRow.id))

    def by_keys(self, keys: Sequence[tuple[str, str, int]]) -> list[AttemptRecord]:
        """The attempts named by (run, phase, attempt): a stored report's list, bounded by its length."""
        if not keys:
            return []
        match = or_(false(), *(and_(AttemptRow.run_id == r, AttemptRow.phase_id == p, AttemptRow.attempt == a)
                               for r, p, a in keys))
        return self._records(select(*_COLUMNS).where(match).order_by(AttemptRow.id))

    def table(self, session_id: str, *, limit: int) -> list[AttemptRecord]:
        """What ``sessions show`` lists: attempts that did not succeed first, then the latest."""
        succeeded = case((AttemptRow.failure_class == "succeeded", 1), else_=0)
        return self._records(select(*_COLUMNS).where(_of_session(session_id))
                             .order_by(succeeded, AttemptRow.id.desc()).limit(limit))

    def tally(self, session_id: str, *, durations: bool = True) -> AttemptTally:
        """Counts by class and (unless not asked for) the three duration measures' statistics."""
        def run() -> AttemptTally:
            with self._engine.core() as conn:
                by_class: dict[str, int] = {}
                finished = 0
                rows = conn.execute(select(AttemptRow.status, AttemptRow.failure_class, func.count())
                                    .where(_of_session(session_id))
                                    .group_by(AttemptRow.status, AttemptRow.failure_class))
                for status, failure_class, count in rows:
                    name = failure_class or "unfinished"
                    by_class[name] = by_class.get(name, 0) + count
                    finished += count if status == "finished" else 0
                stats = ({name: _stats(conn, session_id, measure) for name, measure in _MEASURES.items()}
                         if durations else {})
                return AttemptTally(by_class=dict(sorted(by_class.items())), finished=finished,
                                    durations=stats)

        return self._engine.retrying(run)


def _stats(conn: Any, session_id: str, measure: ColumnElement[Any]) -> DurationStats:
    """count/min/max/mean in one statement; median and p95 by nearest rank from one sorted read.

    The same definitions as ``report.duration_stats`` (which works on a list): the p95
    is the ceil(0.95 n)-th smallest value, so always an observed one; the median of an
    even count is the mean of the two middle values. The sorted values are read as
    they come and only the wanted ranks are kept: three OFFSET queries sorted the
    session three times.
    """
    where = and_(_of_session(session_id), measure.is_not(None))
    count, low, high, mean = conn.execute(
        select(func.count(), func.min(measure), func.max(measure), func.avg(measure)).where(where)).one()
    if not count:
        return DurationStats()
    p95_rank = max(1, math.ceil(0.95 * count)) - 1
    middle = (count // 2,) if count % 2 else (count // 2 - 1, count // 2)
    wanted = {*middle, p95_rank}
    found: dict[int, float] = {}
    for index, (value,) in enumerate(conn.execute(select(measure).where(where).order_by(measure))):
        if index in wanted:
            found[index] = float(value)
            if len(found) == len(wanted):
                break
    median = sum(found[i] for i in middle) / len(middle)
    return DurationStats(count=count, min=round(float(low), 3), median=round(median, 3),
                         mean=round(float(mean), 3), p95=round(found[p95_rank], 3), max=round(float(high), 3))
