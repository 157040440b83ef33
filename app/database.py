"""Per-engine settings SQLAlchemy can't express in a URL."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import psycopg
from flask import Flask
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from sqlalchemy.util.queue import Empty, Full, Queue

from app.extensions import db
from app.web.sockets import readable_now

# Execution option set by a unit of work that will write. SQLite then begins with
# BEGIN IMMEDIATE: a deferred transaction that reads and then writes cannot wait for the
# write lock (the upgrade fails at once with "database is locked" under concurrency),
# whereas BEGIN IMMEDIATE waits up to the busy timeout. Other databases ignore it.
WRITE_TRANSACTION = "convstore_write_transaction"


class _Waiter:
    __slots__ = ("entry", "ready")

    def __init__(self, ready: threading.Condition) -> None:
        self.ready = ready
        self.entry: ConnectionPoolEntry | None = None


class FairQueue(Queue[ConnectionPoolEntry]):
    """SQLAlchemy's pool queue, first come first served: a connection put back is handed to
    the longest waiter, never left for whoever asks next.

    The stock queue notifies a waiter and lets it race for the connection; under load the
    woken greenlet usually loses to one that just arrived, waits again, and can lose until
    its pool time-out.
    """

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self._waiters: deque[_Waiter] = deque()

    def get(self, block: bool = True, timeout: float | None = None) -> ConnectionPoolEntry:
        with self.mutex:
            if self.queue:  # never while anyone waits: put hands connections over
                return self._get()
            if not block:
                raise Empty
            waiter = _Waiter(threading.Condition(self.mutex))
            self._waiters.append(waiter)
            deadline = None if timeout is None else time.monotonic() + timeout
            while waiter.entry is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self._waiters.remove(waiter)
                    raise Empty
                waiter.ready.wait(remaining)
            return waiter.entry

    def put(
        self, item: ConnectionPoolEntry, block: bool = True, timeout: float | None = None
    ) -> None:
        with self.mutex:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.entry = item
                waiter.ready.notify()
                return
            if self._full():  # the pool puts without blocking; its overflow is then closed
                raise Full
            self._put(item)

    def waiting(self) -> int:
        """How many checkouts wait for a connection now."""
        with self.mutex:
            return len(self._waiters)


class FairQueuePool(QueuePool):
    """A QueuePool whose waiters get connections in the order they asked (FairQueue)."""

    _queue_class = FairQueue
    # Log as SQLAlchemy's pool does (its namespace, its levels), not as the app's module.
    _sqla_logger_namespace = "sqlalchemy.pool.impl.QueuePool"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (below): pysqlite's own transaction handling breaks
    # SAVEPOINT and defers BEGIN in ways that surprise.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # SQLite ignores foreign keys, hence ON DELETE CASCADE, unless asked per connection.
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets readers proceed while a writer commits: needed with several workers.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Deleted rows' bytes are zeroed, not left in free pages for anyone with the file to read.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    writes = connection.get_execution_options().get(WRITE_TRANSACTION)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def _drop_if_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection the server has hung up on, without a round trip.

    An idle connection has nothing to read unless the server ended it (a restart, an idle
    time-out, a terminated backend), so a zero-timeout poll of its socket replaces
    pool_pre_ping's SELECT, a round trip on every checkout. DisconnectionError makes the
    pool discard it and connect anew.
    """
    try:
        fd = dbapi_connection.fileno()
    except psycopg.Error as error:  # closed on our side already
        raise DisconnectionError(str(error)) from error
    if readable_now(fd):
        raise DisconnectionError("the server ended this connection while it was idle")


def _without_row_values(context: Any) -> None:
    """Keep row values out of a PostgreSQL error's message (and so out of every log).

    ``hide_parameters`` keeps a failed statement's parameters out of SQLAlchemy's message,
    but the server's own DETAIL and CONTEXT lines repeat them ("Failing row contains (...)",
    "Key (...)=(...)"): prompts and answers. The error keeps its type and its diagnostics
    (``orig.diag``); only its text is cut to the server's primary message.
    """
    orig = context.original_exception
    if not isinstance(orig, psycopg.Error) or orig.diag.message_primary is None:
        return
    primary = orig.diag.message_primary
    orig.args = (primary,)
    wrapped = context.sqlalchemy_exception
    if wrapped is not None:
        wrapped.args = (f"({type(orig).__module__}.{type(orig).__name__}) {primary}",)


# psycopg turns a statement's %(name)s placeholders into $n with a regex unless the statement
# is in its LRU cache, which skips statements over 4 KB: a stream's save (its UPDATE and the
# usage rollup's histogram buckets) is longer, and would be parsed again on every stream.
# This service's statements are a fixed, prebuilt set, so longer ones are worth caching; the
# cache's 128 entries bound its memory.
STATEMENT_CACHE_LENGTH = 32_768


def _cache_long_statements() -> None:
    from psycopg import _queries  # its cache's bound is not public API

    bound = getattr(_queries, "MAX_CACHED_STATEMENT_LENGTH", 0)
    _queries.MAX_CACHED_STATEMENT_LENGTH = max(bound, STATEMENT_CACHE_LENGTH)


def configure_engine(engine: Engine) -> None:
    """Install the connection hooks ``engine``'s dialect needs."""
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    elif engine.dialect.driver == "psycopg":
        event.listen(engine, "checkout", _drop_if_closed_by_server)
        event.listen(engine, "handle_error", _without_row_values)
        _cache_long_statements()


def configure_engines(app: Flask) -> None:
    """Configure every engine Flask-SQLAlchemy made for ``app``."""
    with app.app_context():
        for engine in db.engines.values():
            configure_engine(engine)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` says the database is unreachable or saturated: worth another try."""
    if isinstance(error, OperationalError | InterfaceError | PoolTimeout | DisconnectionError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated
