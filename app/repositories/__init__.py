"""Data access: SQLAlchemy queries over a session. No commit, no HTTP."""

from app.repositories.base import Repository, SqlAlchemyRepository
from app.repositories.conversations import ConversationRepository
from app.repositories.messages import MessageRepository

__all__ = ["ConversationRepository", "MessageRepository", "Repository", "SqlAlchemyRepository"]
