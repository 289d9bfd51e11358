"""Seconds between two timestamp columns, as SQL both SQLite and Postgres compute.

SQLAlchemy has no portable interval arithmetic: Postgres subtracts timestamps into an
interval (its epoch is the seconds, exact), SQLite stores them as text
(``YYYY-MM-DD HH:MM:SS.ffffff``, SQLAlchemy's format). ``julianday`` reads that as
days in a float, good to ~50 microseconds only, so the whole seconds and the fraction
are subtracted apart and the sum rounded to the microsecond: the same value Python's
``timedelta.total_seconds()`` gives, which the report's in-memory tally compares with.
One construct, compiled per dialect, so a query stays one query on either database.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement


class SecondsBetween(FunctionElement[float]):
    """``seconds_between(start, end)``: end - start in seconds; NULL if either is NULL."""

    type = Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(SecondsBetween)
def _postgres(element: SecondsBetween, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS DOUBLE PRECISION)"


@compiles(SecondsBetween, "sqlite")
def _sqlite(element: SecondsBetween, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(arg, **kw) for arg in element.clauses)
    whole = f"(CAST(strftime('%s', {end}) AS INTEGER) - CAST(strftime('%s', {start}) AS INTEGER))"
    fraction = f"(CAST(substr({end}, 20) AS REAL) - CAST(substr({start}, 20) AS REAL))"
    return f"ROUND({whole} + {fraction}, 6)"


def seconds_of(start: ColumnElement[Any], end: ColumnElement[Any]) -> ColumnElement[float]:
    return SecondsBetween(start, end)
