"""Exchanges read as the Responses API's responses and items: one owner's, by id, and the
branch that ends at one of them (a ``previous_response_id`` chain), in one statement."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    bindparam,
    literal_column,
    select,
    true,
)

from app.models import Conversation, Message
from app.repositories.base import SqlAlchemyRepository


@dataclass(frozen=True)
class BranchedConversation:
    """A conversation's id and title, and its current branch (rows with a Message's
    columns, root first)."""

    id: int
    title: str | None
    branch: list[Row[Any]]


class ResponseRepository(SqlAlchemyRepository[Message]):
    """Exchanges of conversations in scope (``owner_id`` None: everyone's, for admins)."""

    model = Message

    def __init__(self, session: Any, owner_id: int | None = None) -> None:
        super().__init__(session)
        self.owner_id = owner_id

    def _scope(self) -> list[ColumnElement[bool]]:
        if self.owner_id is None:
            return []
        owned = select(Conversation.id).where(Conversation.owner_id == self.owner_id)
        return [Message.conversation_id.in_(owned)]

    def find(self, uid: int) -> Message | None:
        """The exchange with this id, if it is in scope."""
        return self.session.scalar(select(Message).where(Message.id == uid, *self._scope()))

    def branch(self, leaf: int, rows: int | None = None) -> list[Row[Any]]:
        """The exchanges from the root of ``leaf``'s tree down to ``leaf`` (only its last
        ``rows``, at least the leaf, if given), root first, as rows with a Message's columns;
        empty if ``leaf`` is not in scope. One prebuilt statement: a recursive walk up
        ``parent_id`` that stops after ``rows``."""
        params = {"leaf": leaf, "rows": max(rows or 0, 1), "owner_id": self.owner_id}
        statement = _branch(self.owner_id is not None, rows is not None)
        found = self.session.connection().execute(statement, params).all()
        # Every exchange of a branch is in the leaf's conversation: one owner for all.
        return found if found and found[-1].id == leaf else []

    def conversation_branch(
        self, conversation_id: int, rows: int | None = None
    ) -> BranchedConversation | None:
        """A conversation in scope and its current branch as ``branch`` reads it, in one
        statement; None if there is no such conversation."""
        params = {"cid": conversation_id, "rows": max(rows or 0, 1), "owner_id": self.owner_id}
        statement = _conversation_branch(self.owner_id is not None, rows is not None)
        found = self.session.connection().execute(statement, params).all()
        if not found:
            return None
        head = found[0]
        branch = [row for row in found if row.id is not None]
        return BranchedConversation(head.conversation_id_, head.conversation_title_, branch)


@functools.cache
def _branch(scoped: bool, bounded: bool) -> Select[Any]:
    """``branch``'s statement, built once per shape, in Core (the ORM's load of a long branch
    costs more CPU than the relay of a whole answer). Bind parameters leaf, and rows if
    bounded, owner_id if scoped."""
    messages, conversations = Message.__table__, Conversation.__table__
    leaf = bindparam("leaf", type_=messages.c.id.type)
    path = _walk(select(messages.c.id).where(messages.c.id == leaf), bounded)
    query = select(messages).join(path, path.c.id == messages.c.id)
    if scoped:
        query = query.join(conversations, conversations.c.id == messages.c.conversation_id)
        query = query.where(conversations.c.owner_id == bindparam("owner_id"))
    return query.order_by(messages.c.id)


@functools.cache
def _conversation_branch(scoped: bool, bounded: bool) -> Select[Any]:
    """``conversation_branch``'s statement: the conversation outer-joined to its current
    branch. Bind parameters cid, and rows if bounded, owner_id if scoped."""
    messages, conversations = Message.__table__, Conversation.__table__
    cid = bindparam("cid", type_=conversations.c.id.type)
    scope = [conversations.c.owner_id == bindparam("owner_id")] if scoped else []
    current = select(conversations.c.current_message_id).where(conversations.c.id == cid, *scope)
    path = _walk(current, bounded)
    branch = select(messages).join(path, path.c.id == messages.c.id).subquery("branch")
    return (
        select(
            conversations.c.id.label("conversation_id_"),
            conversations.c.title.label("conversation_title_"),
            *branch.c,
        )
        .select_from(conversations)
        .outerjoin(branch, true())
        .where(conversations.c.id == cid, *scope)
        .order_by(branch.c.id)
    )


def _walk(start: Select[Any], bounded: bool) -> Any:
    """The recursive CTE of the exchange ``start`` selects (its id) and its ancestors, with
    their depth (0: that exchange), stopping after ``rows`` if bounded."""
    messages = Message.__table__
    depth = literal_column("0", Integer).label("depth")
    path = select(messages.c.id, messages.c.parent_id, depth)
    path = path.where(messages.c.id == start.scalar_subquery()).cte("path", recursive=True)
    up = path.alias("up")
    step = select(messages.c.id, messages.c.parent_id, (up.c.depth + 1).label("depth"))
    step = step.where(messages.c.id == up.c.parent_id)
    if bounded:
        step = step.where(up.c.depth + 1 < bindparam("rows", type_=Integer))
    return path.union_all(step)
