"""The ORM session class: reads outside a unit of work run in autocommit on PostgreSQL.

In a transaction, a read is three round trips (BEGIN, SELECT, ROLLBACK); in autocommit it is
the SELECT alone. A unit of work (app/services/unit_of_work.py) marks the session as writing
before its first statement, and gets a real transaction on the engine itself.
"""

from __future__ import annotations

from typing import Any

from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import Connection, Engine

# Session.info key: set while a unit of work is open on the session.
WRITING = "convstore_writing"

_READER = "convstore_autocommit_engine"


def _autocommit(engine: Engine) -> Engine:
    """``engine`` with its connections in autocommit (the same pool), made once per engine
    and kept on it: it lives and goes with its engine."""
    reader = engine.__dict__.get(_READER)
    if reader is None:
        reader = engine.__dict__[_READER] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return reader


class Session(FlaskSession):
    def get_bind(self, *args: Any, **kwargs: Any) -> Engine | Connection:
        bind = super().get_bind(*args, **kwargs)
        # SQLite's reads are in-process; a Connection is a test's or a caller's own.
        if (
            isinstance(bind, Engine)
            and bind.dialect.name == "postgresql"
            and not self.info.get(WRITING)
        ):
            return _autocommit(bind)
        return bind
