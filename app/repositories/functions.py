"""SQL functions the two engines spell differently, as SQLAlchemy constructs."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Date, Integer
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class utc_day(FunctionElement[date]):  # lower case: it reads as the SQL function it is
    """The UTC calendar day of a timestamp column."""

    type = Date()
    inherit_cache = True


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"CAST(timezone('UTC', {compiler.process(element.clauses, **kw)}) AS DATE)"


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: Any, **kw: Any) -> str:
    # Stored without an offset, as UTC: date() reads the calendar day, as Date stores it.
    return f"date({compiler.process(element.clauses, **kw)})"


# What an INTEGER column holds: the durations are clamped to it, never cast past it.
MS_MAX = 2**31 - 1


class ms_between(FunctionElement[int]):
    """Whole milliseconds from the first timestamp to the second, clamped to 0..MS_MAX: any
    two timestamps (a row's may be decades apart, or in the wrong order) give a storable
    value, where an overflowing cast would fail the whole statement and every row in it."""

    type = Integer()
    inherit_cache = True


@compiles(ms_between, "postgresql")
def _ms_between_postgresql(element: ms_between, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    ms = f"ROUND(EXTRACT(EPOCH FROM ({end} - {start})) * 1000)"
    return f"CAST(LEAST(GREATEST({ms}, 0), {MS_MAX}) AS INTEGER)"


@compiles(ms_between, "sqlite")
def _ms_between_sqlite(element: ms_between, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    ms = f"ROUND((julianday({end}) - julianday({start})) * 86400000)"
    # Scalar MIN and MAX: NULL when any argument is.
    return f"CAST(MIN(MAX({ms}, 0), {MS_MAX}) AS INTEGER)"
