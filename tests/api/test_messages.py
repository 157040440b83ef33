"""GET /conversations/<id>/messages."""

from __future__ import annotations

import pytest

from app.models import Conversation, Message


@pytest.fixture
def conversation_id(database, owner_id):
    return database.add(Conversation(title="chat", model_type="m", owner_id=owner_id))[0]


def test_lists_messages_in_creation_order_with_every_field(client, database, conversation_id):
    database.add(
        Message(
            conversation_id=conversation_id,
            prompt_content="first",
            response_content="a",
            prompt_tokens=3,
            response_tokens=1,
            total_tokens=4,
            is_success=True,
            status_code=200,
        ),
        Message(conversation_id=conversation_id, prompt_content="second"),
    )

    response = client.get(f"/conversations/{conversation_id}/messages")

    assert response.status_code == 200
    first, second = response.json
    assert [first["prompt_content"], second["prompt_content"]] == ["first", "second"]
    assert first["id"] < second["id"]
    assert set(first) == {
        "id",
        "conversation_id",
        "parent_id",
        "siblings",
        "prompt_content",
        "response_content",
        "deleted",
        "prompt_tokens",
        "response_tokens",
        "total_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "usage_estimated",
        "is_success",
        "status_code",
        "outcome",
        "reasoning_content",
        "refusal_content",
        "model",
        "endpoint",
        "request_id",
        "finish_reason",
        "ttft_ms",
        "duration_ms",
        "feedback",
        "tool_calls",
        "request_params",
        "system_prompt",
        "input_items",
        "created_at",
        "updated_at",
    }
    assert first["feedback"] is None
    assert (first["total_tokens"], first["is_success"], first["status_code"]) == (4, True, 200)
    assert second["is_success"] is None  # an exchange still in progress
    assert second["response_content"] == ""


def test_only_this_conversations_messages(client, database, conversation_id, owner_id):
    other = database.add(Conversation(title="other", model_type="m", owner_id=owner_id))[0]
    database.add(
        Message(conversation_id=other, prompt_content="elsewhere"),
        Message(conversation_id=conversation_id, prompt_content="here"),
    )

    response = client.get(f"/conversations/{conversation_id}/messages")

    assert [m["prompt_content"] for m in response.json] == ["here"]


def test_skip_and_take(client, database, conversation_id):
    database.add(
        *[Message(conversation_id=conversation_id, prompt_content=f"p{i}") for i in range(5)]
    )

    page = client.get(f"/conversations/{conversation_id}/messages?skip=1&take=2").json
    past_end = client.get(f"/conversations/{conversation_id}/messages?skip=5").json

    assert [m["prompt_content"] for m in page] == ["p1", "p2"]
    assert past_end == []


def test_after_pages_by_id(client, database, conversation_id):
    ids = database.add(
        *[Message(conversation_id=conversation_id, prompt_content=f"p{i}") for i in range(5)]
    )

    page = client.get(f"/conversations/{conversation_id}/messages?after={ids[1]}&take=2").json

    assert [m["id"] for m in page] == ids[2:4]


@pytest.mark.parametrize("query", ["take=0", "take=101", "take=x", "skip=-1", "after=-1"])
def test_bad_paging_is_422(client, conversation_id, query):
    response = client.get(f"/conversations/{conversation_id}/messages?{query}")

    assert response.status_code == 422
    assert "query" in response.json["errors"]


def test_empty_conversation_is_an_empty_list(client, conversation_id):
    response = client.get(f"/conversations/{conversation_id}/messages")

    assert response.status_code == 200
    assert response.json == []


def test_unknown_conversation_is_404(client):
    response = client.get("/conversations/424242/messages")

    assert response.status_code == 404
    assert response.json["message"] == "Conversation 424242 does not exist."
