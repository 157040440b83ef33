"""The Conversations service for /v1/conversations: REST's conversations as OpenAI's
conversation objects (``conv_<id>`` is ``/conversations/<id>``), and their items."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, TypedDict

from flask import current_app

from app.errors import Unprocessable

# Aliased: this module's parameters named conversation_id hold conv_<id> strings.
from app.exchange.responses_ids import conversation_id as conv_id
from app.exchange.responses_ids import parse_conversation_id, parse_item_id
from app.exchange.responses_items import exchange_items, find_item
from app.exchange.responses_object import timestamp
from app.exchange.responses_to_chat import prompt_text
from app.extensions import db
from app.models import Conversation, Message, utcnow
from app.repositories import ConversationRepository, MessageRepository
from app.repositories.deletes import DeleteRepository
from app.repositories.responses import ResponseRepository
from app.services.auth import Principal
from app.services.gateway import with_storable_strings
from app.services.item_erasure import erased_item
from app.services.response_lookup import (
    Deleted,
    ItemList,
    UnknownId,
    item_list,
    page,
    readable,
    resolve_references,
)
from app.services.unit_of_work import unit_of_work
from app.web.request_id import current_request_id

ITEMS_ENDPOINT = "conversations"  # exchanges that only add items (no answer)


class ConversationObject(TypedDict):
    """OpenAI's conversation object."""

    id: str
    object: str
    created_at: int
    metadata: dict[str, str]


class ItemPlace(NamedTuple):
    """Where a stored item is: its exchange, its side ("i" an input, "o" an output) and
    its position among that side's items."""

    row: Message
    side: str
    position: int


def conversation_object(conversation: Conversation) -> ConversationObject:
    """A conversation as OpenAI's conversation object."""
    return {
        "id": conv_id(conversation.id),
        "object": "conversation",
        "created_at": timestamp(conversation.created_at),
        "metadata": dict(conversation.meta or {}),
    }


def _find_conversation(actor: Principal, conversation_id: str, session: Any = None) -> Conversation:
    """The caller's conversation ``conv_<id>`` names, or UnknownId."""
    uid = parse_conversation_id(conversation_id)
    repository = ConversationRepository(session or db.session, actor.scope)
    conversation = repository.get(uid) if uid is not None else None
    if conversation is None:
        raise UnknownId(f"No conversation with id {conversation_id!r}.")
    return conversation


def refuse_no_store(actor: Principal) -> None:
    """Items are text a client stores: a no-store key may not add any (400, param items)."""
    if actor.no_store:
        message = "This API key keeps no text (a no-store key): items cannot be stored."
        raise Unprocessable(message, {"json": {"items": [message]}})


def _add_items(session: Any, conversation: Conversation, items: list[dict[str, Any]]) -> Message:
    """An exchange that only adds items after the conversation's current one (no answer:
    never sent to an upstream, never counted as a call)."""
    now = utcnow()
    message_id = MessageRepository(session).insert(
        {
            "conversation_id": conversation.id,
            "parent_id": conversation.current_message_id,
            "prompt_content": prompt_text(items),
            "model": conversation.model_type,
            "endpoint": ITEMS_ENDPOINT,
            "request_id": current_request_id(),
            "created_at": now,
            "input_items": with_storable_strings(items),
        }
    )
    # Ended as it is made: a success with no outcome, so no usage rollup counts it.
    row = MessageRepository(session).update(
        message_id, {"is_success": True, "status_code": 200, "output_items": [], "duration_ms": 0}
    )
    assert row is not None
    return row


# ------------------------------------------------------------------------ conversations
def create_conversation(
    actor: Principal,
    items: list[dict[str, Any]],
    metadata: Mapping[str, str],
    *,
    temporary: bool = False,
) -> ConversationObject:
    """Create a conversation (a REST conversation too), its items added as one exchange;
    ``temporary`` if asked."""
    if items:
        refuse_no_store(actor)
    with unit_of_work() as session:
        conversation = ConversationRepository(session).create(
            Conversation(
                title=None,
                model_type=current_app.config["DEFAULT_MODEL"],
                owner_id=actor.user_id,
                meta=dict(metadata),
                temporary=temporary,
            )
        )
        if items:
            items = resolve_references(ResponseRepository(session, actor.scope), items, "items")
            _add_items(session, conversation, items)
        return conversation_object(conversation)


def get_conversation(actor: Principal, conversation_id: str) -> ConversationObject:
    """A conversation of the caller's, or UnknownId."""
    return conversation_object(_find_conversation(actor, conversation_id))


