"""Messages: one prompt and its answer each."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from app.models import Message, utcnow
from app.repositories.base import SqlAlchemyRepository, keyset


class MessageRepository(SqlAlchemyRepository[Message]):
    model = Message

    def list_for_conversation(
        self, conversation_id: int, *, skip: int = 0, take: int = 100, after: int | None = None
    ) -> list[Message]:
        """One conversation's messages in creation order, with their feedback."""
        query = (
            select(Message)
            .options(joinedload(Message.feedback))
            .where(Message.conversation_id == conversation_id, *keyset(Message.id, after))
            .order_by(Message.id)
            .offset(skip)
            .limit(take)
        )
        return list(self.session.scalars(query))

    def recent_exchanges(self, conversation_id: int, limit: int) -> list[tuple[str, str]]:
        """The last ``limit`` successful (prompt, response) pairs, newest first."""
        query = (
            select(Message.prompt_content, Message.response_content)
            .where(Message.conversation_id == conversation_id, Message.is_success.is_(True))
            .order_by(Message.id.desc())
            .limit(limit)
        )
        return [(prompt, response) for prompt, response in self.session.execute(query)]

    def mark_abandoned(self, cutoff: datetime, status_code: int) -> int:
        """Close every exchange still in progress since before ``cutoff``; returns how many."""
        result = self.session.execute(
            update(Message)
            .where(Message.is_success.is_(None), Message.updated_at < cutoff)
            .values(is_success=False, status_code=status_code, updated_at=utcnow()),
            execution_options={"synchronize_session": False},
        )
        return result.rowcount
