"""The transaction boundary every write use case goes through."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from app.database import WRITE_TRANSACTION
from app.extensions import db


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """Yield the request's session; commit once on success, roll back on any exception."""
    session = db.session()  # the scoped session's Session for this app context
    if not session.in_transaction():
        session.connection(execution_options={WRITE_TRANSACTION: True})
    try:
        yield session
        session.commit()
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
