"""Conversation use cases: list, read, create, update, delete, and their messages.

Every function acts for a ``Principal``: a user reaches only their own conversations (anyone
else's is NotFound, so its existence is not revealed); an admin reaches every one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy.engine import Row

from app.errors import Forbidden, NotFound, Unprocessable
from app.extensions import db
from app.models import METADATA_MAX_PAIRS, Conversation, Message, utcnow
from app.repositories import ConversationRepository, MessageRepository
from app.repositories.deletes import DeleteRepository
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
    order: str = "created",
    cursor: tuple[bool, datetime, int] | None = None,
    archived: bool = False,
    temporary: bool = False,
) -> Page[Row[Any]]:
    """Conversations, oldest first (order created) or pinned, then most recently active
    first (order recent): the actor's own, or (admins) anyone's or everyone's; archived
    ones, or (the default) the others; temporary ones, or (the default) the others. ``meta``
    keeps only those whose metadata holds each of its pairs. Rows, their columns named as
    Conversation's attributes."""
    paging = {"recent": ("after", after), "created": ("cursor", cursor)}[order]
    if paging[1] is not None:
        raise Unprocessable(
            f"{paging[0]} does not page order={order}.",
            {"query": {paging[0]: [f"Not with order={order}."]}},
        )
    repository = ConversationRepository(db.session, owner_id=list_scope(actor, owner))
    if order == "recent":
        rows = repository.list_recent(
            skip=skip,
            take=take + 1,
            before=cursor,
            metadata=meta,
            archived=archived,
            temporary=temporary,
        )
    else:
        rows = repository.list_matching(
            skip=skip,
            take=take + 1,
            after=after,
            metadata=meta,
            archived=archived,
            temporary=temporary,
        )
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
    expires_at: datetime | None = None,
    temporary: bool = False,
) -> Conversation:
    """A new conversation owned by the actor; without a model it uses DEFAULT_MODEL.
    ``expires_at``: its own lifetime; ``temporary``: it expires TEMPORARY_RETENTION_HOURS
    after its last activity and is left out of lists and search."""
    model = model_type or current_app.config["DEFAULT_MODEL"]
    with unit_of_work() as session:
        return ConversationRepository(session).create(
            Conversation(
                title=title,
                model_type=model,
                owner_id=actor.user_id,
                meta=dict(meta or {}),
                expires_at=expires_at,
                temporary=temporary,
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
    values = {"title": title, "model_type": model_type, "meta": dict(meta or {})}
    with unit_of_work() as session:
        conversation = ConversationRepository(session, actor.scope).update(
            conversation_id, {**values, "last_activity_at": utcnow()}
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


# What a PATCH may change that counts as activity (order=recent); archiving, pinning and
# switching branches do not move a conversation in the list.
EDITS = frozenset({"title", "model_type", "meta"})


def patch_conversation(actor: Principal, conversation_id: int, **changes: Any) -> Conversation:
    """Change only the fields given; metadata is merged into the conversation's. A
    current_message_id must be one of its exchanges (else Unprocessable)."""
    with unit_of_work() as session:
        # Locked: two merges at once must not lose each other's keys.
        conversation = ConversationRepository(session, actor.scope).get_for_update(conversation_id)
        if conversation is None:
            raise _not_found(conversation_id)
        current = changes.get("current_message_id")
        if current is not None and not MessageRepository(session).in_conversation(
            conversation_id, current
        ):
            raise Unprocessable(
                f"Message {current} is not an exchange of conversation {conversation_id}.",
                {"json": {"current_message_id": ["Not an exchange of this conversation."]}},
            )
        if "meta" in changes:
            changes["meta"] = merge_metadata(conversation.meta, changes["meta"])
        for name, value in changes.items():
            setattr(conversation, name, value)
        now = utcnow()
        if changes:
            conversation.updated_at = now
        if EDITS & changes.keys():
            conversation.last_activity_at = now
        session.flush()
        return conversation


def delete_conversation(actor: Principal, conversation_id: int) -> None:
    """Delete a conversation; the database deletes its messages with it. Conflict
    (ExchangeInProgress) while one of its exchanges is in progress."""
    with unit_of_work() as session:
        if not ConversationRepository(session, actor.scope).delete(conversation_id):
            raise _not_found(conversation_id)


def list_messages(
    actor: Principal,
    conversation_id: int,
    *,
    skip: int,
    take: int,
    after: int | None = None,
    branch: str = "current",
    leaf: int | None = None,
) -> Page[Message]:
    """A conversation's current branch, root first (or the branch ending at ``leaf``; or,
    branch all, every exchange in creation order), or NotFound. Two statements.

    A conversation without a current exchange whose exchanges were written outside the
    API (no tree) lists them all, in creation order."""
    found = ConversationRepository(db.session, actor.scope).current_message_id(conversation_id)
    if found is None:
        raise _not_found(conversation_id)
    asked = leaf
    if leaf is None and branch == "current":
        leaf = found[0]
    messages = MessageRepository(db.session)
    rows = messages.list_for_conversation(
        conversation_id, skip=skip, take=take + 1, after=after, leaf=leaf
    )
    if not rows and asked is not None and not messages.in_conversation(conversation_id, asked):
        raise Unprocessable(
            f"Message {leaf} is not an exchange of conversation {conversation_id}.",
            {"query": {"leaf": ["Not an exchange of this conversation."]}},
        )
    return Page.of(rows, take)


def delete_message(actor: Principal, conversation_id: int, message_id: int) -> None:
    """Delete an exchange and every exchange below it; the current exchange moves to its
    parent if it was among them. NotFound unless it is one of the actor's; Conflict
    (ExchangeInProgress) while one of them is in progress."""
    with unit_of_work() as session:
        deleted = DeleteRepository(session, actor.scope).delete_subtree(conversation_id, message_id)
        if deleted is None:
            raise NotFound(
                f"Message {message_id} does not exist in conversation {conversation_id}."
            )
