"""Conversations found by the fingerprint of a history (the threading of /v1/chat/completions
and of Responses that resend their history)."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, func, select

from app.models import Conversation, Message
from app.repositories.conversations import ConversationRepository


class Thread(NamedTuple):
    """What the gateway needs of a conversation it adds an exchange to, and the exchange
    the new one follows (None: a first exchange)."""

    id: int
    untitled: bool
    parent_id: int | None = None


class ThreadRepository(ConversationRepository):
    """One owner's conversations by history fingerprint (``owner_id`` is required here).

    Each complete /v1 or Responses exchange keeps the fingerprint of the history it ended
    (``messages.history_fingerprint``); a request continues the exchange whose fingerprint
    is that of its history up to its last assistant turn. Reads are prebuilt Core
    statements on the session's connection: they run in every /v1 call, where building
    them and the ORM's execution layer cost more CPU than their round trip."""

    def find(self, uid: int, fingerprint: str | None) -> Thread | None:
        """The owner's conversation with this id, or None. Its new exchange follows the
        one of its exchanges that ended the history of ``fingerprint`` (the newest, if
        several did), else its current exchange; with no fingerprint (a history without an
        assistant turn), it is a first exchange."""
        params = {"uid": uid, "owner_id": self.owner_id, "fingerprint": fingerprint}
        row = self.session.connection().execute(_by_id(fingerprint is not None), params)
        found = row.one_or_none()
        return None if found is None else Thread(*found)

    def find_by_fingerprint(self, fingerprint: str) -> Thread | None:
        """The owner's conversation holding the newest exchange that ended the history of
        ``fingerprint``, with that exchange as the parent, or None (one seek on
        ix_messages_history_fingerprint)."""
        params = {"fingerprint": fingerprint, "owner_id": self.owner_id}
        row = self.session.connection().execute(_by_fingerprint(), params).first()
        return None if row is None else Thread(*row)

    def find_retried(self, fingerprint: str) -> Thread | None:
        """The owner's conversation whose current exchange is a first turn that did not
        complete with the retry ``fingerprint``, or None; the retry is another first
        exchange. Once an attempt completes it is current, and the same first turn starts
        a new conversation again."""
        params = {"fingerprint": fingerprint, "owner_id": self.owner_id}
        row = self.session.connection().execute(_retried(), params).first()
        return None if row is None else Thread(row[0], row[1], None)


@functools.cache
def _by_id(with_fingerprint: bool) -> Select[Any]:
    conversations, messages = Conversation.__table__.c, Message.__table__.c
    columns: list[Any] = [conversations.id, conversations.title.is_(None)]
    if with_fingerprint:
        matched = (
            select(func.max(messages.id))
            .where(
                messages.history_fingerprint == bindparam("fingerprint"),
                messages.conversation_id == conversations.id,
            )
            .scalar_subquery()
        )
        columns.append(func.coalesce(matched, conversations.current_message_id))
    return select(*columns).where(
        conversations.id == bindparam("uid"), conversations.owner_id == bindparam("owner_id")
    )


@functools.cache
def _by_fingerprint() -> Select[Any]:
    conversations, messages = Conversation.__table__.c, Message.__table__.c
    return (
        select(conversations.id, conversations.title.is_(None), messages.id)
        .select_from(Message.__table__)
        .join(Conversation.__table__, conversations.id == messages.conversation_id)
        .where(
            messages.history_fingerprint == bindparam("fingerprint"),
            conversations.owner_id == bindparam("owner_id"),
        )
        .order_by(messages.id.desc())
        .limit(1)
    )


@functools.cache
def _retried() -> Select[Any]:
    conversations, messages = Conversation.__table__.c, Message.__table__.c
    return _by_fingerprint().where(messages.id == conversations.current_message_id)
