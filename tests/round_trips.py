"""Round trips to PostgreSQL, counted by libpq itself: every exchange of messages with the
server ends with its ReadyForQuery, whatever was sent (BEGIN, a query, COMMIT, a ping)."""

from __future__ import annotations

import os
import tempfile
from typing import IO, Any

import sqlalchemy as sa
from psycopg import pq


class RoundTrips:
    """libpq's trace of every connection ``engine`` opens from now on. Dispose the engine's
    pool first, so that no connection escapes it (a pool_pre_ping, too, is counted)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.traced: list[tuple[Any, IO[bytes]]] = []
        sa.event.listen(engine, "connect", self._trace)

    def _trace(self, dbapi_connection: Any, _record: Any) -> None:
        trace = tempfile.TemporaryFile()  # noqa: SIM115 (open while the connection lives)
        self.traced.append((dbapi_connection, trace))
        self._start(dbapi_connection, trace)

    @staticmethod
    def _start(dbapi_connection: Any, trace: IO[bytes]) -> None:
        dbapi_connection.pgconn.trace(trace.fileno())
        dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)

    def total(self) -> int:
        """Round trips so far, on every connection (call it while none is in use)."""
        count = 0
        for dbapi_connection, trace in self.traced:
            if not dbapi_connection.closed:
                dbapi_connection.pgconn.untrace()  # flushes what libpq buffered
                self._start(dbapi_connection, trace)
            size = os.fstat(trace.fileno()).st_size
            text = os.pread(trace.fileno(), size, 0).decode()
            count += sum(1 for line in text.splitlines() if "\tReadyForQuery\t" in line)
        return count
