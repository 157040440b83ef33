"""Conversations found by the fingerprint of their history (the /v1 gateway's threading)."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, select, update

from app.models import Conversation
from app.repositories.conversations import ConversationRepository


class Thread(NamedTuple):
    """What the gateway needs of a conversation it adds an exchange to."""

    id: int
    untitled: bool


class ThreadRepository(ConversationRepository):
    """One owner's conversations by history fingerprint (``owner_id`` is required here).

    Reads are prebuilt Core statements on the session's connection: they run in every /v1
    call, where building them and the ORM's execution layer cost more CPU than their round
    trip (bench/ab/)."""

    def find(self, uid: int) -> Thread | None:
        """The owner's conversation with this id, or None."""
        params = {"uid": uid, "owner_id": self.owner_id}
        row = self.session.connection().execute(_by_id(), params).one_or_none()
        return None if row is None else Thread(*row)

    def find_by_fingerprint(self, fingerprint: str) -> Thread | None:
        """The owner's newest conversation whose history has this fingerprint, or None
        (one seek on ix_conversations_owner_id_history_fingerprint)."""
        params = {"fingerprint": fingerprint, "owner_id": self.owner_id}
        row = self.session.connection().execute(_by_fingerprint(), params).first()
        return None if row is None else Thread(*row)

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


def _thread_columns() -> Select[Any]:
    table = Conversation.__table__.c
    return select(table.id, table.title.is_(None)).where(table.owner_id == bindparam("owner_id"))


@functools.cache
def _by_id() -> Select[Any]:
    return _thread_columns().where(Conversation.__table__.c.id == bindparam("uid"))


@functools.cache
def _by_fingerprint() -> Select[Any]:
    table = Conversation.__table__.c
    return (
        _thread_columns()
        .where(table.history_fingerprint == bindparam("fingerprint"))
        .order_by(table.id.desc())
        .limit(1)
    )
