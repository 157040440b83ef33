"""Messages: one prompt and its answer each."""

from __future__ import annotations

from sqlalchemy import select

from app.models import Message
from app.repositories.base import SqlAlchemyRepository


class MessageRepository(SqlAlchemyRepository[Message]):
    model = Message

    def list_for_conversation(
        self, conversation_id: int, *, skip: int = 0, take: int = 100
    ) -> list[Message]:
        """One conversation's messages in creation order."""
        query = (
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.id)
            .offset(skip)
            .limit(take)
        )
        return list(self.session.scalars(query))
