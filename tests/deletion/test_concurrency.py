"""Deletes, prompts and regenerations of one conversation, truly concurrent on PostgreSQL:
each in its own thread and connection, all held at the conversation's row lock until every
one of them waits there, then let go together. The counters stay what the rows say."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.extensions import db
from tests.conftest import keyed_client
from tests.deletion.helpers import assert_counters_agree, branch


@pytest.fixture
def backend() -> str:
    return "postgresql"  # SQLite's write transactions cannot overlap at all


@pytest.fixture
def engine(pooled_app: Flask) -> sa.Engine:
    with pooled_app.app_context():
        return db.engine


@pytest.fixture
def client(pooled_app: Flask) -> FlaskClient:
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    client.get("/conversations")  # the key, cached: its last use is written once, now
    return client


@contextmanager
def conversation_locked(engine: sa.Engine, conversation_id: int) -> Iterator[sa.Connection]:
    """Hold the conversation's row lock, as a delete holds it, until the block ends; what
    the block runs on the connection yielded commits with it."""
    with engine.connect() as holder:
        holder.execute(
            sa.text("SELECT id FROM conversations WHERE id = :id FOR UPDATE"),
            {"id": conversation_id},
        )
        yield holder
        holder.commit()


def wait_for_lock_waiters(engine: sa.Engine, count: int) -> None:
    """Until ``count`` sessions of the database wait on a lock (polled: a state to observe,
    not a time to guess)."""
    deadline = time.monotonic() + 10
    with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as watcher:
        while True:
            waiting = watcher.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            if waiting >= count:
                return
            assert time.monotonic() < deadline, f"{waiting} of {count} waiting on a lock"
            time.sleep(0.005)


def together(
    pooled_app: Flask, engine: sa.Engine, conversation_id: int, requests: list[Callable]
) -> list[Any]:
    """Run each request in its own thread and client, all started at once (a barrier), all
    held at the conversation's lock until each waits there; their responses, in order."""
    start = threading.Barrier(len(requests))
    responses: list[Any] = [None] * len(requests)

    def run(n: int, request: Callable[[FlaskClient], Any]) -> None:
        own = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
        start.wait()
        responses[n] = request(own)

    threads = [
        threading.Thread(target=run, args=(n, request)) for n, request in enumerate(requests)
    ]
    with conversation_locked(engine, conversation_id):
        for thread in threads:
            thread.start()
        wait_for_lock_waiters(engine, len(requests))
    for thread in threads:
        thread.join(30)
    return responses


def delete(conversation_id: int, message_id: int) -> Callable[[FlaskClient], Any]:
    return lambda client: client.delete(f"/conversations/{conversation_id}/messages/{message_id}")


def prompt(conversation_id: int) -> Callable[[FlaskClient], Any]:
    return lambda client: client.post(
        f"/conversations/{conversation_id}/messages", json={"prompt": "d"}
    )


def regenerate(conversation_id: int, message_id: int) -> Callable[[FlaskClient], Any]:
    return lambda client: client.post(
        f"/conversations/{conversation_id}/messages/{message_id}/regenerate", json={}
    )


def test_two_deletes_of_a_branch_at_once_leave_the_count_of_the_rows_left(
    pooled_app, engine, client, fake_llm
):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    a, b, c = branch(client, conversation_id, "a", "b", "c")

    responses = together(
        pooled_app,
        engine,
        conversation_id,
        [delete(conversation_id, b), delete(conversation_id, c)],
    )

    statuses = sorted(response.status_code for response in responses)
    # b's delete first takes c with it (c's is then a 404); c's first leaves b's to do.
    assert statuses in ([204, 204], [204, 404])
    found = assert_counters_agree(pooled_app, conversation_id)
    assert (found["ids"], found["current"], found["message_count"]) == ([a], a, 1)


def test_a_prompt_and_a_regeneration_during_two_deletes_leave_the_counters_true(
    pooled_app, engine, client, fake_llm
):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    _a, b, c = branch(client, conversation_id, "a", "b", "c")

    responses = together(
        pooled_app,
        engine,
        conversation_id,
        [
            delete(conversation_id, b),
            delete(conversation_id, c),
            prompt(conversation_id),  # after c, read before the lock
            regenerate(conversation_id, c),  # after b
        ],
    )

    deleted_b, deleted_c, prompted, regenerated = (r.status_code for r in responses)
    # A delete that finds a new exchange still in progress below it is refused (409).
    assert deleted_b in (204, 409)
    assert deleted_c in (204, 404, 409)
    # A new exchange whose parent went first is refused, naming it (409).
    assert prompted in (201, 409)
    assert regenerated in (201, 409)
    assert 500 not in (deleted_b, deleted_c, prompted, regenerated)
    assert_counters_agree(pooled_app, conversation_id)
    with pooled_app.app_context():
        assert (
            db.session.scalar(sa.text("SELECT count(*) FROM messages WHERE is_success IS NULL"))
            == 0
        )


