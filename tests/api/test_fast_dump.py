"""Response schemas read plain fields off the object directly: the output is marshmallow's own."""

from __future__ import annotations

from datetime import UTC, datetime

from marshmallow import Schema

from app.extensions import db
from app.models import Conversation, Feedback, Message
from app.repositories import ConversationRepository
from app.schemas.conversations import ConversationOut
from app.schemas.messages import MessageOut

WHEN = datetime(2026, 12, 2, 13, 30, 5, 123456, tzinfo=UTC)


def _stock(schema: Schema, obj: object, many: bool = False) -> object:
    """What marshmallow's own per-field path dumps."""
    return Schema._serialize(schema, obj, many=many)


def test_a_conversation_dumps_as_marshmallow_dumps_it():
    conversation = Conversation(
        id=7,
        owner_id=3,
        title="déjà vu",
        model_type="m",
        meta={"k": "v"},
        created_at=WHEN,
        updated_at=WHEN,
        last_activity_at=WHEN,
        message_count=2,
        archived=False,
        pinned=True,
        temporary=False,
        current_message_id=11,
    )
    untitled = Conversation(
        id=8, owner_id=3, title=None, model_type="m", meta={}, created_at=WHEN, updated_at=WHEN
    )

    dumped = ConversationOut(many=True).dump([conversation, untitled])

    assert dumped == _stock(ConversationOut(), [conversation, untitled], many=True)
    assert dumped[0] == {
        "id": 7,
        "owner_id": 3,
        "title": "déjà vu",
        "model_type": "m",
        "metadata": {"k": "v"},
        "created_at": "2026-12-02T13:30:05.123456+00:00",
        "updated_at": "2026-12-02T13:30:05.123456+00:00",
        "last_activity_at": "2026-12-02T13:30:05.123456+00:00",
        "message_count": 2,
        "archived": False,
        "pinned": True,
        "expires_at": None,
        "temporary": False,
        "current_message_id": 11,
    }


def test_a_message_with_every_field_dumps_as_marshmallow_dumps_it():
    message = Message(
        id=11,
        conversation_id=7,
        prompt_content="q",
        response_content="a",
        prompt_tokens=3,
        response_tokens=4,
        total_tokens=7,
        is_success=True,
        status_code=200,
        outcome="complete",
        reasoning_content="r",
        model="m",
        endpoint="v1",
        request_id="rid",
        finish_reason="stop",
        ttft_ms=5,
        duration_ms=9,
        tool_calls=[{"id": "c", "type": "function"}],
        request_params={"temperature": 0.5},
        system_prompt="s",
        created_at=WHEN,
        updated_at=WHEN,
    )
    message.feedback = Feedback(rating=1, comment=None, created_at=WHEN, updated_at=WHEN)
    in_progress = Message(
        id=12,
        conversation_id=7,
        prompt_content="q",
        response_content="",
        is_success=None,
        created_at=WHEN,
        updated_at=WHEN,
    )

    dumped = MessageOut(many=True).dump([message, in_progress])

    assert dumped == _stock(MessageOut(), [message, in_progress], many=True)
    assert dumped[0]["feedback"]["rating"] == 1
    assert dumped[1]["is_success"] is None


def test_a_conversation_read_as_a_row_dumps_as_the_object_does(app, client):
    created = client.post("/conversations", json={"title": "t", "metadata": {"k": "v"}}).json

    with app.app_context():
        (row,) = ConversationRepository(db.session).list_matching()
        from_row = ConversationOut().dump(row)
        from_object = ConversationOut().dump(db.session.get(Conversation, created["id"]))

    assert from_row == from_object
    assert from_row["metadata"] == {"k": "v"}