def update_conversation(
    actor: Principal, conversation_id: str, metadata: Mapping[str, str]
) -> ConversationObject:
    """Replace a conversation's metadata."""
    uid = parse_conversation_id(conversation_id)
    with unit_of_work() as session:
        repository = ConversationRepository(session, actor.scope)
        conversation = repository.update(uid, {"meta": dict(metadata)}) if uid else None
        if conversation is None:
            raise UnknownId(f"No conversation with id {conversation_id!r}.")
        return conversation_object(conversation)


def delete_conversation(actor: Principal, conversation_id: str) -> Deleted:
    """Delete a conversation and all its exchanges."""
    uid = parse_conversation_id(conversation_id)
    with unit_of_work() as session:
        if uid is None or not ConversationRepository(session, actor.scope).delete(uid):
            raise UnknownId(f"No conversation with id {conversation_id!r}.")
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


# ------------------------------------------------------------------------ items
def _branch_items(conversation: Conversation) -> list[dict[str, Any]]:
    """The items of the conversation's current branch, root first."""
    if conversation.current_message_id is None:
        return []
    rows = ResponseRepository(db.session).branch(conversation.current_message_id)
    return [item for row in rows if readable(row) for item in exchange_items(row)]


def list_items(
    actor: Principal, conversation_id: str, after: str | None, limit: int, order: str
) -> ItemList:
    """The items of a conversation's current branch, in order, cursor-paged."""
    return page(_branch_items(_find_conversation(actor, conversation_id)), after, limit, order)


def add_items(actor: Principal, conversation_id: str, items: list[dict[str, Any]]) -> ItemList:
    """Add items after the conversation's current exchange; returns them, with their ids."""
    refuse_no_store(actor)
    with unit_of_work() as session:
        conversation = _find_conversation(actor, conversation_id, session)
        items = resolve_references(ResponseRepository(session, actor.scope), items, "items")
        row = _add_items(session, conversation, items)
        listed = exchange_items(row)
    return item_list(listed, has_more=False)


def _item_place(actor: Principal, conversation_id: str, item_id: str, session: Any) -> ItemPlace:
    """Where the item ``item_id`` of the caller's conversation is, or UnknownId."""
    conversation = _find_conversation(actor, conversation_id, session)
    parsed = parse_item_id(item_id)
    row = ResponseRepository(session).find(parsed[1]) if parsed is not None else None
    if parsed is None or row is None or row.conversation_id != conversation.id:
        raise UnknownId(f"No item with id {item_id!r} in conversation {conversation_id!r}.")
    found = find_item(row, parsed[2], parsed[3]) if readable(row) else None
    if found is None or found["id"] != item_id:
        raise UnknownId(f"No item with id {item_id!r} in conversation {conversation_id!r}.")
    return ItemPlace(row, parsed[2], parsed[3])


def get_item(actor: Principal, conversation_id: str, item_id: str) -> dict[str, Any]:
    """One item of the caller's conversation, or UnknownId."""
    place = _item_place(actor, conversation_id, item_id, db.session)
    found = find_item(place.row, place.side, place.position)
    assert found is not None
    return found


def _locked_item(
    deletes: DeleteRepository, conversation: Conversation, conversation_id: str, item_id: str
) -> ItemPlace:
    """Where the item ``item_id`` of the conversation is, its conversation and exchange
    locked and read afresh (a delete decides on what it read under the lock); UnknownId
    if there is none (deleted already, or its exchange a tombstone)."""
    parsed = parse_item_id(item_id)
    row = None
    if parsed is not None and deletes.lock_conversation(conversation.id) is not None:
        row = deletes.live_exchange(conversation.id, parsed[1])
    if parsed is None or row is None or not readable(row):
        raise UnknownId(f"No item with id {item_id!r} in conversation {conversation_id!r}.")
    found = find_item(row, parsed[2], parsed[3])
    if found is None or found["id"] != item_id:
        raise UnknownId(f"No item with id {item_id!r} in conversation {conversation_id!r}.")
    return ItemPlace(row, parsed[2], parsed[3])


def delete_item(actor: Principal, conversation_id: str, item_id: str) -> ConversationObject:
    """Delete one item of a conversation: its content, wherever its exchange keeps it, in
    the exchange's own format (null at its position: the others keep their content and
    ids); the last item left makes the exchange a tombstone. Returns the conversation.
    ExchangeInProgress while the exchange is being generated."""
    with unit_of_work() as session:
        conversation = _find_conversation(actor, conversation_id, session)
        deletes = DeleteRepository(session, actor.scope)
        place = _locked_item(deletes, conversation, conversation_id, item_id)
        deletes.refuse_in_progress(Message.id == place.row.id)
        values = erased_item(place.row, place.side, place.position)
        if values is None:
            deletes.make_tombstone(place.row)
        else:
            deletes.erase(place.row, values)
        return conversation_object(conversation)
