"""Feedback on an exchange: PUT sets or replaces it, DELETE removes it, MessageOut shows it."""

from __future__ import annotations

import pytest

from app.models import Conversation, Feedback, Message


@pytest.fixture
def exchange(database, owner_id) -> tuple[int, int]:
    """(conversation id, message id) of one of alice's exchanges, ended."""
    (conversation_id,) = database.add(Conversation(title="t", model_type="m", owner_id=owner_id))
    (message_id,) = database.add(
        Message(
            conversation_id=conversation_id,
            prompt_content="q",
            response_content="a",
            is_success=True,
        )
    )
    return conversation_id, message_id


def url(conversation_id: int, message_id: int) -> str:
    return f"/conversations/{conversation_id}/messages/{message_id}/feedback"


def test_put_sets_feedback_and_the_message_shows_it(client, database, exchange):
    response = client.put(url(*exchange), json={"rating": 1, "comment": "spot on"})

    assert response.status_code == 200
    assert response.json["message_id"] == exchange[1]
    assert (response.json["rating"], response.json["comment"]) == (1, "spot on")
    row = database.get(Feedback, exchange[1])
    assert (row.rating, row.comment) == (1, "spot on")
    (message,) = client.get(f"/conversations/{exchange[0]}/messages").json
    assert message["feedback"] == response.json


def test_put_again_replaces_it(client, database, exchange):
    first = client.put(url(*exchange), json={"rating": 1, "comment": "good"}).json

    response = client.put(url(*exchange), json={"rating": -1})

    assert response.status_code == 200
    assert (response.json["rating"], response.json["comment"]) == (-1, None)
    assert response.json["created_at"] == first["created_at"]
    assert database.scalar("SELECT count(*) FROM feedback") == 1
    assert database.get(Feedback, exchange[1]).rating == -1


def test_delete_removes_it(client, database, exchange):
    client.put(url(*exchange), json={"rating": 1})

    response = client.delete(url(*exchange))

    assert response.status_code == 204
    assert database.scalar("SELECT count(*) FROM feedback") == 0
    (message,) = client.get(f"/conversations/{exchange[0]}/messages").json
    assert message["feedback"] is None


def test_delete_without_feedback_is_204(client, exchange):
    assert client.delete(url(*exchange)).status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rating": 0}, "rating"),
        ({"rating": 2}, "rating"),
        ({"rating": "1"}, "rating"),
        ({"rating": 1.0}, "rating"),
        ({}, "rating"),
        ({"rating": 1, "comment": "x" * 2001}, "comment"),
        ({"rating": 1, "comment": "a\u0000"}, "comment"),
        ({"rating": 1, "stars": 5}, "stars"),
    ],
)
def test_invalid_feedback_is_422_and_nothing_is_stored(client, database, exchange, body, field):
    response = client.put(url(*exchange), json=body)

    assert response.status_code == 422
    assert set(response.json["errors"]["json"]) == {field}
    assert database.scalar("SELECT count(*) FROM feedback") == 0


def test_a_message_of_another_conversation_is_404(client, database, exchange, owner_id):
    (other,) = database.add(Conversation(title="o", model_type="m", owner_id=owner_id))

    response = client.put(url(other, exchange[1]), json={"rating": 1})

    assert response.status_code == 404
    assert database.scalar("SELECT count(*) FROM feedback") == 0


def test_somebody_elses_exchange_is_404_for_put_and_delete(app, database, exchange, make_account):
    from tests.conftest import keyed_client

    database.execute(
        "INSERT INTO feedback (message_id, rating, created_at, updated_at)"
        " VALUES (:id, 1, '2026-01-01', '2026-01-01')",
        id=exchange[1],
    )
    bob = keyed_client(app, make_account("bob").key)

    put = bob.put(url(*exchange), json={"rating": -1})
    delete = bob.delete(url(*exchange))

    assert (put.status_code, delete.status_code) == (404, 404)
    assert put.json["message"] == delete.json["message"]
    assert database.get(Feedback, exchange[1]).rating == 1


def test_feedback_goes_with_its_message(client, database, exchange):
    client.put(url(*exchange), json={"rating": 1})

    client.delete(f"/conversations/{exchange[0]}")

    assert database.scalar("SELECT count(*) FROM feedback") == 0


def test_statements_are_constant(client, database, exchange):
    client.get("/conversations?take=1")  # the key is cached from here on
    with database.count_statements() as put:
        client.put(url(*exchange), json={"rating": 1})
    with database.count_statements() as listing:
        client.get(f"/conversations/{exchange[0]}/messages")

    # The check and the upsert; the list joins feedback into its one query.
    assert (len(put), len(listing)) == (2, 2)
