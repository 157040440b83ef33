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

    def set_fingerprint(self, uid: int, fingerprint: str) -> bool:
        """Record the fingerprint of a conversation's history as it now stands, unless another
        transaction is writing that row right now (returns False then).

        Exchanges that end together in one conversation are forks of one history; one of
        them setting the fingerprint is right, and waiting on the row lock is not: on
        PostgreSQL every save would queue behind the one before it, holding its pooled
        connection (FOR NO KEY UPDATE does not conflict with the key-share locks taken by
        inserting messages; SQLite writes one transaction at a time and ignores the clause).
        """
        unlocked = (
            select(Conversation.id)
            .where(Conversation.id == uid)
            .with_for_update(skip_locked=True, key_share=True)
            .scalar_subquery()
        )
        result = self.session.execute(
            update(Conversation)
            .where(Conversation.id == unlocked)
            .values(history_fingerprint=fingerprint),
            execution_options={"synchronize_session": False},
        )
        return bool(result.rowcount)
