"""Each endpoint issues a fixed number of SQL statements, however many rows there are."""

from __future__ import annotations

import pytest

from app.models import Conversation, Message


def seed(database, owner_id: int, conversations: int, messages_each: int) -> int:
    ids = database.add(
        *[
            Conversation(title=f"c{i}", model_type="m", owner_id=owner_id)
            for i in range(conversations)
        ]
    )
    database.add(
        *[
            # Ended: a delete is refused while an exchange is in progress.
            Message(conversation_id=cid, prompt_content="p", is_success=True)
            for cid in ids
            for _ in range(messages_each)
        ]
    )
    return ids[0]


# The API's success status for each method these tests send.
SUCCESS = {"get": 200, "post": 201, "put": 202, "delete": 204}


def statements_for(client, database, method: str, path: str, **kwargs) -> int:
    """Statements one request sends, once the client's key is in the process's cache."""
    client.get("/conversations?take=1")
    with database.count_statements() as statements:
        response = getattr(client, method)(path, **kwargs)
    assert response.status_code == SUCCESS[method], response.json
    return len(statements)


ENDPOINTS = [
    ("get", "/conversations", {}, 1),
    ("get", "/conversations?after=1&take=20", {}, 1),
    ("get", "/conversations/{id}", {}, 1),
    ("get", "/conversations/{id}/messages", {}, 2),
    ("get", "/conversations/{id}/messages?after=1", {}, 2),
    ("post", "/conversations", {"json": {"title": "t"}}, 1),
    ("put", "/conversations/{id}", {"json": {"title": "t", "model_type": "m"}}, 1),
    # Lock the conversation, look for an exchange in progress, carry the usage, delete;
    # SQLite then compacts its three full-text indexes.
    ("delete", "/conversations/{id}", {}, {"postgresql": 4, "sqlite": 7}),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "expected"), ENDPOINTS)
def test_statement_count_is_constant_as_rows_grow(
    client, database, owner_id, backend, method, path, kwargs, expected
):
    if isinstance(expected, dict):
        expected = expected[backend]
    small_id = seed(database, owner_id, conversations=1, messages_each=1)
    small = statements_for(client, database, method, path.format(id=small_id), **kwargs)

    large_id = seed(database, owner_id, conversations=30, messages_each=20)
    large = statements_for(client, database, method, path.format(id=large_id), **kwargs)

    assert small == large == expected
