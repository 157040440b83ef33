"""Conversations."""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, select, update
from sqlalchemy.orm import Session

from app.models import Conversation, utcnow
from app.repositories.base import SqlAlchemyRepository


class ConversationRepository(SqlAlchemyRepository[Conversation]):
    """Conversations, limited to one owner's when ``owner_id`` is given."""

    model = Conversation

    def __init__(self, session: Session, owner_id: int | None = None) -> None:
        super().__init__(session)
        self.owner_id = owner_id

    def _scope(self) -> list[ColumnElement[bool]]:
        return [] if self.owner_id is None else [Conversation.owner_id == self.owner_id]

    def exists(self, uid: int) -> bool:
        """Whether a conversation with this id exists (in scope), without loading it."""
        condition = exists().where(Conversation.id == uid, *self._scope())
        return bool(self.session.scalar(select(condition)))

    def set_title_if_missing(self, uid: int, title: str) -> bool:
        """Give an untitled conversation a title; a title set meanwhile is left alone."""
        result = self.session.execute(
            update(Conversation)
            .where(Conversation.id == uid, Conversation.title.is_(None))
            .values(title=title, updated_at=utcnow()),
            execution_options={"synchronize_session": False},
        )
        return bool(result.rowcount)
