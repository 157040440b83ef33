"""Conversation use cases: list, read, create, update, delete, and their messages.

Every function acts for a ``Principal``: a user reaches only their own conversations (anyone
else's is NotFound, so its existence is not revealed); an admin reaches every one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app

from app.errors import Forbidden, NotFound, Unprocessable
from app.extensions import db
from app.models import METADATA_MAX_PAIRS, Conversation, Message, utcnow
from app.repositories import ConversationRepository, MessageRepository
from app.services.auth import Principal
from app.services.pages import Page
from app.services.unit_of_work import unit_of_work

OWNER_ME = "me"
OWNER_ALL = "all"


def _not_found(conversation_id: int) -> NotFound:
    return NotFound(f"Conversation {conversation_id} does not exist.")


def list_scope(
    actor: Principal,
    owner: str | int,
    forbidden: str = "Only an admin can list other users' conversations.",
) -> int | None:
    """The owner id a read of ``owner``'s data (me, all or an id) is limited to; None:
    everyone's. Forbidden (``forbidden``) unless it is the actor's own or an admin asks."""
    if owner == OWNER_ME or owner == actor.user_id:
        return actor.user_id
    if not actor.is_admin:
        raise Forbidden(forbidden)
    return None if owner == OWNER_ALL else int(owner)


def list_conversations(
    actor: Principal,
    *,
    skip: int,
    take: int,
    after: int | None = None,
    owner: str | int = OWNER_ME,
    meta: Mapping[str, str] | None = None,
) -> Page[Conversation]:
    """Conversations, oldest first: the actor's own, or (admins) anyone's or everyone's.

    ``meta`` keeps only those whose metadata holds each of its pairs.
    """
    repository = ConversationRepository(db.session, owner_id=list_scope(actor, owner))
    rows = repository.list_matching(skip=skip, take=take + 1, after=after, metadata=meta)
    return Page.of(rows, take)


def get_conversation(actor: Principal, conversation_id: int) -> Conversation:
    """One conversation, or NotFound."""
    conversation = ConversationRepository(db.session, actor.scope).get(conversation_id)
    if conversation is None:
        raise _not_found(conversation_id)
    return conversation


def create_conversation(
    actor: Principal,
    *,
    title: str | None,
    model_type: str | None,
    meta: Mapping[str, str] | None = None,
) -> Conversation:
    """A new conversation owned by the actor; without a model it uses DEFAULT_MODEL."""
    model = model_type or current_app.config["DEFAULT_MODEL"]
    with unit_of_work() as session:
        return ConversationRepository(session).create(
            Conversation(
                title=title, model_type=model, owner_id=actor.user_id, meta=dict(meta or {})
            )
        )


def update_conversation(
    actor: Principal,
    conversation_id: int,
    *,
    title: str,
    model_type: str,
    meta: Mapping[str, str] | None = None,
) -> Conversation:
    """Replace a conversation's title, model and metadata (none given: emptied)."""
    with unit_of_work() as session:
        conversation = ConversationRepository(session, actor.scope).update(
            conversation_id, {"title": title, "model_type": model_type, "meta": dict(meta or {})}
        )
        if conversation is None:
            raise _not_found(conversation_id)
        return conversation


def merge_metadata(current: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    """``current`` with ``changes`` applied: a null removes its key; at most 16 pairs."""
    merged = {**current, **changes}
    result = {key: value for key, value in merged.items() if value is not None}
    if len(result) > METADATA_MAX_PAIRS:
        raise Unprocessable(
            "The merged metadata would have more than 16 pairs.",
            {"json": {"metadata": [f"At most {METADATA_MAX_PAIRS} pairs once merged."]}},
        )
    return result


def patch_conversation(actor: Principal, conversation_id: int, **changes: Any) -> Conversation:
    """Change only the fields given; metadata is merged into the conversation's."""
    with unit_of_work() as session:
        # Locked: two merges at once must not lose each other's keys.
        conversation = ConversationRepository(session, actor.scope).get_for_update(conversation_id)
        if conversation is None:
            raise _not_found(conversation_id)
        if "meta" in changes:
            changes["meta"] = merge_metadata(conversation.meta, changes["meta"])
        for name, value in changes.items():
            setattr(conversation, name, value)
        if changes:
            conversation.updated_at = utcnow()
        session.flush()
        return conversation


def delete_conversation(actor: Principal, conversation_id: int) -> None:
    """Delete a conversation; the database deletes its messages with it."""
    with unit_of_work() as session:
        if not ConversationRepository(session, actor.scope).delete(conversation_id):
            raise _not_found(conversation_id)


def list_messages(
    actor: Principal, conversation_id: int, *, skip: int, take: int, after: int | None = None
) -> Page[Message]:
    """A conversation's messages in creation order, or NotFound."""
    if not ConversationRepository(db.session, actor.scope).exists(conversation_id):
        raise _not_found(conversation_id)
    rows = MessageRepository(db.session).list_for_conversation(
        conversation_id, skip=skip, take=take + 1, after=after
    )
    return Page.of(rows, take)
