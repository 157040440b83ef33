"""Data access for conversations: one or a page of them, and what a new exchange needs of one."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    literal_column,
    select,
    true,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from app.models import CURRENT_EXCHANGE, Conversation, Message, utcnow
from app.repositories.base import SqlAlchemyRepository, keyset
from app.repositories.deletes import DeleteRepository
from app.repositories.messages import children_count


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
    title, the last successful (prompt, response) pairs of the path from the root to its
    parent, newest first, its parent (None: a first exchange, or a parent asked for that
    is not one of the conversation's) and how many exchanges that parent already has."""

    model_type: str
    untitled: bool
    exchanges: list[tuple[str, str]]
    parent_id: int | None
    siblings: int


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
        archived: bool = False,
        temporary: bool = False,
    ) -> list[Row[Any]]:
        """Like ``list``, only those whose metadata holds every pair of ``metadata``, and
        archived ones or the others, temporary ones or the others, as rows
        (``_listed_columns``). Without ``metadata``, one prebuilt statement (the commonest
        read: a page of one's conversations)."""
        if not metadata:
            params = {
                "owner_id": self.owner_id,
                "archived": archived,
                "temporary": temporary,
                "after": after,
            }
            statement = _listed(self.owner_id is not None, after is not None)
            connection = self.session.connection()
            return list(connection.execute(statement, {**params, "skip": skip, "take": take}))
        query = select(*_listed_columns()).where(
            *self._scope(),
            Conversation.archived == archived,
            Conversation.temporary == temporary,
            *keyset(Conversation.id, after),
            metadata_matches(self.session, metadata),
        )
        return list(self.session.execute(query.order_by(Conversation.id).offset(skip).limit(take)))

    def list_recent(
        self,
        *,
        skip: int = 0,
        take: int = 100,
        before: tuple[bool, datetime, int] | None = None,
        metadata: Mapping[str, str] | None = None,
        archived: bool = False,
        temporary: bool = False,
    ) -> list[Row[Any]]:
        """Pinned ones first, then most recently active first (ties: newest id), past the
        (pinned, last_activity_at, id) of ``before``: in scope, one backward range scan of
        ix_conversations_recent. Rows, as ``list_matching``'s."""
        order = (Conversation.pinned, Conversation.last_activity_at, Conversation.id)
        where = [
            *self._scope(),
            Conversation.archived == archived,
            Conversation.temporary == temporary,
        ]
        if before is not None:
            bound = [
                literal(value, column.type) for value, column in zip(before, order, strict=True)
            ]
            where.append(tuple_(*order) < tuple_(*bound))
        query = (
            select(*_listed_columns())
            .where(*where, metadata_matches(self.session, metadata or {}))
            .order_by(*(column.desc() for column in order))
            .offset(skip)
            .limit(take)
        )
        return list(self.session.execute(query))

    def delete(self, uid: int) -> bool:
        """Delete the conversation (in scope) and all of it, locked first, its usage
        carried (DeleteRepository); False if there is none. ExchangeInProgress while one of
        its exchanges is."""
        return DeleteRepository(self.session, self.owner_id).delete_conversation(uid)

    def get_for_update(self, uid: int) -> Conversation | None:
        """The conversation, locked until the transaction ends (read, then write)."""
        query = select(Conversation).where(Conversation.id == uid, *self._scope())
        return self.session.scalar(query.with_for_update())

    def exists(self, uid: int) -> bool:
        """Whether a conversation with this id exists (in scope), without loading it."""
        condition = exists().where(Conversation.id == uid, *self._scope())
        return bool(self.session.scalar(select(condition)))

    def generation_context(
        self, uid: int, history_limit: int, parent_id: int | None = CURRENT_EXCHANGE
    ) -> GenerationContext | None:
        """The conversation (in scope) and the recent history of the branch a new exchange
        continues, in one statement, or None. ``parent_id``: the exchange it follows (None:
        it starts a branch; CURRENT_EXCHANGE: the conversation's current exchange)."""
        params = {
            "uid": uid,
            "history_limit": history_limit,
            "owner_id": self.owner_id,
            "follow_current": parent_id == CURRENT_EXCHANGE,
            "parent_id": None if parent_id == CURRENT_EXCHANGE else parent_id,
        }
        statement = _generation_context(self.owner_id is not None)
        rows = self.session.connection().execute(statement, params).all()
        if not rows:
            return None
        model_type, title, parent, siblings = rows[0][:4]
        exchanges = [(row[4], row[5]) for row in rows if row[4] is not None]
        return GenerationContext(model_type, title is None, exchanges, parent, siblings)

    def current_message_id(self, uid: int) -> tuple[int | None] | None:
        """The conversation's current exchange as a 1-tuple (its value may be None), or
        None if there is no such conversation (in scope)."""
        query = select(Conversation.current_message_id).where(
            Conversation.id == uid, *self._scope()
        )
        row = self.session.execute(query).one_or_none()
        return None if row is None else (row[0],)

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
    """``generation_context``'s statement, built once and in Core: building it per call,
    like the ORM's execution layer, costs about as much CPU as running it.
    Bind parameters uid, history_limit, follow_current, parent_id and, scoped, owner_id.

    The history is the path from the new exchange's parent up to the root, walked by a
    recursive CTE that stops once it holds ``history_limit`` successful exchanges (failed
    ones and tombstones are passed through, not sent)."""
    conversations, messages = Conversation.__table__, Message.__table__
    uid = bindparam("uid")
    limit = bindparam("history_limit", type_=Integer)
    scope = [conversations.c.owner_id == bindparam("owner_id")] if scoped else []
    parent = case(
        (bindparam("follow_current", type_=Boolean), conversations.c.current_message_id),
        else_=bindparam("parent_id", type_=conversations.c.id.type),
    )
    sent = messages.c.is_success.is_(True) & messages.c.deleted_at.is_(None)
    succeeded = case((sent, 1), else_=0)
    # The anchor: the parent, if it is one of this (owned) conversation's exchanges.
    anchor = (
        select(messages.c.id)
        .select_from(conversations)
        .join(messages, messages.c.id == parent)
        .where(conversations.c.id == uid, messages.c.conversation_id == uid, *scope)
    )
    base = select(
        messages.c.id,
        messages.c.parent_id,
        literal_column("0", Integer).label("depth"),
        sent.label("sent"),
        messages.c.prompt_content,
        messages.c.response_content,
        succeeded.label("kept"),
    ).where(messages.c.id == anchor.scalar_subquery())
    path = base.cte("path", recursive=True)
    up = path.alias("up")
    path = path.union_all(
        select(
            messages.c.id,
            messages.c.parent_id,
            (up.c.depth + 1).label("depth"),
            sent.label("sent"),
            messages.c.prompt_content,
            messages.c.response_content,
            (up.c.kept + succeeded).label("kept"),
        ).where(messages.c.id == up.c.parent_id, up.c.kept < limit)
    )
    history = (
        select(path.c.depth, path.c.prompt_content, path.c.response_content)
        .where(path.c.sent.is_(True))
        .order_by(path.c.depth)
        .limit(limit)
        .subquery("history")
    )
    found = select(path.c.id).where(path.c.depth == 0).scalar_subquery()
    return (
        select(
            conversations.c.model_type,
            conversations.c.title,
            found.label("parent_id"),
            children_count(found, conversations.c.id).label("siblings"),
            history.c.prompt_content,
            history.c.response_content,
        )
        .select_from(conversations)
        .outerjoin(history, true())
        .where(conversations.c.id == uid, *scope)
        .order_by(history.c.depth)
    )


