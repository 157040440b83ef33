"""Conversations."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    exists,
    func,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.models import Conversation, Message, utcnow
from app.repositories.base import SqlAlchemyRepository, keyset


def metadata_matches(session: Session, pairs: Mapping[str, str]) -> ColumnElement[bool]:
    """Conversations whose metadata holds every pair (PostgreSQL: @>, served by GIN)."""
    if not pairs:
        return true()
    if session.get_bind().dialect.name == "postgresql":
        # The column's type is a JSON/JSONB variant: say which, for JSONB's @> operator.
        return type_coerce(Conversation.meta, JSONB).contains(dict(pairs))
    # SQLite: json_each takes any key as data, where a JSON path would need quoting.
    entries = func.json_each(Conversation.meta).table_valued("key", "value")
    return and_(
        *(
            exists().select_from(entries).where(entries.c.key == key, entries.c.value == value)
            for key, value in pairs.items()
        )
    )


@dataclass(frozen=True)
class GenerationContext:
    """What a new exchange needs of its conversation: its model, whether it still wants a
    title, and its last successful (prompt, response) pairs, newest first."""

    model_type: str
    untitled: bool
    exchanges: list[tuple[str, str]]


class ConversationRepository(SqlAlchemyRepository[Conversation]):
    """Conversations, limited to one owner's when ``owner_id`` is given."""

    model = Conversation

    def __init__(self, session: Session, owner_id: int | None = None) -> None:
        super().__init__(session)
        self.owner_id = owner_id

    def _scope(self) -> list[ColumnElement[bool]]:
        return [] if self.owner_id is None else [Conversation.owner_id == self.owner_id]

    def get(self, uid: int) -> Conversation | None:
        """The conversation with this id (in scope), or None; in scope, one prebuilt
        statement (every read of one conversation goes through here)."""
        if self.owner_id is None:
            return super().get(uid)
        return self.session.scalar(_owned(), {"uid": uid, "owner_id": self.owner_id})

    def list_matching(
        self,
        *,
        skip: int = 0,
        take: int = 100,
        after: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[Conversation]:
        """Like ``list``, only those whose metadata holds every pair of ``metadata``."""
        query = select(Conversation).where(
            *self._scope(),
            *keyset(Conversation.id, after),
            metadata_matches(self.session, metadata or {}),
        )
        return list(self.session.scalars(query.order_by(Conversation.id).offset(skip).limit(take)))

    def get_for_update(self, uid: int) -> Conversation | None:
        """The conversation, locked until the transaction ends (read, then write)."""
        query = select(Conversation).where(Conversation.id == uid, *self._scope())
        return self.session.scalar(query.with_for_update())

    def exists(self, uid: int) -> bool:
        """Whether a conversation with this id exists (in scope), without loading it."""
        condition = exists().where(Conversation.id == uid, *self._scope())
        return bool(self.session.scalar(select(condition)))

    def generation_context(self, uid: int, history_limit: int) -> GenerationContext | None:
        """The conversation (in scope) and its recent history in one statement, or None."""
        params = {"uid": uid, "history_limit": history_limit, "owner_id": self.owner_id}
        statement = _generation_context(self.owner_id is not None)
        rows = self.session.connection().execute(statement, params).all()
        if not rows:
            return None
        model_type, title = rows[0][0], rows[0][1]
        exchanges = [(prompt, response) for _, _, prompt, response in rows if prompt is not None]
        return GenerationContext(model_type, title is None, exchanges)

    def set_title_if_missing(self, uid: int, title: str) -> bool:
        """Give an untitled conversation a title; a title set meanwhile is left alone."""
        result = self.session.execute(
            update(Conversation)
            .where(Conversation.id == uid, Conversation.title.is_(None))
            .values(title=title, updated_at=utcnow()),
            execution_options={"synchronize_session": False},
        )
        return bool(result.rowcount)


@functools.cache
def _generation_context(scoped: bool) -> Select[Any]:
    """``generation_context``'s statement, built once and in Core: building it per call
    cost as much CPU as running it, and so did the ORM's execution layer (bench/ab/).
    Bind parameters uid, history_limit and, scoped, owner_id."""
    conversations, messages = Conversation.__table__.c, Message.__table__.c
    uid = bindparam("uid")
    history = (
        select(messages.id, messages.prompt_content, messages.response_content)
        .where(messages.conversation_id == uid, messages.is_success.is_(True))
        .order_by(messages.id.desc())
        .limit(bindparam("history_limit", type_=Integer))
        .subquery()
    )
    scope = [conversations.owner_id == bindparam("owner_id")] if scoped else []
    return (
        select(
            conversations.model_type,
            conversations.title,
            history.c.prompt_content,
            history.c.response_content,
        )
        .select_from(Conversation.__table__)
        .outerjoin(history, true())
        .where(conversations.id == uid, *scope)
        .order_by(history.c.id.desc())
    )


@functools.cache
def _owned() -> Select[tuple[Conversation]]:
    """``get``'s statement in scope, built once: bind parameters uid and owner_id."""
    return select(Conversation).where(
        Conversation.id == bindparam("uid"), Conversation.owner_id == bindparam("owner_id")
    )
