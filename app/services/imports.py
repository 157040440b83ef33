"""Imports: restore a JSON export into this instance, ids remapped, timestamps kept."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.errors import Forbidden, NotFound, Unprocessable
from app.exchange.outcomes import Outcome
from app.repositories import UserRepository
from app.repositories.imports import ImportRepository
from app.repositories.messages import tombstone
from app.services.auth import Principal
from app.services.export import EXCHANGE_FIELDS
from app.services.unit_of_work import unit_of_work

MESSAGE_FIELDS = (
    "prompt_content",
    "response_content",
    "prompt_tokens",
    "response_tokens",
    "total_tokens",
    "is_success",
    "status_code",
    *EXCHANGE_FIELDS,
    "created_at",
    "updated_at",
)
# The outcome of an exchange exported without one (documents older than the field).
OUTCOMES = {True: Outcome.COMPLETE, False: Outcome.FAILED}


@dataclass(frozen=True)
class Imported:
    source_id: int | None
    id: int
    messages: int


def import_document(actor: Principal, conversations: Iterable[Mapping[str, Any]]) -> list[Imported]:
    """Add the conversations (as ExportDocument loads them) to the actor's, all or none.
    Forbidden with a no-store key: an import is nothing but text to store."""
    if actor.no_store:
        raise Forbidden("This API key keeps no text (a no-store key): import with another key.")
    with unit_of_work() as session:
        return _import(ImportRepository(session), actor.user_id, conversations)


def import_for_user(name: str, conversations: Iterable[Mapping[str, Any]]) -> list[Imported]:
    """The CLI's import: the conversations go to the user called ``name``."""
    with unit_of_work() as session:
        user = UserRepository(session).get_by_name(name)
        if user is None:
            raise NotFound(f"There is no user named {name!r}.")
        return _import(ImportRepository(session), user.id, conversations)


def _last_activity(conversation: Mapping[str, Any]) -> datetime:
    """The document's last_activity_at, else the later of creation and the last message."""
    if conversation.get("last_activity_at") is not None:
        return conversation["last_activity_at"]  # type: ignore[no-any-return]
    return max([conversation["created_at"], *(m["created_at"] for m in conversation["messages"])])


def _tree(
    conversation: Mapping[str, Any], index: int, new_ids: list[int]
) -> tuple[list[tuple[int, int]], int | None]:
    """The imported messages' (id, parent id) pairs and the current exchange's new id,
    from the document's ids. A message without parent_id (an older export) follows the
    one before it; a parent must be an earlier message of the same conversation."""
    messages = conversation["messages"]
    known: dict[int, int] = {}
    parents: list[tuple[int, int]] = []
    previous: int | None = None
    for position, (message, new_id) in enumerate(zip(messages, new_ids, strict=True)):
        if "parent_id" not in message:
            parent = previous
        elif message["parent_id"] is None:
            parent = None
        else:
            parent = known.get(message["parent_id"])
            if parent is None:
                raise _unknown(index, f"messages.{position}.parent_id")
        if parent is not None:
            parents.append((new_id, parent))
        if message.get("id") is not None:
            known[message["id"]] = new_id
        previous = new_id
    if "current_message_id" not in conversation:
        return parents, previous
    current = conversation["current_message_id"]
    if current is not None and current not in known:
        raise _unknown(index, "current_message_id")
    return parents, None if current is None else known[current]


def _unknown(index: int, field: str) -> Unprocessable:
    return Unprocessable(
        f"conversations.{index}.{field} names no earlier message of its conversation.",
        {"json": {"conversations": {str(index): {field: ["Not an earlier message's id."]}}}},
    )


def _import(
    repository: ImportRepository, owner_id: int, conversations: Iterable[Mapping[str, Any]]
) -> list[Imported]:
    imported = []
    for index, conversation in enumerate(conversations):
        messages = conversation["messages"]
        new_id = repository.add_conversation(
            {
                "owner_id": owner_id,
                "title": conversation["title"],
                "model_type": conversation["model_type"],
                "meta": dict(conversation["meta"]),
                "created_at": conversation["created_at"],
                "updated_at": conversation["updated_at"],
                "last_activity_at": _last_activity(conversation),
                "archived": conversation.get("archived", False),
                "pinned": conversation.get("pinned", False),
                "message_count": len(messages),
            }
        )
        ids = repository.add_messages([_message_row(new_id, message) for message in messages])
        parents, current = _tree(conversation, index, ids)
        repository.link(new_id, parents, current)
        repository.add_feedback(
            [
                {"message_id": message_id, **message["feedback"]}
                for message_id, message in zip(ids, messages, strict=True)
                if message["feedback"] is not None
            ]
        )
        imported.append(Imported(conversation.get("id"), new_id, len(ids)))
    return imported


def _message_row(conversation_id: int, message: Mapping[str, Any]) -> dict[str, Any]:
    row = {"conversation_id": conversation_id, **{f: message[f] for f in MESSAGE_FIELDS}}
    if row["outcome"] is None:
        row["outcome"] = OUTCOMES.get(row["is_success"])
    row["deleted_at"] = None
    if message["deleted"]:
        # A tombstone stays one: its columns as a delete leaves them, whatever was sent.
        erased = tombstone(row["model"])
        row |= {name: value for name, value in erased.items() if name in row}
        row["deleted_at"] = row["updated_at"]
    return row
