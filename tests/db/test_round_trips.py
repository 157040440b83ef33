"""Round trips to PostgreSQL per request, counted by libpq's own trace (tests/round_trips.py).

A read is one statement in autocommit: no pre-ping, no BEGIN, no ROLLBACK. A write is one
transaction: BEGIN, its statement, COMMIT. The key is in the process's cache (warmed first).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from psycopg import _queries as psycopg_queries

from app.extensions import db
from app.models import Message
from tests.conftest import keyed_client
from tests.round_trips import RoundTrips


@pytest.fixture
def backend() -> str:
    return "postgresql"  # SQLite runs in the process: it has no round trips


@pytest.fixture
def engine(pooled_app: Flask) -> sa.Engine:
    with pooled_app.app_context():
        return db.engine


@pytest.fixture
def trips(engine: sa.Engine) -> RoundTrips:
    engine.dispose()  # every connection from now on is traced from its first byte
    return RoundTrips(engine)


@pytest.fixture
def client(pooled_app: Flask) -> FlaskClient:
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    # The key's lookup, cached from now on; closing the response writes its last use (once
    # per cache lifetime, not per request).
    client.get("/conversations", buffered=True)
    return client


# The API's success status for each method these tests send.
SUCCESS = {"get": 200, "post": 201, "put": 202, "delete": 204}


def round_trips(trips: RoundTrips, client: FlaskClient, method: str, path: str, **kwargs) -> int:
    before = trips.total()
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == SUCCESS[method], response.json
    return trips.total() - before


READS = [
    ("/conversations", 1),
    ("/conversations/{id}", 1),
    ("/conversations/{id}/messages", 2),
    # What the statistics expect of the query, then the page (see app/repositories/search.py).
    ("/search?q=hello", 2),
    ("/usage", 1),
]


@pytest.mark.parametrize(("path", "expected"), READS)
def test_a_read_is_at_most_two_round_trips(trips, client, path, expected):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]

    assert round_trips(trips, client, "get", path.format(id=conversation_id)) == expected


WRITES = [
    ("post", "/conversations", {"json": {"title": "t"}}),
    ("put", "/conversations/{id}", {"json": {"title": "u", "model_type": "m"}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), WRITES)
def test_a_write_is_one_transaction_of_three_round_trips(trips, client, method, path, kwargs):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]

    assert round_trips(trips, client, method, path.format(id=conversation_id), **kwargs) == 3


def test_a_delete_is_one_transaction_of_six_round_trips(trips, client):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]

    # BEGIN; lock the conversation, look for an exchange in progress, carry the usage,
    # delete; COMMIT (docs/deletion.md).
    assert round_trips(trips, client, "delete", f"/conversations/{conversation_id}") == 6


def test_a_read_after_the_server_dropped_the_pooled_connection_is_answered(engine, client, trips):
    client.get("/conversations")  # one connection in the pool, idle
    with psycopg.connect(
        engine.url.set(drivername="postgresql").render_as_string(False), autocommit=True
    ) as admin:
        others = (
            " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        admin.execute("SELECT pg_terminate_backend(pid)" + others)
        while admin.execute("SELECT count(*)" + others).fetchone() != (0,):
            time.sleep(0.01)  # the backend exits a moment after its signal
    connections = len(trips.traced)

    response = client.get("/conversations")

    assert response.status_code == 200
    assert len(trips.traced) == connections + 1  # the dead one was replaced at checkout


def checkins_during(engine: sa.Engine, trips: RoundTrips, request: Callable[[], Any]) -> list[int]:
    """The round trips made so far at each return of a connection to the pool."""
    before = trips.total()
    at_each_checkin: list[int] = []

    def checked_in(*_args: object) -> None:
        at_each_checkin.append(trips.total() - before)

    sa.event.listen(engine.pool, "checkin", checked_in)
    try:
        response = request()
    finally:
        sa.event.remove(engine.pool, "checkin", checked_in)
    assert response.status_code == 200
    return at_each_checkin


def test_a_streamed_exchange_is_two_round_trips_before_the_llm_and_one_to_save(
    trips, client, engine
):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]

    checkins = checkins_during(
        engine,
        trips,
        lambda: client.get(
            "/text/generate/stream",
            query_string={"prompt": "Say hello", "conversation_id": conversation_id},
            buffered=True,
        ),
    )

    # Before the LLM is called, the conversation and its history in one read, then the
    # prompt's INSERT, which commits by itself; after the answer, one statement ends the
    # exchange and folds it into its usage rollup.
    assert checkins == [1 + 1, 1 + 1 + 1]


def test_a_streams_statements_are_parsed_by_psycopg_once_not_per_stream(
    client, engine, monkeypatch
):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    query = {"prompt": "Say hello", "conversation_id": conversation_id}
    parsed: list[bytes] = []
    split_query = psycopg_queries._split_query

    def counting(query: bytes, *args: Any, **kwargs: Any) -> Any:
        parsed.append(query)
        return split_query(query, *args, **kwargs)

    client.get("/text/generate/stream", query_string=query, buffered=True)  # parsed here
    monkeypatch.setattr(psycopg_queries, "_split_query", counting)

    response = client.get("/text/generate/stream", query_string=query, buffered=True)

    # The save included (14 KB with the usage rollup's buckets): past psycopg's default
    # 4 KB bound, it was parsed again on every stream.
    assert response.status_code == 200
    assert parsed == []


def test_an_edit_in_a_branched_conversation_costs_what_a_new_prompt_does(trips, client, engine):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    url = f"/conversations/{conversation_id}/messages"
    first = client.post(url, json={"prompt": "one"}).json
    second = client.post(url, json={"prompt": "two"}).json
    client.post(f"{url}/{second['id']}/regenerate", json={})

    checkins = checkins_during(
        engine,
        trips,
        lambda: client.post(
            url,
            json={"prompt": "two, edited", "parent_id": first["id"], "stream": True},
            buffered=True,
        ),
    )

    # The branch's history (one recursive statement), then the INSERT that also moves the
    # conversation's current exchange; one statement to save.
    assert checkins == [1 + 1, 1 + 1 + 1]
    # Its current branch is two statements, as a flat list was.
    assert round_trips(trips, client, "get", url) == 2


def test_a_v1_stream_into_a_conversation_is_two_round_trips_before_the_llm_and_one_to_save(
    trips, client, engine
):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}

    checkins = checkins_during(
        engine,
        trips,
        lambda: client.post(
            "/v1/chat/completions",
            json=body,
            headers={"X-Conversation-Id": str(conversation_id)},
            buffered=True,
        ),
    )

    # The conversation read, the prompt's INSERT; then one statement ends the exchange,
    # folds it into its rollup and moves the thread's fingerprint.
    assert checkins == [1 + 1, 1 + 1 + 1]


def _ending_columns(engine: sa.Engine, send: Callable[[], Any]) -> list[int]:
    """The columns each exchange-ending statement brought back during ``send()``."""
    widths: list[int] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("WITH ended AS"):
            widths.append(len(cursor.description))

    sa.event.listen(engine, "after_cursor_execute", record)
    try:
        response = send()
    finally:
        sa.event.remove(engine, "after_cursor_execute", record)
    assert response.status_code == 200
    return widths


def test_text_and_v1_streams_read_back_only_the_ended_exchanges_id(client, engine):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}

    text = _ending_columns(
        engine,
        lambda: client.get(
            "/text/generate/stream",
            query_string={"prompt": "Say hello", "conversation_id": conversation_id},
            buffered=True,
        ),
    )
    v1 = _ending_columns(
        engine,
        lambda: client.post(
            "/v1/chat/completions",
            json=body,
            headers={"X-Conversation-Id": str(conversation_id)},
            buffered=True,
        ),
    )
    sse = _ending_columns(
        engine,
        lambda: client.post(
            f"/conversations/{conversation_id}/messages",
            json={"prompt": "Say hello", "stream": True},
            buffered=True,
        ),
    )

    # Neither shows the saved row; the SSE stream's done event is the whole of it.
    assert text == [1]
    assert v1 == [1]
    assert sse == [len(Message.__table__.columns)]


def test_a_pooled_connection_closed_on_our_side_is_replaced_at_checkout(engine, client, trips):
    client.get("/conversations")  # one connection in the pool, idle
    dbapi_connection, _trace = trips.traced[-1]
    dbapi_connection.close()
    connections = len(trips.traced)

    response = client.get("/conversations")

    assert response.status_code == 200
    assert len(trips.traced) == connections + 1


def test_a_previous_response_id_chain_of_50_turns_builds_its_context_in_one_statement(
    trips, client, engine
):
    previous = None
    for turn in range(50):
        body = {"model": "m", "input": f"turn {turn}", "previous_response_id": previous}
        previous = client.post("/v1/responses", json=body).json["id"]
    body = {"model": "m", "input": "next", "previous_response_id": previous, "stream": True}

    checkins = checkins_during(
        engine, trips, lambda: client.post("/v1/responses", json=body, buffered=True)
    )

    # The chain, all 50 turns (one recursive statement), then the INSERT that also moves
    # the conversation's current exchange; one statement to save.
    assert checkins == [1 + 1, 1 + 1 + 1]
