"""Conversations."""

from __future__ import annotations

from sqlalchemy import exists, select, update

from app.models import Conversation, utcnow
from app.repositories.base import SqlAlchemyRepository


class ConversationRepository(SqlAlchemyRepository[Conversation]):
    model = Conversation

    def exists(self, uid: int) -> bool:
        """Whether a conversation with this id exists, without loading it."""
        return bool(self.session.scalar(select(exists().where(Conversation.id == uid))))

    def set_title_if_missing(self, uid: int, title: str) -> bool:
        """Give an untitled conversation a title; a title set meanwhile is left alone."""
        result = self.session.execute(
            update(Conversation)
            .where(Conversation.id == uid, Conversation.title.is_(None))
            .values(title=title, updated_at=utcnow()),
            execution_options={"synchronize_session": False},
        )
        return bool(result.rowcount)
