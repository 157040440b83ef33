"""Writes for imports: whole conversations, timestamps as given, in bulk statements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm import Session

from app.models import Conversation, Feedback, Message


class ImportRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_conversation(self, values: Mapping[str, Any]) -> int:
        """Insert one conversation; returns its new id."""
        statement = insert(Conversation).values(**values).returning(Conversation.id)
        return int(self.session.scalar(statement))  # type: ignore[arg-type]

    def add_messages(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert messages in one batched statement; returns their new ids, in order."""
        if not rows:
            return []
        statement = insert(Message).returning(Message.id, sort_by_parameter_order=True)
        return list(self.session.scalars(statement, list(rows)))

    def link(
        self, conversation_id: int, parents: Sequence[tuple[int, int]], current: int | None
    ) -> None:
        """Give imported messages their parents ((id, parent id) pairs, one batched
        statement) and the conversation its current exchange."""
        # updated_at set to itself: the document's timestamps stay (no onupdate).
        if parents:
            messages = Message.__table__
            rows = [{"uid": uid, "parent": parent} for uid, parent in parents]
            self.session.execute(
                update(messages)
                .where(messages.c.id == bindparam("uid"))
                .values(parent_id=bindparam("parent"), updated_at=messages.c.updated_at),
                rows,
            )
        if current is not None:
            conversations = Conversation.__table__
            self.session.execute(
                update(conversations)
                .where(conversations.c.id == conversation_id)
                .values(current_message_id=current, updated_at=conversations.c.updated_at)
            )

    def add_feedback(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert feedback rows (their messages are new: no conflict is possible)."""
        if rows:
            self.session.execute(insert(Feedback), list(rows))
