"""Conversations found by the fingerprint of their history (the /v1 gateway's threading)."""

from __future__ import annotations

from sqlalchemy import select, update

from app.models import Conversation
from app.repositories.conversations import ConversationRepository


class ThreadRepository(ConversationRepository):
    """One owner's conversations by history fingerprint (``owner_id`` is required here)."""

    def find_by_fingerprint(self, fingerprint: str) -> Conversation | None:
        """The owner's newest conversation whose history has this fingerprint, or None
        (one seek on ix_conversations_owner_id_history_fingerprint)."""
        query = (
            select(Conversation)
            .where(*self._scope(), Conversation.history_fingerprint == fingerprint)
            .order_by(Conversation.id.desc())
            .limit(1)
        )
        return self.session.scalar(query)

    def set_fingerprint(self, uid: int, fingerprint: str) -> None:
        """Record the fingerprint of a conversation's history as it now stands."""
        self.session.execute(
            update(Conversation)
            .where(Conversation.id == uid)
            .values(history_fingerprint=fingerprint),
            execution_options={"synchronize_session": False},
        )
