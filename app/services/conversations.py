"""Conversation use cases: list, read, create, update, delete, and their messages.

Every function acts for a ``Principal``: a user reaches only their own conversations (anyone
else's is NotFound, so its existence is not revealed); an admin reaches every one.
"""

from __future__ import annotations

from flask import current_app

from app.errors import Forbidden, NotFound
from app.extensions import db
from app.models import Conversation, Message
from app.repositories import ConversationRepository, MessageRepository
from app.services.auth import Principal
from app.services.unit_of_work import unit_of_work

OWNER_ME = "me"
OWNER_ALL = "all"


def _not_found(conversation_id: int) -> NotFound:
    return NotFound(f"Conversation {conversation_id} does not exist.")


def _list_scope(actor: Principal, owner: str | int) -> int | None:
    if owner == OWNER_ME or owner == actor.user_id:
        return actor.user_id
    if not actor.is_admin:
        raise Forbidden("Only an admin can list other users' conversations.")
    return None if owner == OWNER_ALL else int(owner)


def list_conversations(
    actor: Principal,
    *,
    skip: int,
    take: int,
    after: int | None = None,
    owner: str | int = OWNER_ME,
) -> list[Conversation]:
    """Conversations, oldest first: the actor's own, or (admins) anyone's or everyone's."""
    repository = ConversationRepository(db.session, owner_id=_list_scope(actor, owner))
    return repository.list(skip=skip, take=take, after=after)


def get_conversation(actor: Principal, conversation_id: int) -> Conversation:
    """One conversation, or NotFound."""
    conversation = ConversationRepository(db.session, actor.scope).get(conversation_id)
    if conversation is None:
        raise _not_found(conversation_id)
    return conversation


def create_conversation(
    actor: Principal, *, title: str | None, model_type: str | None
) -> Conversation:
    """A new conversation owned by the actor; without a model it uses DEFAULT_MODEL."""
    model = model_type or current_app.config["DEFAULT_MODEL"]
    with unit_of_work() as session:
        return ConversationRepository(session).create(
            Conversation(title=title, model_type=model, owner_id=actor.user_id)
        )


def update_conversation(
    actor: Principal, conversation_id: int, *, title: str, model_type: str
) -> Conversation:
    """Replace a conversation's title and model."""
    with unit_of_work() as session:
        conversation = ConversationRepository(session, actor.scope).update(
            conversation_id, {"title": title, "model_type": model_type}
        )
        if conversation is None:
            raise _not_found(conversation_id)
        return conversation


def delete_conversation(actor: Principal, conversation_id: int) -> None:
    """Delete a conversation; the database deletes its messages with it."""
    with unit_of_work() as session:
        if not ConversationRepository(session, actor.scope).delete(conversation_id):
            raise _not_found(conversation_id)


def list_messages(
    actor: Principal, conversation_id: int, *, skip: int, take: int, after: int | None = None
) -> list[Message]:
    """A conversation's messages in creation order, or NotFound."""
    if not ConversationRepository(db.session, actor.scope).exists(conversation_id):
        raise _not_found(conversation_id)
    return MessageRepository(db.session).list_for_conversation(
        conversation_id, skip=skip, take=take, after=after
    )
