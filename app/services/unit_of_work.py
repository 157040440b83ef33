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
