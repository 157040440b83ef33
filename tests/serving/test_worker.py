"""The gevent worker gunicorn.conf.py runs: keep-alive connections take turns, and new
connections spread over the workers by how many each holds. Real gunicorn."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from app.web import worker
from app.web.worker import ACCEPT_DEFERRAL_SECONDS, ACCEPT_MARGIN, ConnectionCounts
from tests.procfile import WebProcess, deployment_env, release

CONNECTIONS = 8


@pytest.fixture(scope="module")
def one_worker(database_factory, llm_server, tmp_path_factory) -> Iterator[WebProcess]:
    """The service with a single worker, writing its request lines (LOG_LEVEL=INFO)."""
    env = deployment_env(
        database_factory("sqlite"), llm_server.base_url, WEB_CONCURRENCY="1", LOG_LEVEL="INFO"
    )
    release(env)
    with WebProcess(env, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log") as web:
        yield web


def request_ids_logged(web: WebProcess, count: int, timeout: float = 30.0) -> list[str]:
    """The request ids of the first ``count`` requests to /healthz the log shows, in order."""
    deadline = time.monotonic() + timeout
    while True:
        ids = []
        for line in web.log_path.read_text().splitlines():
            if line.startswith("{") and '"route": "/healthz"' in line:
                ids.append(json.loads(line)["request_id"])
        if len(ids) >= count or time.monotonic() > deadline:
            return ids[:count]
        time.sleep(0.05)


def healthz(request_id: str) -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-ID: {request_id}\r\n\r\n".encode()


def read_responses(sock: socket.socket, count: int) -> bytes:
    received = b""
    while received.count(b'"status":"ok"') < count:
        piece = sock.recv(65536)
        assert piece, f"connection closed after {received!r}"
        received += piece
    return received


def test_every_connection_with_a_request_waiting_is_served_before_any_is_served_again(
    one_worker,
):
    # Arrange: the worker stopped while each connection sends two requests back to back,
    # so that every first and second request is waiting when it resumes.
    (pid,) = one_worker.workers()
    os.kill(pid, signal.SIGSTOP)
    try:
        connections = [
            socket.create_connection(("127.0.0.1", one_worker.port), timeout=30)
            for _ in range(CONNECTIONS)
        ]
        for n, sock in enumerate(connections):
            sock.sendall(b"".join(healthz(f"c{n}-r{turn}") for turn in (1, 2)))
    finally:
        os.kill(pid, signal.SIGCONT)

    # Act
    for sock in connections:
        assert read_responses(sock, 2).count(b"HTTP/1.1 200 OK") == 2
        sock.close()

    # Assert: gunicorn's own worker serves each connection's two requests in a row.
    order = request_ids_logged(one_worker, 2 * CONNECTIONS)
    assert order == [f"c{n}-r1" for n in range(CONNECTIONS)] + [
        f"c{n}-r2" for n in range(CONNECTIONS)
    ]


def test_a_worker_takes_new_connections_while_it_holds_no_more_than_its_siblings_and_a_margin():
    assert worker.should_accept(5, [], deferred_for=0.0)
    assert worker.should_accept(3 + ACCEPT_MARGIN, [3, 7], deferred_for=0.0)
    assert not worker.should_accept(4 + ACCEPT_MARGIN, [3, 7], deferred_for=0.0)


def test_a_worker_ahead_takes_the_connection_once_no_sibling_has_for_the_deferral():
    ahead = 10 + ACCEPT_MARGIN
    assert not worker.should_accept(ahead, [0], deferred_for=ACCEPT_DEFERRAL_SECONDS / 2)
    assert worker.should_accept(ahead, [0], deferred_for=ACCEPT_DEFERRAL_SECONDS)


@contextmanager
def sibling(counts: ConnectionCounts, opened: int) -> Iterator[int]:
    """A forked process that claims a slot as a worker would and holds ``opened``
    connections until the block ends; yields its slot."""
    ready_read, ready_write = os.pipe()
    done_read, done_write = os.pipe()
    child = os.fork()
    if child == 0:
        counts.claim()
        for _ in range(opened):
            counts.opened()
        os.write(ready_write, str(counts.slot).encode())
        os.read(done_read, 1)
        os._exit(0)
    try:
        yield int(os.read(ready_read, 16))
    finally:
        os.write(done_write, b"x")
        os.waitpid(child, 0)
        for fd in (ready_read, ready_write, done_read, done_write):
            os.close(fd)


def test_connection_counts_are_shared_with_live_siblings_and_a_dead_ones_slot_is_reused():
    counts = ConnectionCounts(slots=4)
    counts.claim()
    counts.opened()

    with sibling(counts, opened=3) as slot:
        assert slot == 1
        assert (counts.slot, counts.mine(), counts.siblings()) == (0, 1, [3])
    assert counts.siblings() == []

    with sibling(counts, opened=0) as slot:
        assert slot == 1
        assert counts.siblings() == [0]
