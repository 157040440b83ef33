"""Conversation use cases: list, read, create, update, delete, and their messages."""

from __future__ import annotations

from flask import current_app

from app.errors import NotFound
from app.extensions import db
from app.models import Conversation, Message
from app.repositories import ConversationRepository, MessageRepository
from app.services.unit_of_work import unit_of_work


def _not_found(conversation_id: int) -> NotFound:
    return NotFound(f"Conversation {conversation_id} does not exist.")


def list_conversations(*, skip: int, take: int) -> list[Conversation]:
    """Conversations, oldest first."""
    return ConversationRepository(db.session).list(skip=skip, take=take)


def get_conversation(conversation_id: int) -> Conversation:
    """One conversation, or NotFound."""
    conversation = ConversationRepository(db.session).get(conversation_id)
    if conversation is None:
        raise _not_found(conversation_id)
    return conversation


def create_conversation(*, title: str | None, model_type: str | None) -> Conversation:
    """A new conversation; without a model it uses DEFAULT_MODEL."""
    model = model_type or current_app.config["DEFAULT_MODEL"]
    with unit_of_work() as session:
        return ConversationRepository(session).create(Conversation(title=title, model_type=model))


def update_conversation(conversation_id: int, *, title: str, model_type: str) -> Conversation:
    """Replace a conversation's title and model."""
    with unit_of_work() as session:
        conversation = ConversationRepository(session).update(
            conversation_id, {"title": title, "model_type": model_type}
        )
        if conversation is None:
            raise _not_found(conversation_id)
        return conversation


def delete_conversation(conversation_id: int) -> None:
    """Delete a conversation; the database deletes its messages with it."""
    with unit_of_work() as session:
        if not ConversationRepository(session).delete(conversation_id):
            raise _not_found(conversation_id)


def list_messages(conversation_id: int, *, skip: int, take: int) -> list[Message]:
    """A conversation's messages in creation order, or NotFound."""
    if not ConversationRepository(db.session).exists(conversation_id):
        raise _not_found(conversation_id)
    return MessageRepository(db.session).list_for_conversation(
        conversation_id, skip=skip, take=take
    )
