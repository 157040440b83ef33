"""Deletes of conversations and exchanges: serialised on the conversation's row, refused
while an exchange they would remove is in progress, their usage carried before they go."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from app.conflicts import ExchangeInProgress
from app.models import Conversation, Message
from app.repositories.erasure import compact_search_index
from app.repositories.messages import descendants
from app.repositories.usage import UsageRepository


class DeleteRepository:
    """Deletes in conversations, limited to one owner's when ``owner_id`` is given.

    Each locks its conversation's row first (PostgreSQL; SQLite's write transaction holds
    the whole database already), as every new exchange's INSERT does: what a delete reads
    after the lock is what it deletes, and the counters move by the rows it deleted.
    """

    def __init__(self, session: Session, owner_id: int | None = None) -> None:
        self.session = session
        self.owner_id = owner_id

    def lock_conversation(self, conversation_id: int) -> tuple[int | None] | None:
        """Lock the conversation's row until the transaction ends and return its current
        exchange as a 1-tuple (its value may be None); None if there is no such
        conversation (in scope)."""
        query = select(Conversation.current_message_id).where(Conversation.id == conversation_id)
        if self.owner_id is not None:
            query = query.where(Conversation.owner_id == self.owner_id)
        row = self.session.execute(query.with_for_update()).one_or_none()
        return None if row is None else (row[0],)

    def refuse_in_progress(self, where: ColumnElement[bool]) -> None:
        """Raise ExchangeInProgress, naming the oldest, if an exchange matching ``where`` is
        in progress: its worker would still write its ending, and charge it, afterwards."""
        query = select(func.min(Message.id)).where(where, Message.is_success.is_(None))
        busy = self.session.scalar(query)
        if busy is not None:
            raise ExchangeInProgress(busy)

    def delete_conversation(self, conversation_id: int, *, compact: bool = True) -> bool:
        """Delete a conversation (in scope) and all of it, its usage carried; False if there
        is none. ExchangeInProgress while one of its exchanges is. Not ``compact``: the
        caller compacts the search index once after a run of deletes (erasure.py)."""
        if self.lock_conversation(conversation_id) is None:
            return False
        messages, conversations = Message.__table__, Conversation.__table__
        of_conversation = messages.c.conversation_id == conversation_id
        self.refuse_in_progress(of_conversation)
        UsageRepository(self.session).carry_removed(of_conversation)
        # Its exchanges, their feedback and their full-text entries go by ON DELETE CASCADE.
        self.session.execute(delete(conversations).where(conversations.c.id == conversation_id))
        if compact:
            compact_search_index(self.session)
        return True

    def delete_subtree(self, conversation_id: int, message_id: int) -> int | None:
        """Delete exchange ``message_id`` and every exchange below it, their usage carried;
        if the conversation's current exchange was among them, their parent becomes
        current (for a first exchange, the newest one left). Returns how many were deleted;
        None if it is not one of the conversation's (in scope). ExchangeInProgress while
        one of them is."""
        locked = self.lock_conversation(conversation_id)
        if locked is None:
            return None
        messages, conversations = Message.__table__, Conversation.__table__
        found = self.session.execute(
            select(messages.c.parent_id).where(
                messages.c.id == message_id, messages.c.conversation_id == conversation_id
            )
        ).one_or_none()
        if found is None:
            return None
        below = descendants(
            (messages.c.id == message_id) & (messages.c.conversation_id == conversation_id)
        )
        in_subtree = messages.c.id.in_(select(below.c.id))
        self.refuse_in_progress(in_subtree)
        UsageRepository(self.session).carry_removed(in_subtree)
        deleted = set(
            self.session.scalars(delete(messages).where(in_subtree).returning(messages.c.id))
        )
        values: dict[str, Any] = {"message_count": conversations.c.message_count - len(deleted)}
        if locked[0] in deleted:
            newest_left = (
                select(func.max(messages.c.id))
                .where(messages.c.conversation_id == conversation_id)
                .scalar_subquery()
            )
            values["current_message_id"] = newest_left if found[0] is None else found[0]
        self.session.execute(
            update(conversations).where(conversations.c.id == conversation_id).values(**values)
        )
        compact_search_index(self.session)
        return len(deleted)
