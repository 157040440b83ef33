"""The connection pool serves waiting requests in the order they asked (PostgreSQL's pool).

Under load a request must not wait again and again while newer ones are served: each
connection put back goes to the longest waiter, not to whoever asks next.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from app.extensions import db
from tests.conftest import disposing, make_app

WAITERS = 4


def _waiting(queue: Any) -> int:
    """Checkouts blocked in the pool's queue (SQLAlchemy's stock queue counts its condition's)."""
    if hasattr(queue, "waiting"):
        return queue.waiting()
    return len(queue.not_empty._waiters)


@pytest.fixture
def pool(postgres) -> Iterator[Any]:
    """The app's pool on PostgreSQL, one connection big."""
    app = make_app(postgres.create_database(), DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)
    with disposing(app), app.app_context():
        yield db.engine.pool


def test_a_returned_connection_goes_to_the_longest_waiter_not_to_a_newcomer(pool):
    held = pool.connect()
    served: list[object] = []

    def checkout(name: object) -> None:
        connection = pool.connect()
        served.append(name)
        connection.close()

    threads = []
    for number in range(WAITERS):
        thread = threading.Thread(target=checkout, args=(number,))
        thread.start()
        threads.append(thread)
        while _waiting(pool._pool) < number + 1:  # each queues before the next arrives
            threading.Event().wait(0.001)

    # A newcomer asks the moment the connection comes back, before any woken waiter can run.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    try:
        held.close()
        checkout("newcomer")
    finally:
        sys.setswitchinterval(interval)
    for thread in threads:
        thread.join(timeout=10)

    assert served == [0, 1, 2, 3, "newcomer"]


def test_a_waiter_that_times_out_leaves_the_queue(postgres):
    app = make_app(
        postgres.create_database(), DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=0.05
    )
    with disposing(app), app.app_context():
        pool = db.engine.pool
        held = pool.connect()
        with pytest.raises(Exception, match="QueuePool limit"):
            pool.connect()
        assert _waiting(pool._pool) == 0
        held.close()
        pool.connect().close()  # the connection is served again, to nobody stale
        assert pool.checkedin() == 1
