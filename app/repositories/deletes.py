"""Deletes of conversations, exchanges, responses and items: serialised on the conversation's
row, refused while an exchange they would touch is in progress, usage carried or kept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from app.conflicts import ExchangeInProgress
from app.models import Conversation, Feedback, Message, utcnow
from app.repositories.erasure import compact_search_index, erase_in_place
from app.repositories.messages import descendants, tombstone
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
        UsageRepository(self.session).carry_removed_conversation(conversation_id)
        erase_in_place(self.session)
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
        erase_in_place(self.session)
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

    def live_exchange(self, conversation_id: int, message_id: int) -> Message | None:
        """The conversation's exchange ``message_id`` unless it is a tombstone, its row
        locked and read afresh: call it once the conversation is locked. None if there is
        no such exchange."""
        query = (
            select(Message)
            .where(
                Message.id == message_id,
                Message.conversation_id == conversation_id,
                Message.deleted_at.is_(None),
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return self.session.scalar(query)

    def delete_response(self, conversation_id: int, message_id: int) -> bool:
        """Make exchange ``message_id`` a tombstone (``make_tombstone``); False if it is not
        one of the conversation's (in scope) or is one already. ExchangeInProgress while it
        is in progress."""
        if self.lock_conversation(conversation_id) is None:
            return False
        message = self.live_exchange(conversation_id, message_id)
        if message is None:
            return False
        self.refuse_in_progress(Message.id == message_id)
        self.make_tombstone(message)
        return True

    def make_tombstone(self, message: Message) -> None:
        """Erase an ended exchange's content and feedback, keeping its place in the tree and
        its accounting (tokens, outcome, timings: usage_daily is not touched). Its locked
        conversation and row were read with ``live_exchange``."""
        now = utcnow()
        erase_in_place(self.session)
        self.session.execute(
            update(Message)
            .where(Message.id == message.id, Message.is_success.is_not(None))
            .values(**tombstone(message.model), deleted_at=now, updated_at=now),
            execution_options={"synchronize_session": False},
        )
        self.session.execute(
            delete(Feedback).where(Feedback.message_id == message.id),
            execution_options={"synchronize_session": False},
        )
        compact_search_index(self.session)

    def erase(self, message: Message, values: Mapping[str, Any]) -> None:
        """Write what deleting one of its items leaves of an ended exchange (``values``:
        its columns, as app/services/item_erasure.py computes them); the fingerprint of the
        history it ended goes too (it hashes content that is gone)."""
        erase_in_place(self.session)
        self.session.execute(
            update(Message)
            .where(Message.id == message.id, Message.is_success.is_not(None))
            .values(**values, history_fingerprint=None, updated_at=utcnow()),
            execution_options={"synchronize_session": False},
        )
        compact_search_index(self.session)
