"""The transaction boundary every write use case goes through."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from app.database import WRITE_TRANSACTION
from app.extensions import WRITING, db


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """Yield the request's session; commit once on success, roll back on any exception."""
    session = db.session()  # the scoped session's Session for this app context
    outermost = not session.info.get(WRITING)
    if outermost:
        if session.in_transaction():
            # The reads before it ran in autocommit (app/extensions.py): ending their
            # transaction costs no round trip and, unlike a rollback, expires nothing.
            session.commit()
        session.info[WRITING] = True
        session.connection(execution_options={WRITE_TRANSACTION: True})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        if outermost:
            session.info.pop(WRITING, None)


@contextmanager
def one_statement() -> Iterator[Session]:
    """Yield the session for a write of exactly one statement (one INSERT): PostgreSQL
    commits it by itself in autocommit, one round trip where a transaction takes three
    (BEGIN, the statement, COMMIT). Elsewhere it is a unit of work."""
    session = db.session()
    if session.info.get(WRITING) or session.get_bind().dialect.name != "postgresql":
        with unit_of_work() as session:
            yield session
        return
    try:
        yield session
        session.commit()  # flushes the one statement, which commits itself
    except BaseException:
        session.rollback()
        raise


@contextmanager
def read_only() -> Iterator[Session]:
    """Yield the session for reads; end the transaction they began (without writing), so
    no lock or connection is held afterwards and a later unit of work begins its own."""
    session = db.session()
    began = not session.in_transaction()
    try:
        yield session
    finally:
        if began:
            session.rollback()
