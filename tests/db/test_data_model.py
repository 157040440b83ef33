"""What the schema itself guarantees, checked in the database rather than through the ORM."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.models import Conversation, Message


def test_deleting_through_sql_cascades_to_messages(database, owner_id):
    keep, drop = database.add(
        Conversation(title="keep", model_type="m", owner_id=owner_id),
        Conversation(title="drop", model_type="m", owner_id=owner_id),
    )
    database.add(
        Message(conversation_id=drop, prompt_content="a"),
        Message(conversation_id=drop, prompt_content="b"),
        Message(conversation_id=keep, prompt_content="c"),
    )

    database.execute("DELETE FROM conversations WHERE id = :id", id=drop)

    assert (
        database.scalar("SELECT count(*) FROM messages WHERE conversation_id = :id", id=drop) == 0
    )
    assert (
        database.scalar("SELECT count(*) FROM messages WHERE conversation_id = :id", id=keep) == 1
    )


def test_a_message_needs_an_existing_conversation(database):
    with pytest.raises(sa.exc.IntegrityError):
        database.add(Message(conversation_id=424242, prompt_content="orphan"))


def test_created_at_is_set_per_row_and_timezone_aware(database, owner_id, wall_clock):
    created = wall_clock.now
    first_id = database.add(Conversation(title="a", model_type="m", owner_id=owner_id))[0]
    later = wall_clock.advance(1)
    second_id = database.add(Conversation(title="b", model_type="m", owner_id=owner_id))[0]

    first, second = database.get(Conversation, first_id), database.get(Conversation, second_id)

    assert first.created_at.tzinfo is not None
    assert (first.created_at, second.created_at) == (created, later)


def test_updated_at_moves_on_update_and_created_at_does_not(app, database, owner_id, wall_clock):
    from app.extensions import db

    conversation_id = database.add(Conversation(title="a", model_type="m", owner_id=owner_id))[0]
    before = database.get(Conversation, conversation_id)
    later = wall_clock.advance(1)
    with app.app_context():
        db.session.get(Conversation, conversation_id).title = "b"
        db.session.commit()

    after = database.get(Conversation, conversation_id)
    assert before.updated_at < after.updated_at == later
    assert after.created_at == before.created_at


def test_ids_are_not_reused_after_a_delete(database, owner_id):
    first = database.add(Conversation(title="a", model_type="m", owner_id=owner_id))[0]
    database.execute("DELETE FROM conversations WHERE id = :id", id=first)

    second = database.add(Conversation(title="b", model_type="m", owner_id=owner_id))[0]

    assert second > first
