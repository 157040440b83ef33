"""Data access: SQLAlchemy queries over a session. No commit, no HTTP.

May import models and extensions only (+ search_query.py, the language repositories/search
parses).
"""

from app.repositories.base import Repository, SqlAlchemyRepository
from app.repositories.conversations import ConversationRepository
from app.repositories.messages import MessageRepository
from app.repositories.threads import ThreadRepository
from app.repositories.users import ApiKeyRepository, UserRepository

__all__ = [
    "ApiKeyRepository",
    "ConversationRepository",
    "MessageRepository",
    "Repository",
    "SqlAlchemyRepository",
    "ThreadRepository",
    "UserRepository",
]