@functools.cache
def _listed_columns() -> tuple[Any, ...]:
    """A listed conversation's columns, each named as Conversation's attribute: a page is
    read as rows, which the response schema reads as it reads objects, and which cost less
    CPU to load than ORM objects."""
    # Labelled: run in Core (the prebuilt page) a column is named as in the table, so
    # ``meta`` would come back as ``metadata`` and the schema would find no ``meta``.
    return tuple(
        getattr(Conversation, column.key).label(column.key)
        for column in Conversation.__mapper__.column_attrs
    )


@functools.cache
def _listed(scoped: bool, paged: bool) -> Select[Any]:
    """``list_matching``'s statement without metadata, built once per shape: bind parameters
    archived, temporary, skip, take, and owner_id if scoped, after if paged."""
    scope = [Conversation.owner_id == bindparam("owner_id")] if scoped else []
    after = [Conversation.id > bindparam("after")] if paged else []
    return (
        select(*_listed_columns())
        .where(
            *scope,
            Conversation.archived == bindparam("archived"),
            Conversation.temporary == bindparam("temporary"),
            *after,
        )
        .order_by(Conversation.id)
        .offset(bindparam("skip", type_=BigInteger))
        .limit(bindparam("take", type_=Integer))
    )


@functools.cache
def _owned() -> Select[tuple[Conversation]]:
    """``get``'s statement in scope, built once: bind parameters uid and owner_id."""
    return select(Conversation).where(
        Conversation.id == bindparam("uid"), Conversation.owner_id == bindparam("owner_id")
    )
