"""Conversations."""

from __future__ import annotations

from sqlalchemy import exists, select

from app.models import Conversation
from app.repositories.base import SqlAlchemyRepository


class ConversationRepository(SqlAlchemyRepository[Conversation]):
    model = Conversation

    def exists(self, uid: int) -> bool:
        """Whether a conversation with this id exists, without loading it."""
        return bool(self.session.scalar(select(exists().where(Conversation.id == uid))))