def test_a_prompt_waits_for_a_delete_holding_the_lock_and_is_409_if_its_parent_went(
    pooled_app, engine, client, fake_llm
):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    a, b = branch(client, conversation_id, "a", "b")
    answered: list[Any] = []
    poster = threading.Thread(target=lambda: answered.append(prompt(conversation_id)(client)))

    with conversation_locked(engine, conversation_id) as deleting:
        # A delete of b, under way: the row gone and the counters moved, not yet committed.
        deleting.execute(sa.text("DELETE FROM messages WHERE id = :id"), {"id": b})
        deleting.execute(
            sa.text(
                "UPDATE conversations SET message_count = 1, current_message_id = :a WHERE id = :id"
            ),
            {"a": a, "id": conversation_id},
        )
        poster.start()
        wait_for_lock_waiters(engine, 1)  # the prompt's INSERT, at the conversation's row
    poster.join(30)

    assert answered[0].status_code == 409
    assert answered[0].json["message"].startswith(f"Exchange {b}, which this one would follow")
    found = assert_counters_agree(pooled_app, conversation_id)
    assert (found["ids"], found["current"]) == ([a], a)


def test_a_prompt_waits_for_a_conversation_delete_and_is_404(pooled_app, engine, client, fake_llm):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    branch(client, conversation_id, "a")
    answered: list[Any] = []
    poster = threading.Thread(target=lambda: answered.append(prompt(conversation_id)(client)))

    with conversation_locked(engine, conversation_id) as deleting:
        deleting.execute(
            sa.text("DELETE FROM conversations WHERE id = :id"), {"id": conversation_id}
        )
        poster.start()
        wait_for_lock_waiters(engine, 1)
    poster.join(30)

    assert answered[0].status_code == 404
    assert answered[0].json["message"] == f"Conversation {conversation_id} does not exist."


def test_a_delete_waiting_behind_a_new_exchange_sees_it_and_refuses(
    pooled_app, engine, client, fake_llm
):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    a, b = branch(client, conversation_id, "a", "b")
    answered: list[Any] = []
    deleter = threading.Thread(target=lambda: answered.append(delete(conversation_id, a)(client)))

    with conversation_locked(engine, conversation_id) as inserting:
        # A new exchange after b, inserted and in progress, as a prompt's INSERT leaves it.
        new = inserting.scalar(
            sa.text(
                "INSERT INTO messages (conversation_id, parent_id, prompt_content,"
                " response_content, usage_estimated, created_at, updated_at)"
                " VALUES (:id, :b, 'c', '', false, now(), now()) RETURNING id"
            ),
            {"id": conversation_id, "b": b},
        )
        inserting.execute(
            sa.text(
                "UPDATE conversations SET message_count = 3, current_message_id = :new"
                " WHERE id = :id"
            ),
            {"new": new, "id": conversation_id},
        )
        deleter.start()
        wait_for_lock_waiters(engine, 1)  # the delete, at the conversation's row
    deleter.join(30)

    assert answered[0].status_code == 409
    assert answered[0].json["message"].startswith(f"Exchange {new} is in progress")
    assert assert_counters_agree(pooled_app, conversation_id)["ids"] == [a, b, new]


def test_deletes_of_one_response_its_item_and_its_exchange_at_once_never_500(
    pooled_app, engine, client, fake_llm
):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    a, b = branch(client, conversation_id, "a", "b")

    responses = together(
        pooled_app,
        engine,
        conversation_id,
        [
            lambda own: own.delete(f"/v1/responses/resp_{b}"),
            lambda own: own.delete(f"/v1/responses/resp_{b}"),
            lambda own: own.delete(f"/v1/conversations/conv_{conversation_id}/items/msg_{b}i0"),
        ],
    )

    statuses = [response.status_code for response in responses]
    # One of the two response deletes makes b a tombstone; after it, b and its items are
    # unknown (404); the item's delete, first, leaves b a response to delete.
    assert sorted(statuses[:2]) == [200, 404]
    assert statuses[2] in (200, 404)
    found = assert_counters_agree(pooled_app, conversation_id)
    assert found["ids"] == [a, b]
    with pooled_app.app_context():
        prompt = db.session.scalar(
            sa.text("SELECT prompt_content FROM messages WHERE id = :b"), {"b": b}
        )
    assert prompt == ""


def test_feedback_waiting_behind_a_response_delete_is_404_and_not_written(
    pooled_app, engine, client, fake_llm
):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    (a,) = branch(client, conversation_id, "a")
    answered: list[Any] = []
    rater = threading.Thread(
        target=lambda: answered.append(
            client.put(
                f"/conversations/{conversation_id}/messages/{a}/feedback",
                json={"rating": 1, "comment": "late"},
            )
        )
    )

    with conversation_locked(engine, conversation_id) as deleting:
        # A response delete under way: a's row locked and made a tombstone, not committed.
        deleting.execute(
            sa.text(
                "UPDATE messages SET deleted_at = now(), prompt_content = '',"
                " response_content = '' WHERE id = :a"
            ),
            {"a": a},
        )
        rater.start()
        wait_for_lock_waiters(engine, 1)  # the feedback's read, at a's row
    rater.join(30)

    assert answered[0].status_code == 404
    with pooled_app.app_context():
        assert db.session.scalar(sa.text("SELECT count(*) FROM feedback")) == 0
