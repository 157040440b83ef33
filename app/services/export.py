"""Exports: one conversation as JSON or Markdown, all of a user's as NDJSON, streamed.

The chunks are produced after the request has ended: each page is read with keyset paging
in its own short app context (its own session, its connection returned at once), and only
plain values leave it. Memory stays flat whatever the size; nothing holds a connection
between pages, and no ORM object outlives its page's session.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from flask import Flask, current_app

from app.errors import NotFound
from app.extensions import db
from app.repositories import ConversationRepository
from app.repositories.export import ExportRepository
from app.schemas.export import CONTENT_FIELDS
from app.services.auth import Principal
from app.services.conversations import OWNER_ME, list_scope

EXPORT_FORMAT = "convstore"
EXPORT_VERSION = 1
PAGE = 1000
# How each exchange was made and what its client sent, exported as stored.
EXCHANGE_FIELDS = (
    "outcome",
    "reasoning_content",
    "model",
    "endpoint",
    "request_id",
    "finish_reason",
    "ttft_ms",
    "duration_ms",
    "tool_calls",
    "request_params",
    "system_prompt",
    "input_items",
    "usage_estimated",
    "refusal_content",
    "cached_tokens",
    "reasoning_tokens",
    "output_items",
)
T = TypeVar("T")


@dataclass(frozen=True)
class Download:
    """What an export sends: a file name, its media type, and its text piece by piece."""

    filename: str
    mimetype: str
    chunks: Iterator[str]


def export_conversation(actor: Principal, conversation_id: int, fmt: str) -> Download:
    """One conversation (NotFound unless the actor may read it) as JSON or Markdown."""
    if not ConversationRepository(db.session, actor.scope).exists(conversation_id):
        raise NotFound(f"Conversation {conversation_id} does not exist.")
    reader = PageReader(current_app._get_current_object())  # type: ignore[attr-defined]
    if fmt == "markdown":
        chunks = markdown_document(reader, conversation_id)
        return Download(f"conversation-{conversation_id}.md", "text/markdown", chunks)
    chunks = json_document(reader, None, only=conversation_id)
    return Download(f"conversation-{conversation_id}.json", "application/json", chunks)


def export_all(actor: Principal, owner: str | int = OWNER_ME) -> Download:
    """Every conversation of the actor (admins: of ``owner``, or everyone's) as NDJSON."""
    owner_id = list_scope(actor, owner)
    reader = PageReader(current_app._get_current_object())  # type: ignore[attr-defined]
    name = "all" if owner_id is None else str(owner_id)
    return Download(
        f"conversations-{name}.ndjson", "application/x-ndjson", ndjson(reader, owner_id)
    )


class PageReader:
    """Reads pages of plain rows, each in a short app context of its own."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def _read(self, read: Callable[[ExportRepository], list[T]]) -> list[T]:
        # The app context's teardown closes the session: the connection goes back at once.
        with self.app.app_context():
            return read(ExportRepository(db.session))

    def conversations(
        self, owner_id: int | None, only: int | None = None
    ) -> Iterator[dict[str, Any]]:
        read = partial(ExportRepository.conversations, owner_id=owner_id, only=only)
        yield from (_conversation(row) for row in self._pages(read))

    def messages(self, conversation_id: int) -> Iterator[dict[str, Any]]:
        read = partial(ExportRepository.messages, conversation_id=conversation_id)
        yield from (_message(row) for row in self._pages(read))

    def _pages(self, read: Any) -> Iterator[dict[str, Any]]:
        """Every row ``read`` returns, a keyset page at a time, each page in its own read."""
        after = None
        while True:
            page = self._read(partial(read, after=after, take=PAGE))
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1]["id"]


def _time(value: datetime) -> str:
    return value.isoformat()


def _conversation(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "model_type": row["model_type"],
        "metadata": row["meta"] or {},
        "created_at": _time(row["created_at"]),
        "updated_at": _time(row["updated_at"]),
        # The tree (ids of the exporting instance, as the messages' own).
        "last_activity_at": _time(row["last_activity_at"]),
        "archived": row["archived"],
        "pinned": row["pinned"],
        "current_message_id": row["current_message_id"],
    }


def _message(row: dict[str, Any]) -> dict[str, Any]:
    feedback = None
    if row["feedback_rating"] is not None:
        feedback = {
            "rating": row["feedback_rating"],
            "comment": row["feedback_comment"],
            "created_at": _time(row["feedback_created_at"]),
            "updated_at": _time(row["feedback_updated_at"]),
        }
    message = {
        "id": row["id"],
        "parent_id": row["parent_id"],
        "prompt_content": row["prompt_content"],
        "response_content": row["response_content"],
        "prompt_tokens": row["prompt_tokens"],
        "response_tokens": row["response_tokens"],
        "total_tokens": row["total_tokens"],
        "is_success": row["is_success"],
        "status_code": row["status_code"],
        **{field: row[field] for field in EXCHANGE_FIELDS},
        "feedback": feedback,
        "created_at": _time(row["created_at"]),
        "updated_at": _time(row["updated_at"]),
    }
    if row["deleted_at"] is None:
        return message
    # A tombstone keeps its place in the tree (later exchanges name it as their parent) and
    # its accounting, never content.
    kept = {k: v for k, v in message.items() if k not in CONTENT_FIELDS}
    return {"id": kept.pop("id"), "parent_id": kept.pop("parent_id"), "deleted": True, **kept}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def json_document(
    reader: PageReader, owner_id: int | None, only: int | None = None
) -> Iterator[str]:
    """The JSON export (what POST /import takes), one conversation or message at a time."""
    yield f'{{"format": "{EXPORT_FORMAT}", "version": {EXPORT_VERSION}, "conversations": ['
    for n, conversation in enumerate(reader.conversations(owner_id, only)):
        # The conversation's fields, then its messages streamed into its "messages" list.
        yield ("\n" if n == 0 else ",\n") + _json(conversation)[:-1] + ', "messages": ['
        for m, message in enumerate(reader.messages(conversation["id"])):
            yield ("\n" if m == 0 else ",\n") + _json(message)
        yield "]}"
    yield "\n]}\n"


def ndjson(reader: PageReader, owner_id: int | None) -> Iterator[str]:
    """One JSON object a line: each conversation, then each of its messages."""
    for conversation in reader.conversations(owner_id):
        yield _json({"type": "conversation", **conversation}) + "\n"
        for message in reader.messages(conversation["id"]):
            line = {"type": "message", "conversation_id": conversation["id"], **message}
            yield _json(line) + "\n"


def markdown_document(reader: PageReader, conversation_id: int) -> Iterator[str]:
    """A conversation for people to read: its details, then each exchange."""
    for conversation in reader.conversations(None, only=conversation_id):
        yield f"# {_line(conversation['title'] or 'Untitled conversation')}\n\n"
        yield f"- Model: `{conversation['model_type']}`\n"
        yield f"- Created: {conversation['created_at']}\n"
        for key, value in sorted(conversation["metadata"].items()):
            yield f"- {_line(key)}: {_line(value)}\n"
        numbers: dict[int, int] = {}
        previous = None
        for n, message in enumerate(reader.messages(conversation_id), start=1):
            yield f"\n## Exchange {n}\n\n*{message['created_at']}*\n\n"
            # Exchanges are listed in creation order: say where a branch leaves the one above.
            parent = message["parent_id"]
            if parent != previous and (parent is None or parent in numbers):
                after = (
                    "a new first exchange"
                    if parent is None
                    else f"after exchange {numbers[parent]}"
                )
                yield f"*Another branch: {after}.*\n\n"
            numbers[message["id"]], previous = n, message["id"]
            if message.get("deleted"):
                yield "*This exchange was deleted.*\n"
                continue
            yield f"**User:**\n\n{message['prompt_content']}\n\n"
            yield f"**Assistant:**\n\n{message['response_content']}\n"
            if message["is_success"] is not True:
                state = "in progress" if message["is_success"] is None else "failed"
                status = "" if message["status_code"] is None else f", {message['status_code']}"
                yield f"\n> The answer is incomplete ({state}{status}).\n"
            feedback = message["feedback"]
            if feedback is not None:
                verdict = "good (+1)" if feedback["rating"] == 1 else "bad (-1)"
                comment = f": {_line(feedback['comment'])}" if feedback["comment"] else ""
                yield f"\n> Rated {verdict}{comment}\n"


def _line(text: str) -> str:
    """Text kept on one line (a title or a value with a line break would end the item)."""
    return " ".join(text.split())
